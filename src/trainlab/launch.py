"""``trainlab fit CONFIG --nproc N``: start N training processes on this machine.

The shortcut for ``torchrun --standalone --nproc-per-node N -m trainlab fit CONFIG …``: the
same elastic launcher (``torch.distributed.launcher``), with what the shortcut adds — the
config and the run directory are checked once before any process starts (so a mistake is
one line, not N), the run directory is fixed here and passed to every rank (so the
command to resume a failed run can be printed), and a failed rank becomes one line that
names it and says how to continue.
"""

from __future__ import annotations

import logging
import os
import sys
import uuid
from pathlib import Path
from signal import SIGINT, SIGTERM

from trainlab.config import load_config
from trainlab.run import RunError, _new_run_dir, resumable
from trainlab.train.rundir import RunDir

__all__ = ["LaunchError", "launch_fit"]


#: Set for the processes `launch_fit` starts.
LAUNCHED = "TRAINLAB_LAUNCHED"


class LaunchError(RuntimeError):
    """A rank of a launched run failed (killed, or crashed); ``str(err)`` says how to
    continue. ``exit_code`` is the status the CLI exits with."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


def _threads_per_process(nproc: int) -> int:
    return max(1, (os.cpu_count() or 1) // nproc)


def launch_fit(
    config: Path | None,
    overrides: list[str],
    nproc: int,
    out: Path | None = None,
    resume: Path | None = None,
    quiet: bool = False,
) -> Path:
    """Run ``trainlab fit`` on ``nproc`` processes of this machine; returns the run directory.

    Raises
    ------
    RunError, ConfigError
        Before any process starts, for a bad config or run directory.
    LaunchError
        When a rank fails; its message names the rank and gives the resume command.
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if not (isinstance(nproc, int) and nproc >= 1):
        raise RunError(f"--nproc must be a positive integer, got {nproc!r}")
    args = ["-m", "trainlab", "fit"]
    if resume is not None:
        run_dir = Path(resume)
        resumable(run_dir, overrides)
        args += ["--resume", str(run_dir)]
    else:
        cfg = load_config(config, overrides)
        run_dir = _new_run_dir(cfg.name, out)
        args += [str(config), "--out", str(run_dir)]
    for pair in overrides:
        args += ["--set", pair]
    if quiet:
        args.append("--quiet")

    os.environ.setdefault("OMP_NUM_THREADS", str(_threads_per_process(nproc)))
    # ranks that lose a peer exit quietly: the launcher says which rank failed and why
    os.environ[LAUNCHED] = "1"
    launch = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=f"trainlab-{uuid.uuid4().hex[:8]}",
        rdzv_backend="c10d",
        rdzv_endpoint="127.0.0.1:0",
        max_restarts=0,
        monitor_interval=0.1,
        start_method="spawn",
    )
    # the elastic agent's own log lines would bury the one line that matters
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    try:
        elastic_launch(launch, sys.executable)(*args)
    except ChildFailedError as err:
        raise _failure(err, nproc, run_dir) from None
    return run_dir


def _failure(err, nproc: int, run_dir: Path) -> LaunchError:
    # The cause, not its echoes: a rank killed by a signal other than the SIGTERM/SIGINT
    # the launcher sends the survivors, else a user error (exit 2), else the earliest; the
    # ranks that lost their peer exit 1 after it.
    def cause(item):
        failure = item[1]
        killed = failure.exitcode < 0 and -failure.exitcode not in (SIGTERM, SIGINT)
        return (not killed, failure.exitcode != 2, failure.timestamp, item[0])

    rank, failure = min(err.failures.items(), key=cause)
    resume = f"trainlab fit --resume {run_dir} --nproc {nproc}"
    if failure.exitcode == 2:  # a user error: rank 0 has printed its one line
        return LaunchError("", exit_code=2)
    if failure.exitcode < 0:
        how = f"was killed by {failure.signal_name()}"
    else:
        how = f"failed with exit status {failure.exitcode}"
    if RunDir(run_dir).last.is_file():
        then = f"continue from its last checkpoint with: {resume}"
    else:  # killed before its first checkpoint: --resume starts it again in place
        then = f"it had no checkpoint yet; start it again with: {resume}"
    return LaunchError(f"rank {rank} of {nproc} {how}; the run stopped; {then}")
