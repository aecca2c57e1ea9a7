"""The bad-input corpus (tests/data/bad/): every file there, given to `trainlab fit`, ends
in exit status 2 and one line on stderr that names the culprit, never a traceback, and
leaves no run directory behind.

The corpus holds one small file per mistake: CSVs (data.yaml points `data.dataset` at
each), configs (each is the CONFIG argument) and an image folder with a corrupt image.
The cases marked "found by fuzzing" came out of tests/reliability/test_fuzz.py. A missing
config file and a missing data file are tests/train/test_fit.py's
(test_fit_errors_are_one_line_with_exit_status_2).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

BAD = Path(__file__).parents[1] / "data" / "bad"

# (id, config, data.dataset or None, extra --set, fragments the one line must contain)
CASES = [
    # CSV files: the file, the line as an editor counts it, the column
    ("csv-nan", "data.yaml", "nan.csv", [], ["nan.csv, line 3, column 'b'", "nan is not a finite"]),
    (
        "csv-inf",
        "data.yaml",
        "inf.csv",
        [],
        ["inf.csv, line 4, column 'b'", "-inf is not a finite"],
    ),
    (
        "csv-text-in-numeric-column",
        "data.yaml",
        "text_in_numeric.csv",
        [],
        ["text_in_numeric.csv, line 5, column 'a'", "'seven' is not a number"],
    ),
    (
        "csv-ragged-row",
        "data.yaml",
        "ragged.csv",
        [],
        ["ragged.csv, line 4", "2 fields, but the header has 3 columns"],
    ),
    ("csv-empty", "data.yaml", "empty.csv", [], ["empty.csv", "the file is empty"]),
    (
        "csv-header-only",
        "data.yaml",
        "header_only.csv",
        [],
        ["header_only.csv", "has a header (line 1) but no data rows"],
    ),
    (
        "csv-non-integer-label",
        "data.yaml",
        "fractional_label.csv",
        ["data.task=classification"],
        ["fractional_label.csv, line 4, column 'label'", "'2.5' is not an integer class label"],
    ),
    (
        "csv-single-class",
        "data.yaml",
        "single_class.csv",
        [],
        ["single_class.csv", "column 'label' holds a single class ('1')", "at least 2"],
    ),
    # configs: the file, the key, what it accepts or the key meant
    (
        "config-unknown-key",
        "unknown_key.yaml",
        None,
        [],
        ["unknown_key.yaml", "optimizer.learning_rate", "did you mean 'lr'?"],
    ),
    (
        "config-key-in-the-wrong-section",
        "key_in_wrong_section.yaml",
        None,
        [],
        ["train.lr: unknown key", "did you mean 'optimizer.lr'?"],
    ),
    (
        "config-wrong-type",
        "wrong_type.yaml",
        None,
        [],
        ["wrong_type.yaml", "train.batch_size", "valid integer", "got [32]"],
    ),
    (
        "config-negative-lr",
        "negative_lr.yaml",
        None,
        [],
        ["negative_lr.yaml", "optimizer.lr: must be in [0, ∞), got -0.01"],
    ),
    (
        "config-unknown-optimizer",
        "unknown_optimizer.yaml",
        None,
        [],
        [
            "optimizer.name",
            "'sgd', 'momentum', 'nesterov', 'rmsprop', 'adam' or 'adamw'",
            "'adagrad'",
        ],
    ),
    (
        "config-unknown-dataset",
        "unknown_dataset.yaml",
        None,
        [],
        ["data.dataset: unknown dataset 'mnist_1d'", "did you mean 'mnist1d'?", "iris"],
    ),
    # found by fuzzing (each escaped as a traceback before)
    (
        "config-alias-inside-its-anchor",
        "self_alias.yaml",
        None,
        [],
        ["self_alias.yaml", "alias (*name) used inside its own anchor"],
    ),
    (
        "config-invalid-tagged-value",
        "bad_tag.yaml",
        None,
        [],
        ["bad_tag.yaml", "tagged value", "'seven'"],
    ),
    (
        "config-unknown-key-named-like-a-type",
        "key_named_like_a_type.yaml",
        None,
        [],
        ["key_named_like_a_type.yaml: int: unknown key", "allowed: name, seed"],
    ),
    (
        "config-lr-overflows-float32",
        "lr_overflow.yaml",
        None,
        [],
        ["optimizer.lr: 1e+300 is too large for float32"],
    ),
    (
        "config-negative-seed",
        "negative_seed.yaml",
        None,
        [],
        ["seed: ", "greater than or equal to 0"],
    ),
    (
        "config-warmup-steps-not-a-number",
        "warmup_steps_text.yaml",
        None,
        [],
        ["schedule: warmup_steps must be a positive int, got 'ten'"],
    ),
    (
        "config-infinite-tune-bound",
        "tune_infinite_bound.yaml",
        None,
        [],
        ["tune.space.train.batch_size: '1e400' is not a finite number"],
    ),
    (
        "config-unavailable-device",
        "unavailable_device.yaml",
        None,
        [],
        ["train.device: 'cuda:99' is not available", "use auto or cpu"],
    ),
    # an image folder
    (
        "image-folder-corrupt-image",
        "data.yaml",
        "corrupt_image",
        [],
        ["corrupt_image/dog/2.png: not a readable image", "truncated"],
    ),
]


def _argv(tmp_path: Path, config: str, data: str | None, extra: list[str]) -> list[str]:
    argv = ["fit", str(BAD / config), "--out", str(tmp_path / "run"), "--quiet"]
    if data is not None:
        argv += ["--set", f"data.dataset={BAD / data}"]
    for pair in extra:
        argv += ["--set", pair]
    return argv


@pytest.mark.parametrize(
    ("config", "data", "extra", "fragments"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_each_bad_input_is_one_line_naming_the_culprit_with_exit_2(
    run_cli, tmp_path, config, data, extra, fragments
):
    code, out, err = run_cli(*_argv(tmp_path, config, data, extra))
    assert code == 2, err
    assert err.startswith("trainlab: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in out + err
    for fragment in fragments:
        assert fragment in err
    assert not (tmp_path / "run").exists()  # nothing half-made to clean up


def test_every_file_of_the_corpus_has_a_case():
    used = {c[1] for c in CASES} | {c[2] for c in CASES if c[2]}
    assert {p.name for p in BAD.iterdir()} == used


@pytest.mark.parametrize("case", ["csv-nan", "config-alias-inside-its-anchor"])
def test_a_real_process_prints_the_one_line_and_no_traceback(tmp_path, case):
    _, config, data, extra, fragments = next(c for c in CASES if c[0] == case)
    result = subprocess.run(
        [sys.executable, "-m", "trainlab", *_argv(tmp_path, config, data, extra)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("trainlab: error: ") and result.stderr.count("\n") == 1
    assert all(fragment in result.stderr for fragment in fragments)
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    "error, size",
    [
        (
            RuntimeError(
                "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't "
                "allocate memory: you tried to allocate 40000000000 bytes. Error code 12"
            ),
            "40000000000 bytes asked for",
        ),
        (
            torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0)"),
            "20.00 GiB",
        ),
        (MemoryError(), ""),
    ],
    ids=["cpu", "cuda", "python"],
)
def test_running_out_of_memory_is_one_line_with_advice_and_exit_2(
    run_cli, monkeypatch, tmp_path, error, size
):
    """A model or batch too large for the machine: `model.hidden=[100000000]` on iris asks
    for 40 GB in its first forward pass."""

    def fit(*args, **kwargs):
        raise error

    monkeypatch.setattr("trainlab.run.fit", fit)
    code, _, err = run_cli(*_argv(tmp_path, "data.yaml", "nan.csv", []))
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("trainlab: error: out of memory") and size in err
    assert "train.batch_size" in err and "model.hidden" in err


def test_a_gpu_the_machine_has_is_accepted_and_one_it_lacks_is_named(monkeypatch):
    from trainlab.config import ConfigError
    from trainlab.train import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    assert resolve_device("cuda") == torch.device("cuda")
    with pytest.raises(
        ConfigError, match=r"'cuda:1' is not available, this machine has 1 CUDA GPU;"
    ):
        resolve_device("cuda:1")
