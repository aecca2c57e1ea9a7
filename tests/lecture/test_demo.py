"""The text of `trainlab demo` (the lecture's valley, claims C2–C4)."""

from __future__ import annotations

from trainlab.lecture.demo import DEMO_LRS, format_demo


def test_the_demo_tables_every_optimizer_and_states_the_lessons():
    text = format_demo(1e-3, 400)
    assert f"the best of {len(DEMO_LRS)} learning rates" in text
    for optimizer in ("sgd", "momentum", "nesterov", "rmsprop", "adam"):
        assert any(line.startswith(optimizer) for line in text.splitlines())
    assert "fewer steps than SGD" in text and "convention='keras'" in text
    assert not text.endswith("\n")  # the CLI's echo ends the last line
