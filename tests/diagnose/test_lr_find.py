"""The LR range test: its schedule, exact restoration, stopping, and the suggestion rules."""

from __future__ import annotations

import copy
import json
import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from trainlab import optim
from trainlab.data import TensorLoader
from trainlab.diagnose import LRFinderResult, lr_find
from trainlab.diagnose.lr_find import RULES, suggest


def _blobs(n=512, d=4, seed=0, separation=2.0, scale=1.0):
    """Two Gaussian classes, means ±separation in every dimension."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    X = torch.randn(n, d, generator=gen) + separation * (2 * y[:, None].float() - 1)
    return scale * X, y


def _logistic(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Linear(4, 2)


def _make_optimizer(name, params):
    if name == "torch-adam":
        return torch.optim.Adam(params, lr=1e-3)
    return optim.create(name, params, lr=0.01)


# --- the schedule and the smoothing --------------------------------------------------------


def test_schedule_is_exponential_from_start_to_end_on_every_param_group():
    X, y = _blobs(n=64)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    opt = optim.SGD(
        [{"params": model[0].parameters()}, {"params": model[2].parameters(), "lr": 0.5}], lr=0.1
    )
    seen = []

    def loss(out, yb):
        seen.append([group["lr"] for group in opt.param_groups])
        return F.cross_entropy(out, yb)

    result = lr_find(
        model,
        opt,
        TensorLoader(X, y, batch_size=16),
        loss,
        start=1e-6,
        end=1e-2,
        steps=21,
        stop_factor=math.inf,
    )
    lrs = np.array(result.lrs)
    assert len(lrs) == 21 and not result.stopped_early
    assert lrs[0] == 1e-6 and lrs[-1] == pytest.approx(1e-2, rel=1e-12)
    np.testing.assert_allclose(lrs[1:] / lrs[:-1], 10 ** (4 / 20), rtol=1e-12)
    assert seen == [[lr, lr] for lr in result.lrs]


def test_smoothed_loss_is_the_debiased_exponential_moving_average():
    X, y = _blobs(n=64)
    model = _logistic()
    result = lr_find(
        model,
        optim.SGD(model.parameters(), lr=0.1),
        TensorLoader(X, y, 8),
        F.cross_entropy,
        end=1.0,
        steps=30,
        smooth=0.9,
    )
    avg, expected = 0.0, []
    for t, loss in enumerate(result.losses, start=1):
        avg = 0.9 * avg + 0.1 * loss
        expected.append(avg / (1 - 0.9**t))
    np.testing.assert_allclose(result.smoothed, expected, rtol=1e-12)
    # and β = 0 is no smoothing at all
    model = _logistic()
    raw = lr_find(
        model,
        optim.SGD(model.parameters(), lr=0.1),
        TensorLoader(X, y, 8),
        F.cross_entropy,
        end=1.0,
        steps=10,
        smooth=0.0,
    )
    assert raw.smoothed == raw.losses


# --- exact restoration -------------------------------------------------------------------


def _snapshot(model, opt, loader):
    return {
        "model": copy.deepcopy(model.state_dict()),
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "modes": [m.training for m in model.modules()],
        "optimizer": copy.deepcopy(opt.state_dict()),
        "lrs": [group["lr"] for group in opt.param_groups],
        "loader": loader.state_dict(),
    }


def _assert_same(a, b):
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for ga, gb in zip(a["grads"], b["grads"]):
        assert (ga is None and gb is None) or torch.equal(ga, gb)
    assert a["modes"] == b["modes"]
    assert a["lrs"] == b["lrs"]
    assert a["loader"] == b["loader"]
    sa, sb = a["optimizer"], b["optimizer"]
    assert sa["param_groups"] == sb["param_groups"]
    assert sa["state"].keys() == sb["state"].keys()
    for index in sa["state"]:
        assert sa["state"][index].keys() == sb["state"][index].keys()
        for key, value in sa["state"][index].items():
            other = sb["state"][index][key]
            if isinstance(value, torch.Tensor):
                assert torch.equal(value, other), (index, key)
            else:
                assert value == other, (index, key)


def _trained_midway(name):
    """A model with batch norm and dropout, an optimizer with state, a loader mid-epoch."""
    X, y = _blobs(n=128)
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(4, 16),
        torch.nn.BatchNorm1d(16),
        torch.nn.ReLU(),
        torch.nn.Dropout(0.3),
        torch.nn.Linear(16, 2),
    )
    opt = _make_optimizer(name, model.parameters())
    loader = TensorLoader(X, y, batch_size=16, seed=3)
    for i, (xb, yb) in enumerate(loader):
        opt.zero_grad()
        F.cross_entropy(model(xb), yb).backward()
        opt.step()
        if i == 2:
            break  # leaves the loader at epoch 0, position 3, and gradients in place
    model[3].eval()  # mixed train/eval modes must come back as they were
    return model, opt, loader


def _rng_draws():
    return torch.rand(1).item(), np.random.rand(), random.random()


@pytest.mark.parametrize("name", ["momentum", "adam", "torch-adam"])
def test_weights_optimizer_state_lr_loader_and_rng_are_restored_exactly(name):
    model, opt, loader = _trained_midway(name)
    before = _snapshot(model, opt, loader)
    torch_state, np_state, py_state = (
        torch.get_rng_state(),
        np.random.get_state(),
        random.getstate(),
    )
    expected = _rng_draws()
    torch.set_rng_state(torch_state)
    np.random.set_state(np_state)
    random.setstate(py_state)

    result = lr_find(model, opt, loader, F.cross_entropy, steps=40)

    assert len(result.lrs) > 10  # it trained, moved the weights, drew dropout masks
    _assert_same(before, _snapshot(model, opt, loader))
    assert _rng_draws() == expected
    # the next batch is the one that was due
    xb, _ = next(iter(loader))
    assert torch.equal(xb, loader.X[loader.order(0)[48:64]])


def test_everything_is_restored_when_the_loss_raises():
    model, opt, loader = _trained_midway("adam")
    before = _snapshot(model, opt, loader)
    state = torch.get_rng_state()
    calls = []

    def loss(out, yb):
        calls.append(1)
        if len(calls) == 6:
            raise RuntimeError("boom")
        return F.cross_entropy(out, yb)

    with pytest.raises(RuntimeError, match="boom"):
        lr_find(model, opt, loader, loss)
    assert len(calls) == 6
    _assert_same(before, _snapshot(model, opt, loader))
    assert torch.equal(torch.get_rng_state(), state)


def test_works_under_no_grad_and_with_a_device():
    X, y = _blobs(n=64)
    model = _logistic()
    with torch.no_grad():
        result = lr_find(
            model,
            optim.Adam(model.parameters()),
            TensorLoader(X, y, 16),
            F.cross_entropy,
            steps=20,
            device="cpu",
        )
    assert len(result.lrs) == 20


# --- the run: cycling, stopping ------------------------------------------------------------


def test_a_loader_that_runs_out_is_started_over():
    X, y = _blobs(n=48)
    loader = TensorLoader(X, y, batch_size=16)  # 3 batches
    model = _logistic()
    result = lr_find(
        model,
        optim.SGD(model.parameters(), lr=0.1),
        loader,
        F.cross_entropy,
        steps=10,
        end=1e-3,
    )
    assert len(result.losses) == 10 and not result.stopped_early
    assert loader.state_dict()["epoch"] == 0 and loader.position == 0


def test_an_empty_loader_is_an_error():
    model = _logistic()
    with pytest.raises(ValueError, match="no batches"):
        lr_find(model, optim.SGD(model.parameters(), lr=0.1), [], F.cross_entropy)


def test_an_exploding_loss_stops_the_run_early():
    # Linear regression on unscaled inputs (|x| ~ 100): SGD diverges far below lr = 10.
    gen = torch.Generator().manual_seed(0)
    X = 100 * torch.randn(256, 5, generator=gen)
    y = X @ torch.randn(5, generator=gen)
    model = torch.nn.Linear(5, 1)
    result = lr_find(
        model,
        optim.SGD(model.parameters(), lr=0.1),
        TensorLoader(X, y, 32),
        lambda out, target: F.mse_loss(out.squeeze(1), target),
    )
    assert result.stopped_early
    assert len(result.lrs) < 100 and result.lrs[-1] < 1e-2
    last = result.smoothed[-1]
    assert not math.isfinite(last) or last > 4 * min(result.smoothed)
    assert result.suggestion is not None and result.suggestion < result.lrs[-1]


def test_a_nan_loss_is_kept_and_ends_the_run():
    X, y = _blobs(n=128)
    calls = []

    def loss(out, yb):
        calls.append(1)
        value = F.cross_entropy(out, yb)
        return value * float("nan") if len(calls) == 60 else value

    model = _logistic()
    result = lr_find(model, optim.SGD(model.parameters(), lr=0.1), TensorLoader(X, y, 16), loss)
    assert result.stopped_early and len(result.losses) == 60
    assert math.isnan(result.losses[-1]) and math.isnan(result.smoothed[-1])
    assert result.suggestion is not None  # read from the 59 finite points
    assert json.loads(json.dumps(result.to_dict()))["rule"] == "valley"


def test_a_three_step_run_gives_no_suggestion_and_says_why():
    X, y = _blobs(n=64)
    model = _logistic()
    result = lr_find(
        model,
        optim.SGD(model.parameters(), lr=0.1),
        TensorLoader(X, y, 16),
        F.cross_entropy,
        steps=3,
    )
    assert result.suggestion is None and "only 3 finite points" in result.message


# --- a real problem ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["sgd", "adam"])
@pytest.mark.parametrize("seed", [0, 1])
def test_logistic_regression_suggestion_lies_where_the_loss_falls(name, seed):
    X, y = _blobs(seed=seed)
    model = _logistic(seed)
    result = lr_find(
        model,
        optim.create(name, model.parameters(), lr=0.1),
        TensorLoader(X, y, 32, seed=seed),
        F.cross_entropy,
    )
    assert 1e-3 < result.suggestion < 1
    smoothed = np.array(result.smoothed)
    at = smoothed[result.lrs.index(result.suggestion)]
    plateau = np.median(smoothed[10:30])  # lr 1e-6 … 1e-5: nothing moves yet
    assert smoothed.min() < at < plateau


def test_training_at_the_suggested_lr_beats_a_hundredth_of_it():
    X, y = _blobs(seed=2)
    model = _logistic(2)
    lr = lr_find(
        model, optim.SGD(model.parameters(), lr=0.1), TensorLoader(X, y, 32), F.cross_entropy
    )
    lr = lr.suggestion

    def trained_loss(rate):
        model = _logistic(2)
        opt = optim.SGD(model.parameters(), lr=rate)
        for _ in range(2):
            for xb, yb in TensorLoader(X, y, 32):
                opt.zero_grad()
                F.cross_entropy(model(xb), yb).backward()
                opt.step()
        with torch.no_grad():
            return F.cross_entropy(model(X), y).item()

    assert trained_loss(lr) < 0.5 * trained_loss(lr / 100)


# --- the rules on known curves -----------------------------------------------------------


def _curve(n=100, bump=None):
    """Flat on lr 1e-7 … 1e-4, falls linearly in log lr to a minimum at 1e-1, then rises."""
    lrs = np.logspace(-7, 1, n)
    x = np.log10(lrs)
    loss = np.where(x < -4, 2.0 - 0.001 * (x + 7), 1.997 - 0.5 * (x + 4))
    loss = np.where(x > -1, loss[np.argmin(np.abs(x + 1))] + 2.0 * (x + 1), loss)
    if bump is not None:
        loss[bump] = loss[bump - 1] + 0.01
    return lrs, loss


def test_valley_is_the_middle_of_the_falling_part():
    lrs, loss = _curve()
    lr, message = suggest(lrs, loss, "valley")
    # the fall (and the gentle slope before it) is one decreasing run ending at the
    # minimum; its middle is about halfway through it in log lr
    end = int(np.argmin(loss))
    assert lr == lrs[end // 2] and lr < lrs[end]
    assert message.startswith("valley:") and f"{lr:.2e}" in message


def test_valley_run_bridges_a_bump_of_noise():
    # One point of the fall sits above its predecessor. A run of adjacent decreasing
    # points would be cut in two there; the valley's run skips the point, and its middle
    # moves by at most one step.
    lrs, loss = _curve()
    x = np.log10(lrs)
    falling = np.flatnonzero((x >= -4) & (x <= -1))
    bumped = _curve(bump=int(falling[len(falling) // 2]))[1]
    smooth_at = list(lrs).index(suggest(lrs, loss, "valley")[0])
    bumped_at = list(lrs).index(suggest(lrs, bumped, "valley")[0])
    assert abs(bumped_at - smooth_at) <= 1


def test_steepest_is_where_the_slope_against_log_lr_is_most_negative():
    lrs = np.logspace(-6, 0, 61)
    x = np.log10(lrs)
    loss = 1 - np.tanh(2 * (x + 3))  # falls fastest at lr 1e-3
    lr, message = suggest(lrs, loss, "steepest")
    assert lr == pytest.approx(1e-3)
    assert "per decade" in message


def test_minimum_is_a_tenth_of_the_lr_at_the_lowest_loss():
    lrs, loss = _curve()
    lr, message = suggest(lrs, loss, "minimum")
    assert lr == pytest.approx(lrs[np.argmin(loss)] / 10)
    assert "a tenth" in message


@pytest.mark.parametrize("rule", RULES)
def test_a_nan_in_the_middle_is_ignored(rule):
    lrs, loss = _curve()
    holed = loss.copy()
    holed[[40, 41, 70]] = [np.nan, np.inf, np.nan]
    keep = np.isfinite(holed)
    lr, message = suggest(lrs, holed, rule)
    assert lr is not None and math.isfinite(lr)
    assert lr == suggest(lrs[keep], loss[keep], rule)[0]
    assert "3 non-finite points ignored" in message


@pytest.mark.parametrize("rule", RULES)
def test_a_curve_that_never_decreases_gives_no_suggestion(rule):
    lrs = np.logspace(-7, 1, 50)
    lr, message = suggest(lrs, np.linspace(1.0, 3.0, 50), rule)
    assert lr is None and "never decreases" in message


@pytest.mark.parametrize("rule", RULES)
def test_a_three_point_curve_gives_no_suggestion(rule):
    lr, message = suggest([1e-3, 1e-2, 1e-1], [1.0, 0.5, 0.2], rule)
    assert lr is None and "only 3 finite points" in message


def test_skip_leaves_out_the_first_points():
    lrs = np.logspace(-7, 1, 20)
    loss = np.r_[[5.0, 1.0], np.linspace(2.0, 1.5, 18)]  # an early dip, then a slow fall
    assert suggest(lrs, loss, "minimum")[0] == pytest.approx(lrs[1] / 10)
    assert suggest(lrs, loss, "minimum", skip=2)[0] == pytest.approx(lrs[-1] / 10)
    assert "after the first 18" in suggest(lrs, loss, "valley", skip=18)[1]


def test_steepest_without_a_falling_slope_and_minimum_at_the_start_give_none():
    lrs = np.logspace(-3, 0, 6)
    zigzag = np.array([0.0, 1.0, 0.9, 1.9, 1.8, 2.8])  # decreases twice, slopes all > 0
    assert suggest(lrs, zigzag, "steepest") == (
        None,
        "steepest: no suggestion: the smoothed loss has no falling slope",
    )
    lr, message = suggest(lrs, zigzag, "minimum")
    assert lr is None and "lowest at the first lr" in message


# --- arguments ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"start": 0.0}, "start"),
        ({"start": -1e-3}, "start"),
        ({"start": float("nan")}, "start"),
        ({"end": 1e-7}, "end"),
        ({"end": float("inf")}, "end"),
        ({"steps": 1}, "steps"),
        ({"steps": 10.0}, "steps"),
        ({"smooth": 1.0}, "smooth"),
        ({"smooth": -0.1}, "smooth"),
        ({"stop_factor": 1.0}, "stop_factor"),
        ({"rule": "steep"}, "rule"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(kwargs, name):
    model = _logistic()
    X, y = _blobs(n=32)
    with pytest.raises(ValueError, match=rf"^{name} must be"):
        lr_find(
            model,
            optim.SGD(model.parameters(), lr=0.1),
            TensorLoader(X, y, 8),
            F.cross_entropy,
            **kwargs,
        )


def test_an_unknown_rule_lists_the_allowed_ones():
    with pytest.raises(ValueError, match="rule must be one of valley, steepest, minimum; got 'x'"):
        suggest([1.0], [1.0], "x")


# --- the result -------------------------------------------------------------------------


def test_plot_writes_a_png(tmp_path):
    X, y = _blobs()
    model = _logistic()
    result = lr_find(
        model, optim.SGD(model.parameters(), lr=0.1), TensorLoader(X, y, 32), F.cross_entropy
    )
    path = result.plot(tmp_path / "plots" / "lr_find.png")
    assert path == tmp_path / "plots" / "lr_find.png"
    assert path.stat().st_size > 0 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a result without a suggestion, with a NaN, plots too
    empty = LRFinderResult(
        [1e-3, 1e-2],
        [1.0, float("nan")],
        [1.0, float("nan")],
        None,
        "valley",
        "valley: no suggestion",
        True,
    )
    assert empty.plot(tmp_path / "empty.png").stat().st_size > 0


def test_to_dict_has_every_field():
    result = LRFinderResult([1e-3], [1.0], [1.0], None, "minimum", "m", False)
    assert result.to_dict() == {
        "lrs": [1e-3],
        "losses": [1.0],
        "smoothed": [1.0],
        "suggestion": None,
        "rule": "minimum",
        "message": "m",
        "stopped_early": False,
    }


def _fastai_valley_index(losses: list[float]) -> int:
    """fastai's ``valley`` (fastai/callback/schedule.py), transcribed from its description:
    the longest strictly decreasing subsequence, ending at its first longest end ``e`` of
    length ``L``; the valley starts at ``e − L``; the pick is ``start + ⌊s⌋ + ⌊s/2⌋`` with
    ``s = (e − start)/3``. fastai applies it to the curve without its last 5 points."""
    n = len(losses)
    lds = [1] * n
    start = end = 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
            if lds[end] < lds[i]:
                end, start = i, i - lds[i]
    s = (end - start) / 3
    return start + int(s) + int(s / 2)


def test_valley_differs_from_fastais_rule_exactly_as_documented():
    # a curve that falls, then still falls over its last points: fastai drops those 5, and
    # starts and picks differently (docs/diagnose.md, suggest's docstring)
    lrs = np.logspace(-6, 0, 60)
    losses = list(2.0 - np.linspace(0, 1.5, 60) ** 2)  # strictly decreasing to the end
    lr, _ = suggest(lrs, losses, rule="valley", skip=0)
    e, length = 59, 60  # the whole curve is the chain
    assert lr == lrs[(e - length + 1 + e) // 2]  # trainlab: its middle, index 29
    f = _fastai_valley_index(losses[:-5])  # fastai: last 5 points dropped
    # on 55 points the chain ends at 54, starts at 54 − 55 = −1 (fastai's off-by-one)
    assert f == -1 + int(55 / 3) + int(55 / 3 / 2)  # = 26
    assert lrs[f] < lr and round(math.log10(lr / lrs[f]), 6) == round(3 * 6 / 59, 6)
