"""Run `trainlab` commands in real processes, with faults injected, cheaply.

:class:`ForkedCLI` starts this file as a *zygote*: one Python process that imports
trainlab (torch, Optuna, matplotlib: 2–4 s) once and then, for every command it is sent,
forks a fresh child that runs ``trainlab.cli.main(argv)`` — the console script's entry
point — with its stdout and stderr in files. A child is a real process: a SIGKILL kills
it where it stands, a SIGTERM reaches its handlers, its exit status is what a shell sees.
The zygote never runs a torch operation itself, so each child starts with a clean thread
pool.

A command may carry *faults*, installed in the child before it runs (monkeypatching, so
nothing in trainlab knows about them):

``kill``      ``{"at": KIND, "n": N}``: SIGKILL the child at that point. KIND is
              ``batch`` (after optimizer step N), ``epoch`` (epoch N has ended and is
              logged, not yet checkpointed), ``between`` (epoch N's best.pt is written,
              last.pt not yet), ``write`` (half of epoch N's last.pt is written to its
              temporary file), ``replace`` (epoch N's last.pt is complete, not yet renamed
              over the old one), ``summary`` (training is over, the summary not written).
``signal``    ``{"signum": S, "step": N, "times": 1 | 2}``: send S to itself after step N.
``disk_full`` ``{"epoch": N}``: the checkpoint writes of epoch N fail with ENOSPC after a
              partial write; ``metrics_disk_full`` the same for metrics.jsonl.
``deny_writes`` a directory: creating a file in it fails with EACCES (a read-only
              directory, where root's writes cannot be stopped by a chmod).
``nan_loss``  ``{"step": N}``: the training loss is NaN from step N on.
``inf_grad``  ``{"step": N}``: the gradient of the model's output is inf at step N.
``trial``     tuning: ``{"number": T, "epoch": E, "kill": bool, "ready": PATH,
              "go": PATH}`` — when trial T reports epoch E, touch ``ready`` and wait for
              ``go`` to exist (the test restarts a database meanwhile), or SIGKILL.
``reconnect_seconds``  tuning: how long a worker waits for its database.
"""

from __future__ import annotations

import errno
import io
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Result:
    """How a command ended: exit status (negative: killed by that signal), stdout, stderr."""

    code: int
    out: str
    err: str


class ForkedCLI:
    """The zygote, seen from the test: ``run(argv, **faults) -> Result``.

    Under root, the zygote runs with CAP_DAC_OVERRIDE dropped (``setpriv``), so a chmod'ed
    read-only directory is read-only for it; :attr:`permissions_enforced` says whether that
    worked (else ``deny_writes`` simulates one).
    """

    def __init__(self, workdir: Path):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-u", __file__]
        if os.geteuid() == 0 and _which("setpriv"):
            drop = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner", "--"]
            if subprocess.run([*drop, "true"], capture_output=True).returncode == 0:
                command = [*drop, *command]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "MPLBACKEND": "Agg"}
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=self.workdir,
        )
        hello = json.loads(self._read())
        self.permissions_enforced: bool = hello["permissions_enforced"]
        self._count = 0

    def _read(self) -> str:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the zygote died (exit status {self.process.wait()})")
        return line

    def run(self, *argv: Any, **faults: Any) -> Result:
        """Run ``trainlab ARGV`` in a forked child with ``faults``; wait for it."""
        self._count += 1
        out, err = (self.workdir / f"{self._count}.{name}" for name in ("out", "err"))
        job = {"argv": [str(a) for a in argv], "faults": faults, "out": str(out), "err": str(err)}
        self.process.stdin.write(json.dumps(job) + "\n")
        self.process.stdin.flush()
        code = json.loads(self._read())["code"]
        return Result(code, out.read_text(), err.read_text())

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)


def _which(name: str) -> str | None:
    import shutil

    return shutil.which(name)


# --- the zygote ------------------------------------------------------------------------------


def _permissions_enforced() -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        closed = Path(tmp) / "closed"
        closed.mkdir(mode=0o555)
        try:
            (closed / "probe").touch()
        except PermissionError:
            return True
        finally:
            closed.chmod(0o755)
    return False


def _serve() -> None:
    # everything a command will need, imported once (the children share it)
    import optuna  # noqa: F401

    import trainlab.cli  # noqa: F401
    import trainlab.diagnose  # noqa: F401
    import trainlab.report  # noqa: F401
    import trainlab.run  # noqa: F401
    import trainlab.tune.study  # noqa: F401

    print(json.dumps({"permissions_enforced": _permissions_enforced()}), flush=True)
    for line in sys.stdin:
        job = json.loads(line)
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            _child(job)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"code": os.waitstatus_to_exitcode(status)}), flush=True)


def _child(job: dict) -> None:
    code = 1
    try:
        for fd, path in ((1, job["out"]), (2, job["err"])):
            os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        _install(job["faults"])
        from trainlab.cli import main

        main(job["argv"])
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except BaseException:  # what an uncaught exception does: a traceback, status 1
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


class _Probe:
    """A callback that runs ``action`` at one point of the training loop."""

    def __init__(self, hook: str, n: int, action):
        self.hook, self.n, self.action = hook, n, action

    def on_batch_end(self, trainer, loss: float) -> None:
        if self.hook == "batch" and trainer.step == self.n:
            self.action()

    def on_epoch_end(self, trainer, logs: dict) -> None:
        if self.hook == "epoch" and trainer.epoch == self.n:
            self.action()


def _install(faults: dict) -> None:
    import torch

    from trainlab import run
    from trainlab.train import callbacks
    from trainlab.train import checkpoint as checkpoint_module
    from trainlab.train import trainer as trainer_module

    probes: list[tuple[int | None, _Probe]] = []  # (index in the callback list, probe)
    saving = {"epoch": None, "last": False}

    kill = faults.get("kill")
    if kill and kill["at"] == "batch":
        probes.append((0, _Probe("batch", kill["n"], _die)))
    if kill and kill["at"] == "epoch":  # after MetricsLog, before Checkpoint
        probes.append((None, _Probe("epoch", kill["n"], _die)))
    sig = faults.get("signal")
    if sig:

        def send() -> None:
            for _ in range(sig.get("times", 1)):
                os.kill(os.getpid(), sig["signum"])

        probes.append((0, _Probe("batch", sig["step"], send)))

    real_prepare = run.prepare

    def prepare(*args: Any, **kwargs: Any):
        built = real_prepare(*args, **kwargs)
        cbs = built.trainer.callbacks
        for index, probe in probes:
            cbs.insert(cbs.index(built.checkpoint) if index is None else index, probe)
        return built

    run.prepare = prepare

    real_save_last = callbacks.Checkpoint.save_last

    def save_last(self, trainer) -> None:
        saving["epoch"], saving["last"] = trainer.epoch, True
        if kill and kill["at"] == "between" and trainer.epoch == kill["n"]:
            _die()
        try:
            real_save_last(self, trainer)
        finally:
            saving["last"] = False

    callbacks.Checkpoint.save_last = save_last

    real_torch_save = torch.save
    full = faults.get("disk_full")

    def torch_save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        epoch = saving["epoch"]
        if isinstance(obj, dict) and "trainer" not in obj:
            epoch = obj.get("epoch")  # best.pt
        if full and epoch == full["epoch"]:
            f.write(b"PK\x03\x04 partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        if kill and kill["at"] == "write" and saving["last"] and epoch == kill["n"]:
            buffer = io.BytesIO()
            real_torch_save(obj, buffer, *args, **kwargs)
            f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
            f.flush()
            _die()
        real_torch_save(obj, f, *args, **kwargs)

    checkpoint_module.torch.save = torch_save

    real_replace = os.replace

    def replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        if (
            kill
            and kill["at"] == "replace"
            and saving["last"]
            and Path(dst).name == "last.pt"
            and saving["epoch"] == kill["n"]
        ):
            _die()
        real_replace(src, dst, *args, **kwargs)

    os.replace = replace

    if kill and kill["at"] == "summary":

        def summarize(*args: Any, **kwargs: Any):
            _die()

        run.summarize = summarize

    metrics_full = faults.get("metrics_disk_full")
    if metrics_full:
        real_log = callbacks.MetricsLog.on_epoch_end

        def log(self, trainer, logs: dict) -> None:
            if trainer.epoch == metrics_full["epoch"]:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))
            real_log(self, trainer, logs)

        callbacks.MetricsLog.on_epoch_end = log

    denied = faults.get("deny_writes")
    if denied:
        real_mkstemp = tempfile.mkstemp

        def mkstemp(*args: Any, dir: Any = None, **kwargs: Any):
            if dir is not None and Path(dir).resolve() == Path(denied).resolve():
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(dir))
            return real_mkstemp(*args, dir=dir, **kwargs)

        tempfile.mkstemp = mkstemp

    nan, inf = faults.get("nan_loss"), faults.get("inf_grad")
    if nan or inf:
        real_default_loss = trainer_module.default_loss

        def default_loss(task: str):
            base = real_default_loss(task)
            calls = {"n": 0}

            def loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
                if not torch.is_grad_enabled():  # evaluation
                    return base(out, y)
                calls["n"] += 1
                if inf and calls["n"] == inf["step"]:
                    out.register_hook(lambda g: torch.full_like(g, math.inf))
                value = base(out, y)
                if nan and calls["n"] >= nan["step"]:
                    value = value * math.nan
                return value

            return loss

        trainer_module.default_loss = default_loss

    trial = faults.get("trial")
    if trial:
        from trainlab.tune import workers as workers_module

        real_report = workers_module._Report.on_epoch_end

        def report(self, trainer, logs: dict) -> None:
            if self.trial.number == trial["number"] and logs["epoch"] == trial["epoch"]:
                if trial.get("kill"):
                    _die()
                Path(trial["ready"]).touch()
                deadline = time.monotonic() + 120
                while not Path(trial["go"]).exists() and time.monotonic() < deadline:
                    time.sleep(0.02)
            real_report(self, trainer, logs)

        workers_module._Report.on_epoch_end = report
    if "reconnect_seconds" in faults:
        from trainlab.tune import storage as storage_module

        storage_module.RECONNECT_SECONDS = faults["reconnect_seconds"]


if __name__ == "__main__":
    _serve()
