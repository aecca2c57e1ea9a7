"""The ``trainlab`` command line.

Errors a user can fix are one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import errno
import os
import re
import sys
import warnings
from pathlib import Path

import typer

try:  # typer ≥ 0.2x carries its own copy of click
    from typer._click import exceptions as _click_errors
except ImportError:  # older typer runs on click itself
    import click.exceptions as _click_errors

import trainlab
from trainlab.errors import UserError, first_line

__all__ = ["app", "main"]

app = typer.Typer(
    name="trainlab",
    help="The classic optimization and training techniques of neural networks: "
    "exact optimizers, the training techniques, and a laboratory to compare, tune "
    "and diagnose them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"trainlab {trainlab.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """trainlab: train, compare, tune and diagnose neural networks."""


@app.command()
def demo(
    tol: float = typer.Option(1e-3, help="Stop when the loss is this fraction of its start."),
    max_steps: int = typer.Option(2000, help="Give up after this many steps."),
) -> None:
    """The lecture's optimizers on a long narrow valley: steps each one needs."""
    from trainlab.lecture.demo import format_demo

    if not 0 < tol < 1:
        raise typer.BadParameter(f"must be in (0, 1), got {tol}", param_hint="--tol")
    if max_steps < 1:
        raise typer.BadParameter(f"must be ≥ 1, got {max_steps}", param_hint="--max-steps")
    typer.echo(format_demo(tol, max_steps))


@app.command()
def fit(
    config: Path | None = typer.Argument(
        None, help="The experiment config (YAML); not needed with --resume."
    ),
    set_: list[str] = typer.Option(
        None, "--set", help="Override a config key: --set optimizer.lr=0.01 (repeatable)."
    ),
    out: Path | None = typer.Option(None, "--out", help="The run directory to create."),
    resume: Path | None = typer.Option(
        None, "--resume", help="Continue the run in this directory from its last checkpoint."
    ),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    nproc: int = typer.Option(
        1,
        "--nproc",
        min=1,
        help="Train on N processes of this machine (DDP through torchrun's launcher).",
    ),
) -> None:
    """Train a model from a config; writes a run directory and prints a final table."""
    from trainlab.run import fit as fit_run
    from trainlab.run import format_summary

    if config is None and resume is None:
        raise typer.BadParameter("give a CONFIG file, or --resume RUN_DIR", param_hint="CONFIG")
    if nproc > 1:
        from trainlab.launch import launch_fit

        launch_fit(config, set_ or [], nproc, out=out, resume=resume, quiet=quiet)
        return
    summary = fit_run(config, set_ or [], out=out, resume=resume, quiet=quiet, echo=typer.echo)
    if _rank() != 0:  # under torchrun, rank 0 prints
        return
    typer.echo(format_summary(summary))
    typer.echo(f"report: {_render_report(summary['run_dir'])}")
    if summary["diagnosis"]:
        from trainlab.diagnose.curves import Finding, format_findings

        typer.echo("")
        typer.echo(format_findings([Finding(**f) for f in summary["diagnosis"]]))


def _render_report(run_dir: str | Path) -> Path:
    """The CLI renders every page: a procedure returns its directory, this writes
    ``report.html`` there."""
    from trainlab.report import write_report

    return write_report(run_dir)


@app.command()
def tune(
    config: Path = typer.Argument(..., help="The experiment config with a tune section."),
    set_: list[str] = typer.Option(None, "--set", help="Override a config key (repeatable)."),
    trials: int | None = typer.Option(None, help="Trials to complete (default: tune.trials)."),
    workers: int = typer.Option(1, help="Local worker processes (one torch thread each)."),
    storage: str | None = typer.Option(
        None, help="A database URL (postgresql://USER@HOST/DB) instead of the journal file."
    ),
    study: str | None = typer.Option(None, help="The study's name (default: the config's)."),
    join: bool = typer.Option(False, "--join", help="Add this machine's worker to a study."),
    out: Path | None = typer.Option(
        None, "--out", help="The study directory (default runs/NAME-tune)."
    ),
    quiet: bool = typer.Option(False, "--quiet", help="No progress output."),
    batch: int = typer.Option(
        1, "--batch", help="Ask for K trials at a time and train them together (batched)."
    ),
) -> None:
    """Search the config's tune.space on the validation split, retrain the winner and
    evaluate it on the test split once."""
    from trainlab.tune import format_tune_summary
    from trainlab.tune import tune as run_tune

    summary = run_tune(
        config,
        set_ or [],
        out=out,
        trials=trials,
        workers=workers,
        storage=storage,
        study_name=study,
        join=join,
        quiet=quiet,
        echo=typer.echo,
        batch=batch,
    )
    if summary is not None:  # the coordinator (a --join worker prints nothing)
        report_path = _render_report(summary["run_dir"])
        typer.echo(format_tune_summary({**summary, "report": str(report_path)}))


@app.command()
def report(
    run_dirs: list[Path] = typer.Argument(..., help="Run or study directories."),
    out: Path | None = typer.Option(
        None, "-o", "--out", help="The HTML file (default: report.html beside the runs)."
    ),
) -> None:
    """One self-contained HTML page (figures embedded) for runs, studies or a comparison."""
    from trainlab.report import write_report

    try:
        path = write_report(run_dirs, out)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="RUN_DIR") from None
    typer.echo(f"report: {path}")


@app.command()
def compare(
    config: Path = typer.Argument(..., help="The experiment config (YAML)."),
    vary: list[str] = typer.Option(
        ..., "--vary", help="KEY=V1,V2,… — one axis of variants (repeatable)."
    ),
    seeds: int = typer.Option(1, help="Seeds of each variant's winner."),
    tune_lr: int = typer.Option(
        0, "--tune-lr", help="A grid of K learning rates per variant, chosen on validation."
    ),
    target: float | None = typer.Option(None, help="Report epochs and time to reach it."),
    set_: list[str] = typer.Option(None, "--set", help="Override a config key (repeatable)."),
    out: Path | None = typer.Option(None, "--out", help="Output directory."),
) -> None:
    """A fair comparison: the same tuning budget for every variant, then N seeds of each
    winner; mean ± std, diverged runs counted as failures."""
    from trainlab.compare import compare as run_compare
    from trainlab.compare import format_comparison
    from trainlab.report import write_report

    result = run_compare(
        config,
        vary,
        seeds=seeds,
        tune_lr=tune_lr,
        out=out,
        target=target,
        overrides=set_ or [],
        echo=typer.echo,
    )
    if result["report_runs"]:  # the winners' page: seed 0 of each variant
        result["report"] = str(
            write_report(result["report_runs"], Path(result["out"]) / "report.html")
        )
    typer.echo(format_comparison(result))
    if result.get("report"):
        typer.echo(f"report: {result['report']}")


@app.command()
def sweep(
    config: Path = typer.Argument(..., help="The experiment config (YAML)."),
    vary: list[str] = typer.Option(
        None,
        "--vary",
        help="KEY=SPEC: logspace(a,b,n), linspace(a,b,n), a YAML list or v1,v2,… "
        "(repeatable: the grid is their product).",
    ),
    seeds: int = typer.Option(1, help="Seeds of every variant: the config's seed, +1, …"),
    set_: list[str] = typer.Option(None, "--set", help="Override a config key (repeatable)."),
    out: Path | None = typer.Option(
        None, "--out", help="The sweep directory (default runs/NAME-sweep)."
    ),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Train many variants of one model together, batched; writes each run, a table, a report."""
    from trainlab.report import write_report
    from trainlab.sweep.run import format_sweep
    from trainlab.sweep.run import sweep as run_sweep

    result = run_sweep(
        config, vary or [], seeds=seeds, overrides=set_ or [], out=out, quiet=quiet, echo=typer.echo
    )
    if result["report_runs"]:  # the best runs' page
        result["report"] = str(
            write_report(result["report_runs"], Path(result["out"]) / "report.html")
        )
    typer.echo(format_sweep(result))  # ends with "report (N best of M runs): PATH"


@app.command()
def lecture(
    claims: list[str] | None = typer.Argument(
        None, metavar="CLAIM", help="Only these claims, as with --only: C11 C15."
    ),
    quick: bool = typer.Option(False, "--quick", help="Smaller experiments (minutes)."),
    out: Path = typer.Option(Path("runs/lecture"), "--out", help="Where figures and pages go."),
    only: list[str] | None = typer.Option(
        None, "--only", help="Only these claims: --only C3,C8, --only C3 --only C8 or --only C3 C8."
    ),
) -> None:
    """The lecture's claims C1–C15 as experiments: each measured, with a figure and a
    verdict (held / did not hold / inconclusive); writes lecture.html."""
    from trainlab.lecture.report import run_lecture, write_lecture_report

    args = [*(only or []), *(claims or [])]  # --only C3 C8 leaves C8 to the argument
    wanted = [c.strip().upper() for arg in args for c in arg.split(",") if c.strip()]
    try:
        results = run_lecture(out, quick=quick, only=wanted or None, echo=typer.echo)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--only") from None
    path = write_lecture_report(results, out)
    held = sum(r.verdict == "held" for r in results)
    typer.echo(f"{held} of {len(results)} claims held; report: {path}")


@app.command("lr-find")
def lr_find_command(
    config: Path = typer.Argument(..., help="The experiment config (YAML)."),
    set_: list[str] = typer.Option(None, "--set", help="Override a config key (repeatable)."),
    out: Path = typer.Option(Path("lr_find.png"), "--out", help="Where to write the plot."),
    rule: str = typer.Option("valley", help="valley | steepest | minimum"),
    start: float = typer.Option(1e-7, help="The first learning rate."),
    end: float = typer.Option(10.0, help="The last learning rate."),
    steps: int = typer.Option(100, help="Mini-batches to try (one learning rate each)."),
) -> None:
    """The LR range test: train briefly at exponentially growing learning rates and read a
    good one off the loss curve (the model and optimizer are left as they were)."""
    from trainlab.config import load_config
    from trainlab.diagnose import lr_find
    from trainlab.train.build import build

    pieces = build(load_config(config, set_ or []))
    try:
        result = lr_find(
            pieces.model,
            pieces.optimizer,
            pieces.loaders["train"],
            pieces.loss(),
            start=start,
            end=end,
            steps=steps,
            rule=rule,
            device=pieces.device,
        )
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    path = result.plot(out)
    if result.suggestion is None:
        typer.echo(f"no suggestion: {result.message}")
    else:
        typer.echo(f"suggested learning rate ({result.rule}): {result.suggestion:.3g}")
        typer.echo(result.message)
        typer.echo(
            f"train with it: trainlab fit {config} --set optimizer.lr="
            f"{result.suggestion:.3g}   (or --set optimizer.lr=auto)"
        )
    typer.echo(f"plot: {path}")


@app.command()
def diagnose(
    run_dir: Path | None = typer.Argument(None, help="A run directory to read."),
    sanity: Path | None = typer.Option(
        None,
        "--sanity",
        help="CONFIG: check the model's health at init and that it can "
        "overfit one batch, before training.",
    ),
    set_: list[str] = typer.Option(None, "--set", help="With --sanity: override a key."),
) -> None:
    """Read a run's curves and say what is wrong and what to do; or, with --sanity, check
    a config's model before training."""
    if sanity is not None:
        _sanity(sanity, set_ or [])
        return
    if run_dir is None:
        raise typer.BadParameter("give a RUN_DIR, or --sanity CONFIG", param_hint="RUN_DIR")
    from trainlab.diagnose.curves import format_findings
    from trainlab.run import diagnose_run

    typer.echo(format_findings(diagnose_run(run_dir)))


def _sanity(config_path: Path, overrides: list[str]) -> None:
    from trainlab import optim
    from trainlab.config import load_config
    from trainlab.diagnose import health, overfit_one_batch
    from trainlab.train.build import build

    config = load_config(config_path, overrides)
    pieces = build(config)
    train = pieces.loaders["train"]
    x, y = train.X[:32], train.y[:32]
    task, n_classes = pieces.dataset.task, pieces.dataset.n_classes
    report = health(pieces.model, x, y, task=task, n_classes=n_classes)
    typer.echo(report.format())
    hyper = config.optimizer.hyperparameters()
    if config.optimizer.lr == "auto":
        hyper["lr"] = 1e-3

    def make(params):
        return optim.create(config.optimizer.name, params, **hyper)

    result = overfit_one_batch(pieces.model, make, x, y, task=task)
    typer.echo("")
    typer.echo(
        f"overfit one batch of {len(y)}: {'passed' if result.passed else 'FAILED'} — "
        f"{result.message}"
    )
    if not result.passed:
        raise typer.Exit(1)


@app.command()
def datasets() -> None:
    """List the built-in datasets with their sizes."""
    from trainlab.data import describe

    rows = describe()
    typer.echo(f"{'name':14} {'task':15} {'samples':>8} {'input':>12} {'classes':>8}  description")
    for r in rows:
        shape = "×".join(str(d) for d in r["input_shape"])
        classes = r["n_classes"] if r["n_classes"] is not None else "-"
        typer.echo(
            f"{r['name']:14} {r['task']:15} {r['n_samples']:>8} {shape:>12} "
            f"{classes!s:>8}  {r['description']}"
        )


def _rank() -> int:
    """This process's rank under torchrun (0 otherwise)."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def _lost_peer(err: Exception) -> str | None:
    """In a distributed run, a collective that failed because another rank is gone."""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
        return None
    import torch.distributed as dist

    if isinstance(err, dist.DistError) or "gloo" in str(err).lower():
        first = first_line(err)
        return f"lost contact with the other processes ({first[:200]})"
    return None


def _out_of_memory(err: Exception) -> str | None:
    """The allocator refused memory (CPU or GPU): what to change, in one line."""
    import torch

    text = str(err)
    if not (
        isinstance(err, (MemoryError, torch.OutOfMemoryError))
        or (isinstance(err, RuntimeError) and "can't allocate memory" in text)
    ):
        return None
    asked = re.search(r"tried to allocate ([\d.]+ ?[A-Za-z]+)", text, re.IGNORECASE)
    size = f": {asked.group(1)} asked for" if asked else ""
    return (
        f"out of memory{size}; use a smaller train.batch_size or a smaller model "
        f"(model.hidden, model.channels)"
    )


#: OSErrors the user's environment causes (full disk, no permission, read-only file
#: system, quota): one line, exit status 2, like any error the user can fix.
_ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EACCES, errno.EPERM, errno.EROFS, errno.EDQUOT}


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: user errors become one line on stderr and exit 2."""
    # a warning is one line too (no source line): "trainlab: warning: …"
    warnings.formatwarning = lambda message, *args, **kwargs: f"trainlab: warning: {message}\n"
    if _rank() != 0:  # under torchrun every rank would repeat rank 0's warnings
        warnings.simplefilter("ignore")
    try:
        code = app(args=argv, standalone_mode=False)
    except _click_errors.UsageError as err:
        if type(err).__name__ == "NoArgsIsHelpError":
            sys.exit(0)  # bare `trainlab`: the help is already printed, as for --help
        typer.echo(f"trainlab: error: {err.format_message()}", err=True)
        sys.exit(2)
    except _click_errors.ClickException as err:
        typer.echo(f"trainlab: error: {err.format_message()}", err=True)
        sys.exit(2)
    except Exception as err:
        from trainlab.launch import LaunchError

        if isinstance(err, LaunchError):  # a rank of `fit --nproc` failed
            if str(err):
                typer.echo(f"trainlab: error: {err}", err=True)
            sys.exit(err.exit_code)
        from trainlab.run import RunInterrupted

        if isinstance(err, RunInterrupted):  # SIGINT/SIGTERM: the epoch is saved
            if _rank() == 0:
                typer.echo(f"trainlab: {err}", err=True)
            sys.exit(err.exit_status)
        if isinstance(err, OSError) and err.errno in _ENVIRONMENT_ERRNOS:
            where = f" ({err.filename})" if err.filename else ""
            typer.echo(f"trainlab: error: {err.strerror or err}{where}", err=True)
            sys.exit(2)
        if not isinstance(err, UserError):
            lost = _lost_peer(err)
            if lost:
                if not os.environ.get("TRAINLAB_LAUNCHED"):  # else the launcher reports
                    typer.echo(f"trainlab: error: rank {_rank()}: {lost}", err=True)
                sys.exit(1)
            memory = _out_of_memory(err)
            if memory:
                typer.echo(f"trainlab: error: {memory}", err=True)
                sys.exit(2)
            raise
        if _rank() == 0:  # every rank has the same error: one line
            typer.echo(f"trainlab: error: {err}", err=True)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("trainlab: interrupted", err=True)
        sys.exit(130)
    if code == 130:  # typer turns a KeyboardInterrupt in a command into exit code 130
        typer.echo("trainlab: interrupted", err=True)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
