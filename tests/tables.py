"""A small classification table and a config that trains on it, for end-to-end tests."""

from __future__ import annotations

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
