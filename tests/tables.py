"""A small classification table and configs that train or tune on it, for end-to-end
tests."""

from __future__ import annotations

import csv

import numpy as np


def write_table_csv(tmp_path, n=240, seed=0):
    """A small classification table: 3 classes, features on very different scales."""
    rng = np.random.default_rng(seed)
    label = np.arange(n) % 3
    a = rng.normal(size=n) + label
    b = 1000.0 * (rng.normal(size=n) - label)
    c = rng.normal(size=n)
    path = tmp_path / "table.csv"
    lines = ["a,b,c,label"] + [f"{x:.5f},{y:.3f},{z:.5f},{k}" for x, y, z, k in zip(a, b, c, label)]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_table_config(tmp_path, csv, extra=""):
    path = tmp_path / "config.yaml"
    path.write_text(
        f"""
name: table
seed: 0
data: {{dataset: {csv}, preprocess: [standardize], split: {{val: 0.2, test: 0.2}}}}
model: {{kind: mlp, hidden: [16], dropout: 0.2}}
optimizer: {{name: adam, lr: 0.02}}
schedule: {{name: cosine}}
train: {{epochs: 4, batch_size: 16}}
{extra}"""
    )
    return path


def write_tune_config(
    tmp_path,
    *,
    trials,
    epochs,
    space,
    name="table-tune",
    hidden=(16,),
    batch_size=16,
    extra="",
):
    """A `trainlab tune` config on the table (written by :func:`write_table_csv`): ``space``
    maps config keys to their search specs; ``extra`` is YAML lines under ``tune:``."""
    csv_path = write_table_csv(tmp_path)
    lines = "".join(f"    {key}: {spec}\n" for key, spec in space.items())
    path = tmp_path / "tune.yaml"
    path.write_text(
        f"""name: {name}
seed: 0
data: {{dataset: {csv_path}, preprocess: [standardize], split: {{val: 0.2, test: 0.2}}}}
model: {{kind: mlp, hidden: {list(hidden)}}}
optimizer: {{name: adam}}
train: {{epochs: {epochs}, batch_size: {batch_size}}}
tune:
  trials: {trials}
  pruner: none
  space:
{lines}{extra}"""
    )
    return path


def read_trials(run_dir):
    """The rows of a study's trials.csv."""
    with open(run_dir / "trials.csv", newline="") as f:
        return list(csv.DictReader(f))
