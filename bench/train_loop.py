"""Steps per second of one training loop: trainlab's Trainer against a plain PyTorch loop,
PyTorch Lightning and Keras 3.

    .venv/bin/python bench/train_loop.py                 # or: make bench; ~5 min on 2 busy cores
    .venv/bin/python bench/train_loop.py --models mlp --rounds 1 --json out.json
    .venv/bin/python bench/train_loop.py --quick         # smoke run: 4 epochs, 1 round

What is trained
---------------
The models of ``examples/mnist1d_mlp.yaml`` (40-100-100-10 MLP, batch norm, dropout 0.3)
and ``examples/mnist1d_cnn.yaml`` (three 32-channel stride-2 convolutions, batch norm,
dropout 0.2), built by ``trainlab.models.create`` from those configs, on their training
split of MNIST-1D held in memory as tensors, with their batch size (100), Adam with their
learning rate (1e-2), and their number of epochs (120 and 100: 3,960 and 3,500 steps).
The loops:

``plain``
    The hand-written PyTorch loop: every epoch a ``torch.randperm`` of the training set,
    batches ``X[idx], y[idx]`` by indexing the in-memory tensors (no DataLoader),
    ``optimizer.zero_grad(set_to_none=True)``, ``loss.backward()``, ``optimizer.step()``
    with ``torch.optim.Adam`` (torch's default implementation: the for-loop one on the
    CPU), and ``loss.item()`` every step, summed for the epoch's mean loss, as a loop that
    logs its loss does. The baseline: ``× plain`` is steps/s over its steps/s.
``trainlab``
    What ``trainlab fit`` runs: ``trainlab.run.prepare`` builds the Trainer from the
    config, with trainlab's Adam (``impl="auto"``), the config's LR schedule (a torch
    ``LambdaLR`` stepped every batch) and the callbacks of a real run: the metrics log
    (``metrics.jsonl``), the checkpoint (``last.pt`` written every epoch, into a
    temporary directory) and the progress bar (off, as under ``--quiet``). It computes the
    training loss and accuracy of every epoch. Left out: the per-epoch validation pass
    (the other loops have none), the LR finder, the final evaluation and the report.
``trainer-torch-adam``
    The Trainer alone: no callbacks, no scheduler, and ``torch.optim.Adam`` as in the
    plain loop, so the difference from ``plain`` is the Trainer's own overhead.
``lightning``
    ``lightning.Trainer.fit`` of a ``LightningModule`` wrapping the same model, whose
    ``training_step`` returns the cross-entropy and ``configure_optimizers`` returns
    ``torch.optim.Adam``. Logger, checkpointing, progress bar, model summary and sanity
    validation are off, and nothing is ``self.log``-ged. The data come from the fastest
    in-memory ``DataLoader``: a ``TensorDataset`` indexed a whole batch at a time (a
    ``BatchSampler`` over a ``RandomSampler``, ``batch_size=None``), not one sample at a
    time and collated.
``keras``
    Keras 3 on its torch backend (``KERAS_BACKEND=torch``, set before keras is imported, in
    a subprocess of its own), the same layers (``Dense``/``Conv1D`` after
    ``ZeroPadding1D(1)``, without a bias before a batch norm, as trainlab's builders;
    ``BatchNormalization(momentum=0.9, epsilon=1e-5)``, ReLU,
    ``Dropout``), ``keras.optimizers.Adam(lr, epsilon=1e-8)``, sparse cross-entropy on
    logits with ``metrics=["accuracy"]``, and ``model.fit`` on the in-memory NumPy arrays
    with the same batch size, ``shuffle=True``, ``verbose=0``. ``jit_compile`` is left at
    its default, which on the torch backend is eager execution (no ``torch.compile``).

Every loop's model has the same number of trainable parameters (checked at run time).
Lightning and Keras come with the ``bench`` extra (``pip install -e ".[bench]"``); without
them their rows are skipped with a note.

Method
------
One process, deterministic kernels as ``trainlab fit`` sets them (``train.deterministic``),
torch's default threads (``--threads`` to change them, for every loop alike). Every loop
trains the example's number of epochs in all, in ``--rounds`` rounds (default 10), each
round on a fresh model; the first epoch of every round is warm-up and not counted. Within
a round the three PyTorch loops take turns epoch by epoch (plain, trainlab, Trainer alone,
plain, …), so a slow spell of a shared machine hits them alike; Lightning trains the
round's epochs in one ``fit``, and Keras in one ``fit`` in its subprocess (started once
per model, before any timing); these three blocks run in turn, in reverse order every
other round. An epoch's time runs from its start (the plain loop's
shuffle; the start of a Trainer's ``fit`` call, one call per epoch, after the other
callbacks' ``on_fit_start``) or from the previous epoch's end (Lightning, Keras) to its
end, after every callback (checkpoint, metrics log). A loop's figure is the median over
its counted epochs divided by the steps of an epoch: ms/step, steps/s, and × plain
(steps/s over the plain loop's: above 1 is faster). Separately, ``optimizer.step()`` is
timed inside a training loop for ``torch.optim.Adam`` and trainlab's Adam: the
optimizer's share of a step. The run ends by printing how many cores other processes used
meanwhile (/proc/stat): rerun when that is high.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

import torch
import torch.nn.functional as F

from optim_step import cpu_seconds, machine, others_load
from trainlab import models, optim
from trainlab.config import Config, load_config
from trainlab.data import TensorLoader
from trainlab.run import prepare
from trainlab.train import Trainer
from trainlab.train.build import build

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
MODELS = {"mlp": "mnist1d_mlp", "cnn": "mnist1d_cnn"}
LABELS = {
    "plain": "plain PyTorch loop",
    "trainlab": "trainlab (as trainlab fit)",
    "trainer-torch-adam": "Trainer alone, torch Adam",
    "lightning": "PyTorch Lightning",
    "keras": "Keras 3 (torch backend)",
}
LOOPS = tuple(LABELS)
#: The package each optional loop needs (the ``bench`` extra installs them).
EXTRAS = {"lightning": "lightning", "keras": "keras"}
INSTALL = 'pip install -e ".[bench]"'


@dataclass
class Setup:
    """One benchmark model: its config and its training data, in memory on ``device``."""

    name: str  # a key of MODELS
    config: Config
    X: torch.Tensor
    y: torch.Tensor
    n_classes: int
    device: torch.device

    @property
    def batch_size(self) -> int:
        return self.config.train.batch_size

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.X) / self.batch_size)

    @property
    def lr(self) -> float:
        return float(self.config.optimizer.lr)


def example_config(name: str, device: str, *overrides: str) -> Config:
    path = EXAMPLES / f"{MODELS[name]}.yaml"
    return load_config(path, [f"train.device={device}", *overrides])


def load_setup(name: str, device: str = "cpu") -> Setup:
    """The example's config and its training split, as ``trainlab fit`` builds them (this
    also turns on deterministic kernels when the config asks for them, as a run does)."""
    pieces = build(example_config(name, device), parts=("train",))
    train = pieces.loaders["train"]
    return Setup(name, pieces.config, train.X, train.y, pieces.dataset.n_classes, pieces.device)


def new_model(setup: Setup) -> torch.nn.Module:
    """A freshly initialized model of the example (trainlab's builder, the config's options)."""
    torch.manual_seed(setup.config.seed)
    model = models.create(
        setup.config.model.kind,
        tuple(setup.X.shape[1:]),
        setup.n_classes,
        **setup.config.model.options(),
    )
    return model.to(setup.device)


def trainable_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _now(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


# --- the PyTorch loops, interleaved epoch by epoch: each yields its epochs' seconds ---------


def plain_epochs(setup: Setup, notes: dict[str, list[float]]) -> Iterator[float]:
    """The hand-written loop (see the module docstring)."""
    model = new_model(setup)
    optimizer = torch.optim.Adam(model.parameters(), lr=setup.lr)
    X, y, batch = setup.X, setup.y, setup.batch_size
    mean_losses = []  # what the loop logs
    model.train()
    while True:
        start = _now(setup.device)
        order = torch.randperm(len(X), device=X.device)
        running = 0.0
        for first in range(0, len(X), batch):
            idx = order[first : first + batch]
            xb, yb = X[idx], y[idx]
            loss = F.cross_entropy(model(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            running += loss.item()
        mean_losses.append(running / setup.steps_per_epoch)
        yield _now(setup.device) - start


class _Clock:
    """The last callback of a Trainer: the seconds from the start of ``fit`` (after the
    other callbacks' ``on_fit_start``) to the end of its epoch (after their
    ``on_epoch_end``: checkpoints and logs are in it)."""

    def __init__(self, device: torch.device):
        self.device, self.start, self.seconds = device, 0.0, 0.0

    def on_fit_start(self, trainer) -> None:
        self.start = _now(self.device)

    def on_epoch_end(self, trainer, logs) -> None:
        self.seconds = _now(self.device) - self.start


def _trainer_epochs(trainer: Trainer, loader: TensorLoader) -> Iterator[float]:
    # One fit call per epoch continues the run exactly (the Trainer counts epochs and the
    # loader keeps its place); the clock leaves out what a call adds at its start and end.
    clock = _Clock(trainer.device)
    trainer.callbacks.append(clock)
    while True:
        trainer.fit(loader, epochs=trainer.epoch + 1)
        yield clock.seconds


def trainlab_epochs(setup: Setup, notes: dict[str, list[float]]) -> Iterator[float]:
    """``trainlab fit``'s Trainer, callbacks and schedule (``prepare``), no validation;
    ``notes["checkpoint_ms"]`` gets the time of every ``last.pt`` written."""
    with tempfile.TemporaryDirectory() as tmp:
        config = example_config(setup.name, str(setup.device))
        run = prepare(config, Path(tmp) / "run", resuming=False, quiet=True, echo=lambda _: None)
        save, writes = run.checkpoint.save_last, notes.setdefault("checkpoint_ms", [])

        def timed_save(trainer) -> None:
            start = time.perf_counter()
            save(trainer)
            writes.append((time.perf_counter() - start) * 1e3)

        run.checkpoint.save_last = timed_save
        yield from _trainer_epochs(run.trainer, run.loaders["train"])


def trainer_torch_adam_epochs(setup: Setup, notes: dict[str, list[float]]) -> Iterator[float]:
    """The Trainer with no callbacks or scheduler, and torch's Adam as the plain loop."""
    model = new_model(setup)
    optimizer = torch.optim.Adam(model.parameters(), lr=setup.lr)
    trainer = Trainer(model, optimizer, device=setup.device)
    loader = TensorLoader(setup.X, setup.y, batch_size=setup.batch_size, seed=setup.config.seed)
    yield from _trainer_epochs(trainer, loader)


#: Each source trains one run and yields the seconds of its epochs, one by one; it may add
#: measurements of its own to ``notes``.
INTERLEAVED: dict[str, Callable[[Setup, dict], Iterator[float]]] = {
    "plain": plain_epochs,
    "trainlab": trainlab_epochs,
    "trainer-torch-adam": trainer_torch_adam_epochs,
}


# --- the frameworks, one fit call per round: each returns its epochs' seconds ----------------


def _intervals(times: list[float]) -> list[float]:
    return [b - a for a, b in zip(times, times[1:])]


def lightning_epochs(setup: Setup, epochs: int) -> list[float]:
    """``lightning.Trainer.fit`` with logging, checkpoints and progress off."""
    import lightning as L
    from torch.utils.data import BatchSampler, DataLoader, RandomSampler, TensorDataset

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    model, lr, device = new_model(setup), setup.lr, setup.device

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = model

        def training_step(self, batch, batch_idx):
            xb, yb = batch
            return F.cross_entropy(self.model(xb), yb)

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=lr)

    times: list[float] = []

    class Clock(L.Callback):  # epoch ends; the first interval starts at the training start
        def on_train_start(self, trainer, module):
            times.append(_now(device))

        def on_train_epoch_end(self, trainer, module):
            times.append(_now(device))

    dataset = TensorDataset(setup.X, setup.y)  # indexed by a whole batch of indices at once
    sampler = BatchSampler(RandomSampler(dataset), setup.batch_size, drop_last=False)
    trainer = L.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=1,
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[Clock()],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. "the dataloader has no worker processes"
        trainer.fit(Module(), DataLoader(dataset, sampler=sampler, batch_size=None))
    return _intervals(times)


class KerasWorker:
    """Keras in a subprocess of its own (its backend is fixed when keras is first imported):
    started once per model, it trains a fresh Keras model for each :meth:`epochs` call."""

    def __init__(self, setup: Setup):
        command = [sys.executable, str(Path(__file__).resolve()), "--keras-worker", setup.name]
        command += ["--device", str(setup.device), "--threads", str(torch.get_num_threads())]
        env = dict(os.environ, KERAS_BACKEND="torch")
        if setup.device.type == "cpu":
            env["CUDA_VISIBLE_DEVICES"] = ""  # keras on torch takes a GPU whenever it sees one
        self.process = subprocess.Popen(
            command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        ready = self._read()  # waits until keras is imported and the data are built
        expected = trainable_parameters(new_model(setup))
        if ready["parameters"] != expected:
            self.close()
            raise RuntimeError(
                f"the Keras {setup.name} has {ready['parameters']} trainable parameters, "
                f"trainlab's {expected}: not the same model"
            )

    def _read(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the keras subprocess ended (exit code {self.process.wait()})")
        return json.loads(line)

    def epochs(self, setup: Setup, epochs: int) -> list[float]:
        self.process.stdin.write(f"{epochs}\n")
        self.process.stdin.flush()
        return self._read()["epochs"]

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def keras_model(setup: Setup):
    """The example's model in Keras layers (channels last; the same parameters)."""
    import keras
    from keras import layers

    options = setup.config.model.options()
    length = setup.X.shape[1]
    dropout = options.get("dropout", 0.0)

    def tail(stack: list) -> None:  # norm → activation → dropout, as trainlab's blocks
        if options.get("norm") == "batch":
            stack.append(layers.BatchNormalization(momentum=0.9, epsilon=1e-5))
        stack.append(layers.Activation(options.get("activation", "relu")))
        if dropout:
            stack.append(layers.Dropout(dropout))

    # as trainlab's builders: no bias in a layer that a batch norm follows (β shifts)
    bias = options.get("norm") != "batch"
    stack: list = [keras.Input((length,))]
    if setup.config.model.kind == "mlp":
        for units in options["hidden"]:
            stack.append(layers.Dense(units, use_bias=bias))
            tail(stack)
    elif setup.config.model.kind == "cnn1d":
        stack.append(layers.Reshape((length, 1)))
        for i, filters in enumerate(options["channels"]):
            conv = layers.Conv1D(filters, 5 if i == 0 else 3, 2, use_bias=bias)
            stack += [layers.ZeroPadding1D(1), conv]
            tail(stack)
        stack.append(layers.Flatten())
    else:
        raise ValueError(f"no Keras version of model kind {setup.config.model.kind!r}")
    stack.append(layers.Dense(setup.n_classes))
    return keras.Sequential(stack)


def keras_worker(name: str, device: str) -> None:
    """The subprocess: one JSON line when ready, then one per number of epochs read."""
    os.environ["KERAS_BACKEND"] = "torch"
    import keras

    if keras.backend.backend() != "torch":
        raise RuntimeError(f"keras runs on {keras.backend.backend()}, not torch")
    setup = load_setup(name, device)
    X, y = setup.X.cpu().numpy(), setup.y.cpu().numpy()

    def compiled():
        keras.utils.clear_session()
        keras.utils.set_random_seed(setup.config.seed)
        model = keras_model(setup)
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=setup.lr, epsilon=1e-8),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        return model

    def reply(**fields) -> None:
        print(json.dumps(fields), flush=True)

    class Clock(keras.callbacks.Callback):  # epoch ends, from the training start
        def __init__(self):
            super().__init__()
            self.times: list[float] = []

        def on_train_begin(self, logs=None):
            self.times.append(_now(setup.device))

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(_now(setup.device))

    reply(parameters=sum(math.prod(w.shape) for w in compiled().trainable_weights))
    for line in sys.stdin:
        fit = {"batch_size": setup.batch_size, "epochs": int(line), "shuffle": True, "verbose": 0}
        clock = Clock()
        compiled().fit(X, y, callbacks=[clock], **fit)
        reply(epochs=_intervals(clock.times))


# --- the optimizer alone -------------------------------------------------------------------


def optimizer_step_ms(setup: Setup, steps: int = 100, rounds: int = 5) -> dict[str, float]:
    """Median ms of one ``optimizer.step()`` in a training loop like the plain one (each
    step after ``zero_grad(set_to_none=True)``, forward and backward; only the step is
    timed), for torch's Adam (as the plain loop) and trainlab's (as ``trainlab fit``).

    Measured in the loop, not on fixed gradients: a step repeated on its own runs on warm
    caches and took a third to a fifth of this time here."""
    config = setup.config.optimizer
    makers = {
        "torch Adam": lambda params: torch.optim.Adam(params, lr=setup.lr),
        "trainlab Adam": lambda params: optim.create(
            config.name, params, **config.hyperparameters()
        ),
    }
    runs = {}
    for name, make in makers.items():
        model = new_model(setup)
        runs[name] = (model, make(model.parameters()))
    batches = math.ceil(len(setup.X) / setup.batch_size)
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for round_ in range(rounds + 1):  # round 0 is warm-up
        for name, (model, opt) in runs.items():
            took = 0.0
            for step in range(steps):
                first = (step % batches) * setup.batch_size
                xb = setup.X[first : first + setup.batch_size]
                yb = setup.y[first : first + setup.batch_size]
                loss = F.cross_entropy(model(xb), yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                start = _now(setup.device)
                opt.step()
                took += _now(setup.device) - start
            if round_:
                samples[name].append(took / steps * 1e3)
    return {name: statistics.median(s) for name, s in samples.items()}


# --- the benchmark ---------------------------------------------------------------------------


def available(loop: str) -> bool:
    """Whether the package an optional loop needs is installed."""
    return loop not in EXTRAS or find_spec(EXTRAS[loop]) is not None


def measure(setup: Setup, loops: Sequence[str], epochs: int, rounds: int) -> list[dict]:
    """Train every loop ``epochs`` epochs in all, over ``rounds`` rounds, the first epoch
    of each round not counted; one row per loop: the median epoch time as ms/step and
    steps/s, and steps/s over the plain loop's (``x_plain``)."""
    per_round = max(2, math.ceil(epochs / rounds))
    seconds: dict[str, list[float]] = {loop: [] for loop in loops}
    notes: dict[str, dict[str, list[float]]] = {loop: {} for loop in loops}
    keras = KerasWorker(setup) if "keras" in loops else None

    def pytorch_loops() -> None:  # epoch by epoch, in turn
        sources = {
            loop: INTERLEAVED[loop](setup, notes[loop]) for loop in loops if loop in INTERLEAVED
        }
        for epoch in range(per_round):
            for loop, source in sources.items():
                took = next(source)
                if epoch:
                    seconds[loop].append(took)
        for source in sources.values():
            source.close()

    blocks = [pytorch_loops]
    if "lightning" in loops:
        blocks.append(lambda: seconds["lightning"].extend(lightning_epochs(setup, per_round)[1:]))
    if keras is not None:
        blocks.append(lambda: seconds["keras"].extend(keras.epochs(setup, per_round)[1:]))
    try:
        for round_ in range(rounds):
            for block in blocks if round_ % 2 == 0 else reversed(blocks):  # no loop always last
                block()
    finally:
        if keras is not None:
            keras.close()
    rows = []
    for loop in loops:
        ms = statistics.median(seconds[loop]) / setup.steps_per_epoch * 1e3
        rows.append(
            {
                "model": setup.name,
                "loop": loop,
                "label": LABELS[loop],
                "ms_per_step": ms,
                "steps_per_s": 1e3 / ms,
                "epochs_timed": len(seconds[loop]),
                "steps_per_epoch": setup.steps_per_epoch,
                "epoch_s": seconds[loop],
                **{key: statistics.median(v) for key, v in notes[loop].items() if v},
            }
        )
    base = next((r["steps_per_s"] for r in rows if r["loop"] == "plain"), None)
    for r in rows:
        r["x_plain"] = r["steps_per_s"] / base if base else None
    return rows


def describe(setup: Setup, epochs: int, rounds: int) -> str:
    m = setup.config.model
    return (
        f"{MODELS[setup.name]}: {m.kind} {m.options()}, "
        f"{trainable_parameters(new_model(setup)):,} parameters; "
        f"{setup.config.optimizer.name} lr {setup.lr:g}, batch {setup.batch_size}, "
        f"{setup.steps_per_epoch} steps an epoch; {epochs} epochs per loop in {rounds} "
        f"round(s), device {setup.device}"
    )


def format_rows(rows: list[dict]) -> str:
    lines = [f"  {'loop':<30} {'ms/step':>8} {'steps/s':>8} {'× plain':>8}"]
    for r in rows:
        x = f"{r['x_plain']:.2f}" if r["x_plain"] else "-"
        lines.append(f"  {r['label']:<30} {r['ms_per_step']:>8.3f} {r['steps_per_s']:>8.0f} {x:>8}")
    for r in rows:
        if "checkpoint_ms" in r:
            per_step = r["checkpoint_ms"] / r["steps_per_epoch"]
            lines.append(
                f"  {r['label']}: writing last.pt took {r['checkpoint_ms']:.2f} ms an epoch "
                f"(median), {per_step:.3f} ms a step, {per_step / r['ms_per_step']:.0%} of its step"
            )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mlp,cnn", help="comma-separated: mlp, cnn")
    parser.add_argument("--loops", default=",".join(LOOPS), help="comma-separated loops")
    parser.add_argument("--epochs", type=int, help="epochs per loop (default: the example's)")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, auto")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--quick", action="store_true", help="4 epochs in 1 round: a smoke run")
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--keras-worker", metavar="MODEL", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.rounds = 4, 1
    for name in args.models.split(","):
        if name not in MODELS:
            parser.error(f"--models: unknown model {name!r}; choose from {', '.join(MODELS)}")
    for loop in args.loops.split(","):
        if loop not in LOOPS:
            parser.error(f"--loops: unknown loop {loop!r}; choose from {', '.join(LOOPS)}")
    if args.rounds < 1 or (args.epochs is not None and args.epochs < 2):
        parser.error("--rounds must be ≥ 1 and --epochs ≥ 2 (the first epoch is warm-up)")
    return args


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the benchmark, print the tables, optionally write JSON; return the results."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.keras_worker:
        keras_worker(args.keras_worker, args.device)
        return {}
    loops = []
    for loop in args.loops.split(","):
        if available(loop):
            loops.append(loop)
        else:
            print(f"note: {loop} skipped: {EXTRAS[loop]} is not installed ({INSTALL})")
    info = machine()
    start, cpu0, children0 = time.perf_counter(), cpu_seconds(), _children_cpu()
    results: dict = {"machine": info, "settings": vars(args), "models": []}
    for name in args.models.split(","):
        setup = load_setup(name, args.device)
        epochs = args.epochs or setup.config.train.epochs
        print(describe(setup, epochs, args.rounds), flush=True)
        rows = measure(setup, loops, epochs, args.rounds)
        print(format_rows(rows))
        opt_ms = optimizer_step_ms(setup)
        plain = next((r for r in rows if r["loop"] == "plain"), None)
        shares = []
        for opt_name, ms in opt_ms.items():
            share = f" ({ms / plain['ms_per_step']:.0%} of the plain step)" if plain else ""
            shares.append(f"{opt_name} {ms:.3f} ms{share}")
        print("  optimizer.step() alone: " + "; ".join(shares) + "\n", flush=True)
        results["models"].append(
            {"model": name, "epochs": epochs, "rows": rows, "optimizer_step_ms": opt_ms}
        )
    wall = time.perf_counter() - start
    others = others_load(cpu0, cpu_seconds(), wall)
    if others is not None:  # the keras subprocesses are ours, not other processes'
        others = max(0.0, others - (_children_cpu() - children0) / wall)
    info["other_processes_cores"] = others
    results["wall_s"] = wall
    load = "unknown" if others is None else f"{others:.2f}"
    print(
        f"{info['cpu']}, {info['nproc']} cores, torch {info['torch']} "
        f"({info['torch_threads']} threads); other processes used {load} cores on average "
        f"over the {wall:.0f} s run"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


def _children_cpu() -> float:
    t = os.times()
    return t.children_user + t.children_system


if __name__ == "__main__":
    main()
