"""The valley experiment behind `trainlab demo` (claims C2, C3, C4)."""

from __future__ import annotations

import math

from trainlab import optim
from trainlab.lecture.quadratic import steps_to_converge, valley

LRS = [10 ** (k / 4) for k in range(-12, 3)]


def test_momentum_needs_fewer_steps_than_sgd_in_a_narrow_valley():
    results = {r.optimizer.split()[0]: r for r in valley(tol=1e-3, max_steps=600, lrs=LRS)}
    assert results["momentum"].steps < results["sgd"].steps / 2


def test_rmsprop_helps_most_when_the_valley_lies_along_the_axes():
    aligned = valley(rotation=0.0, tol=1e-3, max_steps=600, lrs=LRS)
    turned = valley(rotation=math.radians(30), tol=1e-3, max_steps=600, lrs=LRS)
    rms = [r for r in aligned if r.optimizer.startswith("rmsprop")][0]
    rms_turned = [r for r in turned if r.optimizer.startswith("rmsprop")][0]
    assert rms.steps < rms_turned.steps


def test_sgd_converges_only_below_two_over_the_largest_curvature():
    """Plain gradient descent on curvature h is stable iff lr < 2/h (here h = 100)."""
    lrs = [0.005, 0.015, 0.025]
    steps = steps_to_converge(
        lambda groups: optim.SGD(groups, lr=0.0), (100.0, 1.0), (1.0, 10.0), lrs, max_steps=3000
    )
    assert steps[0] is not None and steps[1] is not None and steps[2] is None
    assert steps[1] < steps[0]
