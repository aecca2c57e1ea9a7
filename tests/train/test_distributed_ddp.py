"""DDP on two gloo processes on 127.0.0.1: equal ranks, equal to one process, rank-0 files,
a killed rank and its resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import ddp_worker  # noqa: E402

TRAINLAB = [sys.executable, "-m", "trainlab"]
CONFIG = """\
name: ddp
seed: 0
data:
  dataset: digits
  split: {val: 0.2, test: 0.2}
  preprocess: [standardize]
model: {kind: mlp, hidden: [32], norm: sync_batch}
optimizer: {name: sgd, lr: 0.05, momentum: 0.9}
train: {epochs: 30, batch_size: 64}
"""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    return env


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> Path:
    """Every case of ddp_worker trained on 2 processes (one torchrun launch)."""
    out = tmp_path_factory.mktemp("ddp")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    done = subprocess.run(
        [*cmd, str(HERE / "ddp_worker.py"), str(out)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def _no_time(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


def _load(path: Path) -> dict:
    # the worker's own files (histories are plain dicts): trusted, written by the test
    return torch.load(path, weights_only=False)


@pytest.mark.parametrize("case", ddp_worker.CASES)
def test_two_processes_equal_each_other_and_one_process(two_ranks, case):
    rank0 = _load(two_ranks / f"{case}-rank0.pt")
    rank1 = _load(two_ranks / f"{case}-rank1.pt")
    for key, value in rank0["state"].items():  # DDP keeps the replicas bit-identical
        assert torch.equal(value, rank1["state"][key]), key
    assert _no_time(rank0["history"]) == _no_time(rank1["history"])  # all-reduced metrics
    # the same global batches on one process: batch norm over the global batch (sync)
    single = ddp_worker.train(case)
    for key, want in single["state"].items():
        got = rank0["state"][key]
        if want.is_floating_point():
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6, msg=key)
        else:
            assert torch.equal(got, want), key
    for mine, theirs in zip(rank0["history"], single["history"], strict=True):
        assert mine["train_loss"] == pytest.approx(theirs["train_loss"], rel=1e-5)
        assert mine["train_accuracy"] == theirs["train_accuracy"]
    assert rank0["val"]["loss"] == pytest.approx(single["val"]["loss"], rel=1e-5)


def _fit(*args: str, **popen) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*TRAINLAB, "fit", *args, "--quiet"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
        **popen,
    )


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory) -> Path:
    """The same config trained by `trainlab fit --nproc 2` and by one process."""
    root = tmp_path_factory.mktemp("cli")
    (root / "cfg.yaml").write_text(CONFIG)
    for nproc, out in ((2, "two"), (1, "one")):
        done = _fit("cfg.yaml", "--out", out, "--nproc", str(nproc), cwd=root)
        assert done.returncode == 0, done.stderr[-3000:]
        if nproc == 2:
            (root / "two.stdout").write_text(done.stdout)
    return root


def _metrics(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in lines]


def test_nproc_equals_one_process_and_only_rank0_writes(cli_runs):
    two, one = cli_runs / "two", cli_runs / "one"
    files = sorted(str(p.relative_to(two)) for p in two.rglob("*"))
    assert files == sorted(str(p.relative_to(one)) for p in one.rglob("*"))
    assert sorted(p.name for p in cli_runs.iterdir()) == ["cfg.yaml", "one", "two", "two.stdout"]
    assert len(_metrics(two)) == 30  # each epoch logged once, not once per rank
    stdout = (cli_runs / "two.stdout").read_text()
    lines = stdout.splitlines()  # the summary once (the diagnosis may name the best epoch too)
    assert sum(line.startswith("run directory:") for line in lines) == 1
    assert sum(line.startswith("best epoch") for line in lines) == 1
    for mine, theirs in zip(_metrics(two), _metrics(one), strict=True):
        assert mine.keys() == theirs.keys()
        for key in mine:
            assert mine[key] == pytest.approx(theirs[key], rel=1e-5, abs=1e-7), key
    s2, s1 = (json.loads((run / "summary.json").read_text()) for run in (two, one))
    assert s2["best_epoch"] == s1["best_epoch"]
    for split in ("train", "val", "test"):
        for metric, value in s1[split].items():
            assert s2[split][metric] == pytest.approx(value, rel=1e-5), (split, metric)


def _descendants(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found += [int(entry), *_descendants(int(entry))]
    return found


def _rank_of(pid: int) -> str | None:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for item in environ:
        if item.startswith(b"RANK="):
            return item[5:].decode()
    return None


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the ranks through /proc")
def test_killed_rank_fails_clearly_and_resume_finishes_identically(cli_runs):
    root = cli_runs
    proc = subprocess.Popen(
        [*TRAINLAB, "fit", "cfg.yaml", "--out", "killed", "--nproc", "2", "--quiet"],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    last = root / "killed" / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 240
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    rank1 = [pid for pid in _descendants(proc.pid) if _rank_of(pid) == "1"]
    assert proc.poll() is None and rank1, "the run ended before a rank could be killed"
    os.kill(rank1[0], signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("trainlab: error:")]
    assert errors == [
        "trainlab: error: rank 1 of 2 was killed by SIGKILL; the run stopped; continue from "
        "its last checkpoint with: trainlab fit --resume killed --nproc 2"
    ]
    done = _fit("--resume", "killed", "--nproc", "2", cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    # resumed at an epoch boundary, it ends where the uninterrupted run ended
    assert _metrics(root / "killed") == _metrics(root / "two")
