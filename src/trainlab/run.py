"""The fit procedure: train a run from a config, resume it, summarize it, diagnose it.

The run directory's layout, readers and writers belong to
:class:`trainlab.train.rundir.RunDir`; the run's pieces are built by
:func:`trainlab.train.build.build`. This module wires them into a procedure: pick the
directory, build, check, create the directory, train (resumably), evaluate the best
epoch's weights on every split (the test split once, at the end), diagnose the curves and
write ``summary.json`` once. Rendering ``report.html`` is left to the CLI.
"""

from __future__ import annotations

import shlex
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainlab import data as tl_data
from trainlab.config import Config, config_dict, load_config, save_config
from trainlab.diagnose import diagnose, lr_find
from trainlab.train import distributed
from trainlab.train.build import Pieces, build, eval_loader, seed_everything
from trainlab.train.callbacks import (
    Checkpoint,
    MetricsLog,
    Progress,
    StopOnSignal,
    TensorBoard,
)
from trainlab.train.checkpoint import CheckpointError, load_checkpoint
from trainlab.train.metrics import TASK_METRICS
from trainlab.train.rundir import RunDir, RunError, make_summary
from trainlab.train.trainer import Trainer, resolve_device

__all__ = [
    "RunError",
    "RunInterrupted",
    "Run",
    "Pieces",
    "build",
    "find_lr",
    "prepare",
    "fit",
    "seed_everything",
]


class RunInterrupted(Exception):
    """Training stopped on SIGINT or SIGTERM once its last epoch was saved. ``str(err)``
    is one line with the command that resumes the run; ``exit_status`` is 128 + the
    signal's number (130 for SIGINT, 143 for SIGTERM), as a shell reports a signal."""

    def __init__(self, message: str, exit_status: int):
        super().__init__(message)
        self.exit_status = exit_status


@dataclass
class Run:
    """Everything a run is made of, built from a config (see :func:`prepare`)."""

    config: Config
    run_dir: Path
    dataset: Any
    split: Any
    preprocessor: Any
    trainer: Trainer
    loaders: dict[str, Any]
    checkpoint: Checkpoint

    def extra(self) -> dict:
        """What every checkpoint carries besides the trainer: preprocessing and config."""
        return {
            "preprocess": self.preprocessor.state_dict() if self.preprocessor else None,
            "config": config_dict(self.config),
        }


#: What `--set` may change when a run is resumed: how long and where it trains, not what.
RESUMABLE_KEYS = ("train.epochs", "train.early_stopping", "train.device", "train.checkpoint_every")


def _check_resume_overrides(overrides: list[str]) -> None:
    for pair in overrides:
        key = pair.partition("=")[0]
        if not key.startswith(RESUMABLE_KEYS):
            raise RunError(
                f"--set {key}: a resumed run continues as it was configured; only "
                f"{', '.join(RESUMABLE_KEYS)} may change (start a new run to change {key})"
            )


def find_lr(pieces: Pieces, echo: Callable[[str], None] = print) -> Any:
    """Run the LR range test on the pieces' model and training data; set the optimizer's
    learning rate to the suggestion. Model, optimizer state and RNGs are left as they were.

    Raises
    ------
    RunError
        When the finder has no suggestion (its message says why).
    """
    result = lr_find(
        pieces.model, pieces.optimizer, pieces.loaders["train"], pieces.loss(), device=pieces.device
    )
    if result.suggestion is None:
        raise RunError(
            f"optimizer.lr=auto: the learning-rate finder has no suggestion: "
            f"{result.message}; give a learning rate"
        )
    for group in pieces.optimizer.param_groups:
        group["lr"] = result.suggestion
    echo(f"learning rate from the LR finder ({result.rule}): {result.suggestion:.3g}")
    return result


def prepare(
    config: Config,
    run_dir: Path,
    resuming: bool,
    quiet: bool = True,
    echo: Callable[[str], None] = print,
    split: Any = None,
) -> Run:
    """Build the run's pieces and its Trainer; create the run directory (a new run) once
    every check has passed. ``split`` fixes the split of a new run (tuning does)."""
    rd = RunDir(run_dir)
    pieces = build(config, tl_data.Split.load(rd.split) if resuming else split)
    dataset, loaders = pieces.dataset, pieces.loaders
    finder = None
    if config.optimizer.lr == "auto" and not resuming:  # resumed: the state has the lr
        finder = find_lr(pieces, echo)
    monitor = pieces.monitor()
    main = distributed.is_main()  # in a distributed run, rank 0 alone writes
    if not resuming and main:  # every check passed: now the run directory is made
        rd.create()
        save_config(config, rd.config)  # first: from here on --resume works
        pieces.split.save(rd.split)
        if finder is not None:
            finder.plot(rd.file(RunDir.LR_FIND_PLOT))
            rd.write_json(RunDir.LR_FIND, finder.to_dict())

    callbacks: list[Any] = [
        MetricsLog(rd.metrics),
        Progress(config.train.epochs, enabled=None if not quiet else False),
    ]
    if main and _tensorboard_available():
        callbacks.append(TensorBoard(rd.tensorboard))
    checkpoint = Checkpoint(rd.checkpoints, metric=monitor, every=config.train.checkpoint_every)
    callbacks.append(checkpoint)  # last: it saves the other callbacks' updated state
    trainer = pieces.trainer(callbacks)
    run = Run(
        config, run_dir, dataset, pieces.split, pieces.preprocessor, trainer, loaders, checkpoint
    )
    checkpoint.extra = run.extra
    return run


def _tensorboard_available() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


def fit(
    config_path: str | Path | None,
    overrides: list[str] | None = None,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    quiet: bool = False,
    echo: Callable[[str], None] = print,
) -> dict:
    """Train from a config (or continue the run in ``resume``); returns the summary.

    Under torchrun every rank calls this: rank 0 picks the run directory and alone writes
    to it and prints; every rank trains and evaluates its share (docs/distributed.md)."""
    if distributed.requested():
        try:
            return _fit(config_path, overrides, out, resume, quiet, echo)
        finally:
            distributed.shutdown()
    return _fit(config_path, overrides, out, resume, quiet, echo)


def _fit(
    config_path: str | Path | None,
    overrides: list[str] | None,
    out: str | Path | None,
    resume: str | Path | None,
    quiet: bool,
    echo: Callable[[str], None],
) -> dict:
    if resume is not None:
        run_dir = Path(resume)
        config, last = resumable(run_dir, overrides or [])
        state = load_checkpoint(last) if last is not None else None
    else:
        config = load_config(config_path, overrides)
    distributed.init(resolve_device(config.train.device))  # a no-op without torchrun
    if resume is None:  # rank 0 picks the directory (a timestamp), every rank uses it
        run_dir = Path(distributed.on_main(_new_run_dir, config.name, out))
        state = None
    main = distributed.is_main()
    if not main:
        echo = _silent
    if resume is not None and state is None and main:  # killed before its first checkpoint
        RunDir(run_dir).best.unlink(missing_ok=True)
    run = prepare(config, run_dir, resuming=state is not None, quiet=quiet, echo=echo)
    if main and state is not None and overrides:  # a new run's is written by prepare
        save_config(config, RunDir(run_dir).config)
    echo(f"run directory: {run_dir}")
    trainer = run.trainer
    if state is not None:
        try:
            trainer.load_state_dict(state["trainer"], train_loader=run.loaders["train"])
        except RuntimeError as err:  # torch's model.load_state_dict: another model
            if not str(err).startswith("Error(s) in loading state_dict"):
                raise
            differences = " ".join(str(err).split("\n", 1)[-1].split())
            old_bias = "Unexpected key" in differences and ".bias" in differences
            raise CheckpointError(
                f"{last}: its model is not the one the run's config builds ({differences})"
                + (
                    "; runs saved before trainlab gave a layer that a batch norm follows no "
                    "bias cannot be resumed"
                    if old_bias
                    else ""
                )
            ) from None
        echo(f"resuming after epoch {trainer.epoch} of {config.train.epochs}")
    elif resume is not None:
        echo("no checkpoint yet (stopped before its first epoch ended): starting it again")
    started = time.perf_counter()
    with StopOnSignal() as stop:
        trainer.callbacks.append(stop)  # after Checkpoint: the stopping epoch is saved
        trainer.fit(run.loaders["train"], run.loaders.get("val"), epochs=config.train.epochs)
    if stop.stopped or stop.received is not None:  # saved; the summary is left to --resume
        raise RunInterrupted(
            f"interrupted by {stop.name or 'a signal'} after epoch {trainer.epoch} of "
            f"{config.train.epochs}, which is saved in {run.checkpoint.last}; resume with: "
            f"trainlab fit --resume {shlex.quote(str(run_dir))}",
            128 + (stop.received or signal.SIGTERM),
        )
    summary = summarize(run, time.perf_counter() - started)
    if main:
        RunDir(run_dir).write_summary(summary)  # once, when the run is done
    return summary


def resumable(run_dir: Path, overrides: list[str]) -> tuple[Config, Path | None]:
    """The config of the run in ``run_dir`` (with the ``overrides`` a resume may make) and
    its last checkpoint (None when it was stopped before its first checkpoint: it then
    starts again, in the same directory).

    Raises
    ------
    RunError
        When ``run_dir`` is no run directory or an override changes what the run is.
    """
    rd = RunDir(run_dir)
    saved = rd.config
    if not saved.is_file():
        raise RunError(f"cannot resume {run_dir}: no config.yaml there (is it a run directory?)")
    _check_resume_overrides(overrides)
    config = load_config(saved, overrides)
    return config, rd.last if rd.last.is_file() else None


def _silent(message: str) -> None:
    """The echo of ranks other than 0: they print nothing."""


def summarize(run: Run, seconds: float) -> dict:
    """Evaluate the best epoch's weights on every split (the test split only here, once)."""
    trainer = run.trainer
    distributed.barrier()  # rank 0 has written best.pt
    if run.checkpoint.best.is_file():
        trainer.model.load_state_dict(load_checkpoint(run.checkpoint.best)["model"])
    evaluated = {}
    for name in ("train", "val", "test"):
        loader = run.loaders.get(name)
        if name == "train":  # metrics in eval mode (no dropout), in order
            loader = eval_loader(loader)
        if loader is not None:
            evaluated[name] = trainer.evaluate(loader)
    findings = diagnose(trainer.history, task=run.dataset.task, n_classes=run.dataset.n_classes)
    return make_summary(
        run_dir=run.run_dir,
        name=run.config.name,
        task=run.dataset.task,
        n_classes=run.dataset.n_classes,
        history=trainer.history,
        monitor=run.checkpoint.tracker.metric,
        steps=trainer.step,
        skipped_steps=trainer.skipped_steps,
        seconds=seconds,
        evaluated=evaluated,
        diagnosis=[f.to_dict() for f in findings],
    )


def diagnose_run(run_dir: str | Path) -> list:
    """The findings of :func:`trainlab.diagnose.diagnose` on a run directory's curves.

    Raises
    ------
    RunError
        When the directory has no (readable) metrics.jsonl.
    """
    rd = RunDir(run_dir)
    history = rd.read_history(strict=True)
    task, n_classes = rd.task(history)
    return diagnose(history, task=task or "regression", n_classes=n_classes)


def _new_run_dir(name: str, out: str | Path | None) -> Path:
    """The directory of a new run (a path, so that ranks can share it)."""
    return RunDir.new(name, out).path


def format_summary(summary: dict) -> str:
    """The final table printed by ``trainlab fit``."""
    metrics = TASK_METRICS[summary["task"]]
    lines = [f"{'split':8}" + "".join(f"{m:>12}" for m in metrics)]
    for name in ("train", "val", "test"):
        row = summary.get(name) or {}
        if row:
            lines.append(
                f"{name:8}" + "".join(f"{row.get(m, float('nan')):>12.4f}" for m in metrics)
            )
    lines.append(
        f"best epoch {summary['best_epoch']} of {summary['epochs_run']}, "
        f"{summary['seconds']:.1f} s; results in {summary['run_dir']}"
    )
    return "\n".join(lines)
