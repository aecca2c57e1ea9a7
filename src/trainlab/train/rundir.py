"""The run directory: one type owns its layout, its readers and its writers.

A run is a directory::

    config.yaml      the fully resolved config (the first file: from then on --resume works)
    split.json       the train/validation/test indices
    metrics.jsonl    one JSON line per epoch
    checkpoints/     last.pt (everything, for --resume) and best.pt (the monitored best)
    summary.json     the best epoch's weights evaluated on train, val and test; written once
    report.html      the page rendered from the files above (by the CLI, never by a run)
    lr_find.png/json the LR range test, when ``optimizer.lr: auto`` ran it

Every command that writes a run (``fit``, ``sweep``, ``compare``, ``tune``, the lecture)
goes through :class:`RunDir`: the paths are named here once, ``metrics.jsonl`` is read
here once (strictly for a procedure, tolerantly for a page), ``summary.json`` is written
here once and atomically, and the rule "a new run goes into a new or empty directory" is
checked here once.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from trainlab.atomic import write_atomic
from trainlab.errors import UserError

from .callbacks import Checkpoint
from .metrics import history_best, infer_task

__all__ = ["RunDir", "RunError", "make_summary", "require_empty"]


class RunError(UserError, ValueError):
    """A problem with a run directory or a run's inputs that the user can fix."""


def require_empty(path: str | Path, what: str = "run directory", hint: str = "") -> Path:
    """``path`` when it does not exist or is an empty directory: a new run (sweep,
    comparison, study) never writes into another one's files.

    Raises
    ------
    RunError
        When ``path`` exists and is a file or a directory with something in it.
    """
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise RunError(f"{what} {path} already exists and is not empty; {hint or 'choose another'}")
    return path


def make_summary(
    *,
    run_dir: str | Path | None,
    name: str,
    task: str,
    n_classes: int | None,
    history: list[dict],
    monitor: str,
    steps: int,
    seconds: float,
    evaluated: dict[str, dict],
    diagnosis: list[dict],
    skipped_steps: int = 0,
    batched: bool = False,
) -> dict[str, Any]:
    """The one schema of ``summary.json``, for a run trained alone (``fit``) or in a batch
    (``sweep``): the run, its best epoch by ``monitor``, its counters, the best weights'
    metrics on each split (``evaluated``: split → metrics; ``{}`` for a split not there),
    the diagnosis of its curves, and whether it was trained batched."""
    best = history_best(history, monitor)
    return {
        "run_dir": None if run_dir is None else str(run_dir),
        "name": name,
        "task": task,
        "n_classes": n_classes,
        "best_epoch": best[0] if best else None,
        "epochs_run": len(history),
        "steps": steps,
        "skipped_steps": skipped_steps,
        "seconds": round(seconds, 2),
        **{split: evaluated.get(split) or {} for split in ("train", "val", "test")},
        "diagnosis": diagnosis,
        "batched": batched,
    }


def _json_default(value: Any) -> Any:
    """Tensors, NumPy scalars and paths in a summary, as plain JSON values."""
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(value: Any) -> str:
    """JSON text as every file of a run directory is written: indented, one final newline
    (NaN and Infinity as Python's json writes them)."""
    return json.dumps(value, indent=2, default=_json_default) + "\n"


class RunDir:
    """A run directory at ``path``: its files' paths, readers and writers.

    Nothing is created or read on construction; :meth:`new` picks the directory of a new
    run, :meth:`create` makes it.
    """

    CONFIG = "config.yaml"
    SPLIT = "split.json"
    METRICS = "metrics.jsonl"
    CHECKPOINTS = "checkpoints"
    SUMMARY = "summary.json"
    REPORT = "report.html"
    LR_FIND_PLOT = "lr_find.png"
    LR_FIND = "lr_find.json"
    TENSORBOARD = "tensorboard"

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __str__(self) -> str:
        return str(self.path)

    def __fspath__(self) -> str:
        return str(self.path)

    # ------------------------------------------------------------------ choosing one

    @classmethod
    def new(cls, name: str, out: str | Path | None = None) -> RunDir:
        """The directory of a new run: ``out``, or ``runs/NAME-<time>`` when it is None.
        Not created yet (:meth:`create` makes it once every check has passed).

        Raises
        ------
        RunError
            When the directory exists and is not empty.
        """
        if out is None:
            out = Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
        require_empty(out, hint="choose another --out, or continue it with --resume")
        return cls(out)

    def create(self) -> RunDir:
        """Make the directory and its ``checkpoints/``.

        Raises
        ------
        RunError
            When the directory cannot be made (the reason is in the message).
        """
        try:
            self.checkpoints.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise RunError(f"cannot create run directory {self.path}: {err.strerror}") from None
        return self

    # ------------------------------------------------------------------ paths

    def file(self, name: str) -> Path:
        """The path of a file of the run (one of the names above, or another artifact)."""
        return self.path / name

    @property
    def config(self) -> Path:
        return self.path / self.CONFIG

    @property
    def split(self) -> Path:
        return self.path / self.SPLIT

    @property
    def metrics(self) -> Path:
        return self.path / self.METRICS

    @property
    def checkpoints(self) -> Path:
        return self.path / self.CHECKPOINTS

    @property
    def last(self) -> Path:
        return self.checkpoints / Checkpoint.LAST

    @property
    def best(self) -> Path:
        return self.checkpoints / Checkpoint.BEST

    @property
    def summary(self) -> Path:
        return self.path / self.SUMMARY

    @property
    def report(self) -> Path:
        return self.path / self.REPORT

    @property
    def tensorboard(self) -> Path:
        return self.path / self.TENSORBOARD

    def is_run(self) -> bool:
        """Whether the directory holds a run's curves (``metrics.jsonl``)."""
        return self.metrics.is_file()

    # ------------------------------------------------------------------ reading

    def read_history(self, strict: bool = True) -> list[dict]:
        """The epochs of ``metrics.jsonl``, in order.

        ``strict`` (a procedure's read): a missing file or a line that is not a JSON object
        is an error naming the file and line. Not strict (a page's read, a run still being
        written): a missing file is no epoch, and unreadable lines (a half-written last
        line) are left out; :meth:`unreadable_lines` lists them.

        Raises
        ------
        RunError
            Strict only: no ``metrics.jsonl``, or a line that is not a JSON object.
        """
        history, bad = self._scan_history()
        if strict:
            if not self.metrics.is_file():
                raise RunError(f"{self.path} is not a run directory: no {self.METRICS} there")
            if bad:
                raise RunError(f"{self.metrics}, line {bad[0]}: not a JSON object")
        return history

    def unreadable_lines(self) -> list[int]:
        """The numbers of the lines of ``metrics.jsonl`` that are not JSON objects."""
        return self._scan_history()[1]

    def _scan_history(self) -> tuple[list[dict], list[int]]:
        try:
            text = self.metrics.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return [], []
        history, bad = [], []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                bad.append(number)
                continue
            if isinstance(entry, dict):
                history.append(entry)
            else:
                bad.append(number)
        return history, bad

    def read_json(self, name: str) -> tuple[dict | None, str | None]:
        """(the object in file ``name``, None), or (None, why it could not be read)."""
        path = self.file(name)
        if not path.is_file():
            return None, f"no {name}"
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            return None, f"{name} cannot be read ({err})"
        if not isinstance(value, dict):
            return None, f"{name} is not a JSON object"
        return value, None

    def read_summary(self) -> dict | None:
        """``summary.json`` (None when it is missing or unreadable)."""
        return self.read_json(self.SUMMARY)[0]

    def task(self, history: list[dict] | None = None) -> tuple[str | None, int | None]:
        """(task, number of classes) of the run: from ``summary.json`` when it says, else
        inferred from the curves (the number of classes is then unknown)."""
        summary = self.read_summary() or {}
        task, n_classes = summary.get("task"), summary.get("n_classes")
        if task is None:
            task = infer_task(history if history is not None else self.read_history(False))
        return task, n_classes

    # ------------------------------------------------------------------ writing

    def write_summary(self, summary: dict) -> Path:
        """Write ``summary.json`` atomically: once, when the run is done."""
        return write_atomic(self.summary, dumps(summary))

    def write_json(self, name: str, value: Any) -> Path:
        """Write a JSON artifact of the run (``lr_find.json``…) atomically."""
        return write_atomic(self.file(name), dumps(value))

    def write_text(self, name: str, text: str) -> Path:
        """Write a text artifact of the run atomically."""
        return write_atomic(self.file(name), text)

    def write_history(self, history: list[dict]) -> Path:
        """Write the whole of ``metrics.jsonl`` atomically (a run trained elsewhere, e.g. in
        a sweep); a run being trained appends through the MetricsLog callback instead."""
        return write_atomic(self.metrics, "".join(json.dumps(h) + "\n" for h in history))


def finite(value: Any) -> bool:
    """Whether ``value`` is a finite real number (a metric worth showing)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
