"""Faults: `trainlab fit` killed, interrupted, out of disk space, with a read-only directory,
a damaged or malicious checkpoint — and nothing of the training is lost or run.

Every command runs in a real process (forked from a zygote: tests/reliability/forked_cli.py)
and is compared with one uninterrupted run of the same config: a resumed run must end with
the same weights, optimizer state, metrics and summary, bit for bit.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from trainlab.train import load_checkpoint, save_checkpoint

from tables import write_table_config, write_table_csv

EPOCHS = 4


@dataclass
class Straight:
    """The reference: the config and the run directory of an uninterrupted run."""

    config: Path
    run_dir: Path
    steps_per_epoch: int


@pytest.fixture(scope="module")
def straight(tmp_path_factory, forked) -> Straight:
    tmp = tmp_path_factory.mktemp("straight")
    config = write_table_config(tmp, write_table_csv(tmp))  # 144 training rows, 4 epochs
    run = forked.run("fit", config, "--out", tmp / "run", "--quiet")
    assert run.code == 0, run.err
    summary = json.loads((tmp / "run" / "summary.json").read_text())
    assert summary["epochs_run"] == EPOCHS
    return Straight(config, tmp / "run", summary["steps"] // EPOCHS)


def _without_seconds(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


def _assert_equal_state(a, b, where: str) -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_equal_state(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_equal_state(x, y, f"{where}[{i}]")
    else:
        assert a == b or (a != a and b != b), where  # NaN equals NaN here


def assert_same_run(reference: Path, run_dir: Path) -> None:
    """Weights, optimizer state, counters, metrics, best epoch and summary all equal."""
    ref_last = load_checkpoint(reference / "checkpoints" / "last.pt")["trainer"]
    last = load_checkpoint(run_dir / "checkpoints" / "last.pt")["trainer"]
    for key in ("model", "optimizer", "scheduler", "epoch", "step", "skipped_steps", "loader"):
        _assert_equal_state(ref_last[key], last[key], key)
    assert _without_seconds(ref_last["history"]) == _without_seconds(last["history"])
    ref_best = load_checkpoint(reference / "checkpoints" / "best.pt")
    best = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    _assert_equal_state(ref_best["model"], best["model"], "best.model")
    assert ref_best["epoch"] == best["epoch"]
    lines = [
        _without_seconds([json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()])
        for d in (reference, run_dir)
    ]
    assert lines[0] == lines[1]
    summaries = [json.loads((d / "summary.json").read_text()) for d in (reference, run_dir)]
    for s in summaries:
        for key in ("run_dir", "seconds"):
            s.pop(key)
    assert summaries[0] == summaries[1]
    assert not [p.name for p in (run_dir / "checkpoints").iterdir() if p.suffix == ".tmp"]


def _kill_points(rng: random.Random, steps_per_epoch: int, n: int) -> list[dict]:
    """``n`` distinct points of a run, in the order the run reaches them: the first one
    early in epoch 1, before any checkpoint exists; of the others, half between two steps
    and half around the end of an epoch (logging, best.pt, last.pt half written or not yet
    renamed) or before the summary."""
    points = []
    for epoch in range(1, EPOCHS + 1):
        first = (epoch - 1) * steps_per_epoch
        points += [{"at": "batch", "n": s} for s in range(first + 1, first + steps_per_epoch + 1)]
        points += [{"at": kind, "n": epoch} for kind in ("epoch", "between", "write", "replace")]
    points.append({"at": "summary", "n": 0})
    in_epoch_1 = [i for i, p in enumerate(points) if p["at"] == "batch" and p["n"] <= 3]
    first = rng.choice(in_epoch_1)
    later = range(first + 1, len(points))
    steps = [i for i in later if points[i]["at"] == "batch"]
    ends = [i for i in later if points[i]["at"] != "batch"]
    rest = rng.sample(steps, (n - 1) // 2) + rng.sample(ends, n - 1 - (n - 1) // 2)
    return [points[i] for i in [first, *sorted(rest)]]


def test_sigkill_at_ten_random_points_then_resume_ends_as_an_uninterrupted_run(
    tmp_path, forked, straight
):
    run_dir = tmp_path / "run"
    points = _kill_points(random.Random(2026), straight.steps_per_epoch, 10)
    assert len({p["at"] for p in points}) >= 4, points  # the draw covers several kinds
    first = forked.run("fit", straight.config, "--out", run_dir, "--quiet", kill=points[0])
    assert first.code == -signal.SIGKILL, first.err
    assert not (run_dir / "checkpoints" / "last.pt").exists()  # killed before any
    for point in points[1:]:
        killed = forked.run("fit", "--resume", run_dir, "--quiet", kill=point)
        assert killed.code == -signal.SIGKILL, (point, killed.err)
    final = forked.run("fit", "--resume", run_dir, "--quiet")
    assert final.code == 0, final.err
    assert_same_run(straight.run_dir, run_dir)


def test_a_run_killed_before_its_first_checkpoint_resumes_from_the_start(
    tmp_path, forked, straight
):
    run_dir = tmp_path / "run"
    killed = forked.run("fit", straight.config, "--out", run_dir, kill={"at": "between", "n": 1})
    assert killed.code == -signal.SIGKILL
    assert (run_dir / "checkpoints" / "best.pt").exists()
    assert not (run_dir / "checkpoints" / "last.pt").exists()
    resumed = forked.run("fit", "--resume", run_dir, "--quiet")
    assert resumed.code == 0, resumed.err
    assert "no checkpoint yet (stopped before its first epoch ended): starting it again" in (
        resumed.out
    )
    assert_same_run(straight.run_dir, run_dir)


@pytest.mark.parametrize(
    ("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"]
)
def test_a_signal_saves_the_epoch_and_exits_with_the_command_that_resumes(
    tmp_path, forked, straight, signum, status
):
    run_dir = tmp_path / "run"
    step = straight.steps_per_epoch + 2  # in epoch 2
    stopped = forked.run(
        "fit", straight.config, "--out", run_dir, "--quiet", signal={"signum": signum, "step": step}
    )
    name = signal.Signals(signum).name
    assert stopped.code == status, stopped.err
    notice, last_line = stopped.err.splitlines()
    assert notice.startswith(f"trainlab: {name} received: stopping once this epoch ends")
    assert last_line == (
        f"trainlab: interrupted by {name} after epoch 2 of {EPOCHS}, which is saved in "
        f"{run_dir / 'checkpoints' / 'last.pt'}; resume with: trainlab fit --resume {run_dir}"
    )
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["trainer"]["epoch"] == 2
    assert not (run_dir / "summary.json").exists()
    resumed = forked.run(*last_line.split("resume with: trainlab ")[1].split(), "--quiet")
    assert resumed.code == 0, resumed.err
    assert_same_run(straight.run_dir, run_dir)


def test_a_second_ctrl_c_stops_at_once_and_keeps_the_previous_checkpoint(
    tmp_path, forked, straight
):
    run_dir = tmp_path / "run"
    step = straight.steps_per_epoch + 2  # in epoch 2
    stopped = forked.run(
        "fit",
        straight.config,
        "--out",
        run_dir,
        "--quiet",
        signal={"signum": signal.SIGINT, "step": step, "times": 2},
    )
    assert stopped.code == 130
    assert stopped.err.splitlines()[-1] == "trainlab: interrupted"
    assert "Traceback" not in stopped.err
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["trainer"]["epoch"] == 1
    assert forked.run("fit", "--resume", run_dir, "--quiet").code == 0
    assert_same_run(straight.run_dir, run_dir)


@pytest.fixture
def killed_in_epoch_3(tmp_path, forked, straight) -> Path:
    """A run directory whose last checkpoint is epoch 2's."""
    run_dir = tmp_path / "run"
    step = 2 * straight.steps_per_epoch + 1
    killed = forked.run("fit", straight.config, "--out", run_dir, kill={"at": "batch", "n": step})
    assert killed.code == -signal.SIGKILL
    return run_dir


def _one_error_line(err: str) -> str:
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("trainlab: error: ")
    return err.strip()


def _assert_epoch_2_intact(run_dir: Path) -> None:
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["trainer"]["epoch"] == 2
    assert not [p for p in (run_dir / "checkpoints").iterdir() if p.suffix == ".tmp"]


def test_a_full_disk_while_checkpointing_is_one_line_and_keeps_the_previous_checkpoint(
    forked, straight, killed_in_epoch_3
):
    run_dir = killed_in_epoch_3
    full = forked.run("fit", "--resume", run_dir, disk_full={"epoch": 3})
    line = _one_error_line(full.err)
    assert full.code == 2
    assert "cannot write checkpoint" in line and str(run_dir / "checkpoints") in line
    assert line.endswith("No space left on device; the previous checkpoint is intact")
    _assert_epoch_2_intact(run_dir)
    assert forked.run("fit", "--resume", run_dir, "--quiet").code == 0  # space again
    assert_same_run(straight.run_dir, run_dir)


def test_a_full_disk_while_logging_metrics_is_one_line_naming_the_file(forked, killed_in_epoch_3):
    full = forked.run("fit", "--resume", killed_in_epoch_3, metrics_disk_full={"epoch": 3})
    assert full.code == 2
    line = _one_error_line(full.err)
    assert line == (
        f"trainlab: error: No space left on device ({killed_in_epoch_3 / 'metrics.jsonl'})"
    )
    _assert_epoch_2_intact(killed_in_epoch_3)


def test_a_read_only_checkpoint_directory_is_one_line_and_keeps_the_previous_checkpoint(
    forked, straight, killed_in_epoch_3
):
    run_dir = killed_in_epoch_3
    checkpoints = run_dir / "checkpoints"
    faults = {} if forked.permissions_enforced else {"deny_writes": str(checkpoints)}
    checkpoints.chmod(0o555)
    try:
        refused = forked.run("fit", "--resume", run_dir, **faults)
    finally:
        checkpoints.chmod(0o755)
    line = _one_error_line(refused.err)
    assert refused.code == 2
    assert "cannot write checkpoint" in line and str(checkpoints) in line
    assert line.endswith("Permission denied; the previous checkpoint is intact")
    _assert_epoch_2_intact(run_dir)
    assert forked.run("fit", "--resume", run_dir, "--quiet").code == 0
    assert_same_run(straight.run_dir, run_dir)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_a_weight_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[data.index(b"data/0") + 200] ^= 0x01  # inside the first tensor's bytes
    path.write_bytes(bytes(data))


DAMAGE = {
    "truncated": (_truncate, "truncated or corrupted checkpoint"),
    "bit flip in a weight": (_flip_a_weight_bit, "fails its CRC-32 check"),
    "empty": (lambda p: p.write_bytes(b""), "the file is empty"),
    "not a checkpoint": (lambda p: p.write_text("epoch: 3\n"), "not a complete checkpoint"),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_checkpoint_is_one_line_naming_the_file(
    forked, killed_in_epoch_3, damage, tmp_path
):
    last = killed_in_epoch_3 / "checkpoints" / "last.pt"
    spoil, reason = DAMAGE[damage]
    spoil(last)
    before = last.read_bytes()
    refused = forked.run("fit", "--resume", killed_in_epoch_3, "--quiet")
    line = _one_error_line(refused.err)
    assert refused.code == 2 and str(last) in line and reason in line, line
    assert last.read_bytes() == before  # left as it was, for whoever investigates


def test_a_checkpoint_of_another_model_is_one_line_naming_the_file_and_the_keys(
    forked, killed_in_epoch_3
):
    # e.g. a run saved when a layer before a batch norm still had a bias
    last = killed_in_epoch_3 / "checkpoints" / "last.pt"
    state = load_checkpoint(last)
    key = next(k for k in state["trainer"]["model"] if k.endswith(".weight"))
    state["trainer"]["model"][key.replace(".weight", ".extra")] = torch.zeros(3)
    save_checkpoint(state, last)
    refused = forked.run("fit", "--resume", killed_in_epoch_3, "--quiet")
    line = _one_error_line(refused.err)
    assert refused.code == 2 and str(last) in line and key.replace(".weight", ".extra") in line


class _RunsAShellCommand:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("name", ["last.pt", "best.pt"])
def test_a_checkpoint_carrying_pickled_code_is_refused_and_the_code_never_runs(
    forked, straight, tmp_path, name
):
    run_dir = tmp_path / "run"
    shutil.copytree(straight.run_dir, run_dir)  # a finished run: resuming re-evaluates best.pt
    marker = tmp_path / "pwned"
    evil = run_dir / "checkpoints" / name
    state = load_checkpoint(evil)
    state["preprocess"] = _RunsAShellCommand(marker)
    torch.save(state, evil)
    refused = forked.run("fit", "--resume", run_dir, "--quiet")
    line = _one_error_line(refused.err)
    assert refused.code == 2
    assert line == (
        f"trainlab: error: refusing checkpoint {evil}: it carries pickled code (posix.system) "
        "that a weights-only load does not run"
    )
    assert not marker.exists()


def test_a_nan_loss_mid_run_stops_with_advice_and_keeps_the_last_good_checkpoint(
    forked, straight, tmp_path
):
    run_dir = tmp_path / "run"
    step = 2 * straight.steps_per_epoch + 3  # in epoch 3
    diverged = forked.run("fit", straight.config, "--out", run_dir, nan_loss={"step": step})
    line = _one_error_line(diverged.err)
    assert diverged.code == 2
    assert line == (
        f"trainlab: error: the training loss became nan at epoch 3, step {step} (lr 0.00826352): "
        "the learning rate is probably too high; lower it 3–10× (e.g. --set "
        "optimizer.lr=0.00667) and start the run again; the checkpoint of the last finite "
        "epoch is kept"
    )
    _assert_epoch_2_intact(run_dir)
    straight_last = load_checkpoint(straight.run_dir / "checkpoints" / "last.pt")
    kept = load_checkpoint(run_dir / "checkpoints" / "last.pt")["trainer"]
    assert _without_seconds(kept["history"]) == _without_seconds(
        straight_last["trainer"]["history"][:2]
    )
    assert load_checkpoint(run_dir / "checkpoints" / "best.pt")["epoch"] <= 2
    logged = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in logged] == [1, 2, 3] and logged[-1]["train_loss"] != (
        logged[-1]["train_loss"]
    )  # the failed epoch is logged, with its NaN, for the diagnosis


def test_an_inf_gradient_skips_the_step_with_one_warning_and_is_counted(forked, straight, tmp_path):
    run_dir = tmp_path / "run"
    step = straight.steps_per_epoch + 3  # in epoch 2
    run = forked.run("fit", straight.config, "--out", run_dir, "--quiet", inf_grad={"step": step})
    assert run.code == 0, run.err
    warnings = [line for line in run.err.splitlines() if line.startswith("trainlab: warning")]
    assert len(warnings) == 1 and run.err.count("\n") == 1
    assert warnings[0] == (
        f"trainlab: warning: step {step} (epoch 2) skipped: the gradient of fc1.weight, "
        "fc1.bias, out.weight and 1 more is not finite; 1 step(s) skipped so far"
    )
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["skipped_steps"] == 1 and summary["steps"] == EPOCHS * straight.steps_per_epoch
    last = load_checkpoint(run_dir / "checkpoints" / "last.pt")["trainer"]
    assert all(torch.isfinite(w).all() for w in last["model"].values())
