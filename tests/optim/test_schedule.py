"""Claims about trainlab.optim.schedule: each schedule is torch's own, step for step."""

import io
import math
import pickle
import re
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.optim import lr_scheduler

from trainlab.errors import HyperparameterError
from trainlab.optim import schedule as S

LR = 0.1
DOCS = Path(__file__).resolve().parents[2] / "docs" / "schedules.md"


def _lrs(make_scheduler, steps, lr=LR, optimizer=torch.optim.SGD):
    """The learning rate of each of `steps` optimizer steps under the scheduler made."""
    param = torch.nn.Parameter(torch.zeros(3))
    opt = optimizer([param], lr=lr)
    sched = make_scheduler(opt)
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        param.grad = torch.ones_like(param)
        opt.step()
        sched.step()
    return lrs


def _assert_close(ours, torchs, rel=1e-12, abs=0.0):
    assert len(ours) == len(torchs)
    for t, (a, b) in enumerate(zip(ours, torchs, strict=True)):
        assert a == pytest.approx(b, rel=rel, abs=abs), f"t={t}: {a} != {b}"


# --- equal to torch's own schedulers ----------------------------------------------------------


@pytest.mark.parametrize(("step_size", "gamma"), [(1, 0.5), (7, 0.1), (30, 0.9), (5, 1.0)])
def test_step_equals_torch_step_lr(step_size, gamma):
    ours = _lrs(lambda o: S.scheduler(o, S.step(step_size, gamma)), 200)
    torchs = _lrs(lambda o: lr_scheduler.StepLR(o, step_size=step_size, gamma=gamma), 200)
    _assert_close(ours, torchs)


@pytest.mark.parametrize("gamma", [0.5, 0.97, 0.999, 1.0])
def test_exponential_equals_torch_exponential_lr(gamma):
    ours = _lrs(lambda o: S.scheduler(o, S.exponential(gamma)), 300)
    torchs = _lrs(lambda o: lr_scheduler.ExponentialLR(o, gamma=gamma), 300)
    _assert_close(ours, torchs)


@pytest.mark.parametrize(("total", "final"), [(100, 0.0), (100, 0.01), (37, 0.5), (1, 0.0)])
def test_cosine_equals_torch_cosine_annealing_lr_up_to_total_steps(total, final):
    # torch steps CosineAnnealingLR by a recursive formula; its rounding error is absolute
    # (a few ulps of lr), hence the atol for the rates that end near zero.
    ours = _lrs(lambda o: S.scheduler(o, S.cosine(total, final)), total + 1)
    torchs = _lrs(
        lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=total, eta_min=final * LR), total + 1
    )
    _assert_close(ours, torchs, abs=1e-15 * LR)
    assert ours[-1] == pytest.approx(final * LR, rel=1e-15, abs=1e-18)


@pytest.mark.parametrize(("warmup_steps", "start"), [(20, 0.1), (5, 0.5), (1, 0.25), (10, 1.0)])
def test_warmup_equals_torch_linear_lr(warmup_steps, start):
    ours = _lrs(lambda o: S.scheduler(o, S.warmup(warmup_steps, start=start)), 3 * warmup_steps)
    torchs = _lrs(
        lambda o: lr_scheduler.LinearLR(
            o, start_factor=start, end_factor=1.0, total_iters=warmup_steps
        ),
        3 * warmup_steps,
    )
    _assert_close(ours, torchs)


@pytest.mark.parametrize("anneal", ["cos", "linear"])
@pytest.mark.parametrize(
    ("total", "pct_start", "div_factor", "final_div_factor"),
    [(100, 0.3, 25.0, 1e4), (1000, 0.25, 10.0, 100.0), (10, 0.05, 25.0, 1e4), (7, 0.5, 3.0, 2.0)]
    + [(3, 0.9, 25.0, 1e4), (1, 0.3, 25.0, 1e4)],
)
def test_one_cycle_equals_torch_one_cycle_lr(
    total, pct_start, div_factor, final_div_factor, anneal
):
    # atol: torch's linear anneal, (end - start)·pct + start, cancels at the end of the cycle
    # and is off by a few ulps of max_lr there; ours is exact (next test).
    kwargs = dict(pct_start=pct_start, div_factor=div_factor, final_div_factor=final_div_factor)
    ours = _lrs(lambda o: S.scheduler(o, S.one_cycle(total, anneal=anneal, **kwargs)), total)
    torchs = _lrs(
        lambda o: lr_scheduler.OneCycleLR(
            o,
            max_lr=LR,
            total_steps=total,
            anneal_strategy=anneal,
            cycle_momentum=False,
            three_phase=False,
            **kwargs,
        ),
        total,
    )
    _assert_close(ours, torchs, abs=1e-15 * LR)


@pytest.mark.parametrize("anneal", ["cos", "linear"])
def test_one_cycle_rises_from_one_over_div_factor_to_one_then_falls_to_its_minimum(anneal):
    f = S.one_cycle(100, pct_start=0.3, div_factor=25.0, final_div_factor=1e4, anneal=anneal)
    values = [f(t) for t in range(100)]
    peak = 29  # u = 0.3·100 - 1
    assert values[0] == pytest.approx(1 / 25.0, rel=1e-15, abs=0)
    assert values[peak] == max(values) == 1.0
    assert all(a < b for a, b in zip(values[:peak], values[1 : peak + 1], strict=True))
    assert all(a > b for a, b in zip(values[peak:], values[peak + 1 :], strict=False))
    assert values[-1] == pytest.approx(1 / (25.0 * 1e4), rel=1e-15, abs=0)
    assert f(100) == f(10_000) == values[-1]  # held there afterwards; torch would raise


def test_one_cycle_whose_rise_ends_at_step_zero_starts_at_the_peak():
    # pct_start·T = 1 puts the end of the rise at u = 0, where torch's OneCycleLR divides by
    # zero; here the cycle simply starts at its peak and falls.
    f = S.one_cycle(10, pct_start=0.1)
    values = [f(t) for t in range(10)]
    assert values[0] == 1.0
    assert all(a > b for a, b in zip(values, values[1:], strict=False))


def test_constant_keeps_the_base_learning_rate():
    assert _lrs(lambda o: S.scheduler(o, S.constant()), 50, lr=0.3) == [0.3] * 50


# --- the torch scheduler ----------------------------------------------------------------------


def _checkpoint_after(steps, schedule, optimizer):
    """Run `steps` steps and return a checkpoint saved and loaded as a training loop would."""
    param = torch.nn.Parameter(torch.zeros(3))
    opt = optimizer([param], lr=LR)
    sched = S.scheduler(opt, schedule)
    for _ in range(steps):
        param.grad = torch.ones_like(param)
        opt.step()
        sched.step()
    buffer = io.BytesIO()
    torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict()}, buffer)
    buffer.seek(0)
    return torch.load(buffer)  # weights_only=True, torch's default


def _resume(checkpoint, schedule, steps, optimizer):
    param = torch.nn.Parameter(torch.zeros(3))
    opt = optimizer([param], lr=LR)
    sched = S.scheduler(opt, schedule)
    opt.load_state_dict(checkpoint["optimizer"])
    sched.load_state_dict(checkpoint["scheduler"])
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        param.grad = torch.ones_like(param)
        opt.step()
        sched.step()
    return lrs


@pytest.mark.parametrize("optimizer", [torch.optim.SGD, torch.optim.Adam])
def test_scheduler_state_dict_round_trip_resumes_the_same_lr_sequence(optimizer):
    def schedule():
        return S.warmup(10, after=S.cosine(30, final=0.1), start=0.0)

    uninterrupted = _lrs(lambda o: S.scheduler(o, schedule()), 50, optimizer=optimizer)
    checkpoint = _checkpoint_after(17, schedule(), optimizer)
    assert _resume(checkpoint, schedule(), 50 - 17, optimizer) == uninterrupted[17:]


def test_scheduler_state_dict_restores_the_parameters_of_the_schedule():
    # torch's LambdaLR semantics: the schedule's attributes travel in the state_dict, so a
    # scheduler rebuilt with the same kind of schedule resumes the saved one.
    saved = S.warmup(10, after=S.cosine(30, final=0.1), start=0.2)
    uninterrupted = _lrs(lambda o: S.scheduler(o, saved), 50)
    checkpoint = _checkpoint_after(17, saved, torch.optim.SGD)
    assert _resume(checkpoint, S.warmup(1), 50 - 17, torch.optim.SGD) == uninterrupted[17:]


def test_scheduler_applies_the_schedule_to_every_param_group_from_its_own_lr():
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([{"params": [a], "lr": 1.0}, {"params": [b], "lr": 0.01}])
    sched = S.scheduler(opt, S.exponential(0.5))
    for _ in range(3):
        opt.step()
        sched.step()
    assert [g["lr"] for g in opt.param_groups] == [0.125, 0.00125]


# --- warm-up into cosine ----------------------------------------------------------------------


@pytest.mark.parametrize("start", [0.0, 0.1])
def test_warmup_then_cosine_is_continuous_at_the_boundary_and_reaches_final(start):
    warmup_steps, total, final = 50, 200, 0.05
    f = S.warmup(warmup_steps, after=S.cosine(total, final=final), start=start)
    rise = (1.0 - start) / warmup_steps  # the warm-up's step in the multiplier
    values = [f(t) for t in range(warmup_steps + total + 20)]
    assert values[0] == start
    # The line reaches 1 exactly where the cosine starts from 1: no jump beyond one warm-up
    # step into the boundary, none out of it beyond the cosine's own (tiny) first step.
    assert values[warmup_steps] == 1.0
    assert values[warmup_steps] - values[warmup_steps - 1] == pytest.approx(rise, rel=1e-12, abs=0)
    assert 0 < values[warmup_steps] - values[warmup_steps + 1] < rise
    assert max(values) == 1.0
    steps = [b - a for a, b in zip(values, values[1:], strict=False)]
    assert max(abs(d) for d in steps) <= rise * (1 + 1e-12)
    assert values[warmup_steps + total] == pytest.approx(final, rel=1e-15, abs=0)
    assert set(values[warmup_steps + total :]) == {values[warmup_steps + total]}


# --- validation -------------------------------------------------------------------------------


BAD = [
    (S.step, dict(step_size=0), "step_size"),
    (S.step, dict(step_size=2.5), "step_size"),
    (S.step, dict(step_size=True), "step_size"),
    (S.step, dict(step_size=10, gamma=0.0), "gamma"),
    (S.step, dict(step_size=10, gamma=1.5), "gamma"),
    (S.exponential, dict(gamma=-0.1), "gamma"),
    (S.exponential, dict(gamma=math.nan), "gamma"),
    (S.exponential, dict(gamma=True), "gamma"),
    (S.cosine, dict(total_steps=0), "total_steps"),
    (S.cosine, dict(total_steps=100.0), "total_steps"),
    (S.cosine, dict(total_steps=100, final=-0.1), "final"),
    (S.cosine, dict(total_steps=100, final=1.5), "final"),
    (S.warmup, dict(warmup_steps=0), "warmup_steps"),
    (S.warmup, dict(warmup_steps=10, start=-1.0), "start"),
    (S.warmup, dict(warmup_steps=10, after="cosine"), "after"),
    (S.one_cycle, dict(total_steps=-5), "total_steps"),
    (S.one_cycle, dict(total_steps=100, pct_start=0.0), "pct_start"),
    (S.one_cycle, dict(total_steps=100, pct_start=1.0), "pct_start"),
    (S.one_cycle, dict(total_steps=100, div_factor=0.5), "div_factor"),
    (S.one_cycle, dict(total_steps=100, final_div_factor=math.inf), "final_div_factor"),
    (S.one_cycle, dict(total_steps=100, anneal="cosine"), "anneal"),
]


@pytest.mark.parametrize(("function", "kwargs", "parameter"), BAD)
def test_bad_parameter_raises_value_error_naming_it(function, kwargs, parameter):
    with pytest.raises(ValueError, match=rf"^{parameter} must be"):
        function(**kwargs)
    with pytest.raises(ValueError, match=rf"^{parameter} must be"):
        S.create(function.__name__, **kwargs)


def test_create_with_an_unknown_name_raises_value_error_listing_the_allowed_names():
    with pytest.raises(ValueError, match="name must be one of .*; got 'linear'") as error:
        S.create("linear", total_steps=10)
    assert S.NAMES == ("constant", "step", "exponential", "cosine", "warmup", "one_cycle")
    for name in S.NAMES:
        assert name in str(error.value)


def test_create_with_an_unknown_keyword_raises_value_error_listing_the_parameters():
    with pytest.raises(HyperparameterError, match="total_steps, final") as error:
        S.create("cosine", total_steps=10, eta_min=0.0)
    assert (error.value.owner, error.value.key) == ("cosine", "eta_min")


def test_create_without_a_required_parameter_names_it():
    with pytest.raises(HyperparameterError, match="^step: step_size is required") as error:
        S.create("step", gamma=0.5)
    assert error.value.key == "step_size"


def test_a_refused_parameter_is_a_typed_error_carrying_its_key():
    with pytest.raises(HyperparameterError) as error:
        S.cosine(100, final=1.5)
    assert (error.value.owner, error.value.key) == (None, "final")
    assert error.value.problem == "must be in [0, 1], got 1.5"


def test_scheduler_refuses_a_schedule_that_is_not_callable():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    with pytest.raises(ValueError, match="^schedule must be"):
        S.scheduler(opt, 0.5)


# --- description ------------------------------------------------------------------------------

EXAMPLES = [
    S.constant(),
    S.step(30, gamma=0.5),
    S.exponential(0.99),
    S.cosine(1000, final=0.01),
    S.warmup(100, after=S.cosine(900), start=0.1),
    S.one_cycle(500, pct_start=0.25, anneal="linear"),
]


@pytest.mark.parametrize("schedule", EXAMPLES, ids=repr)
def test_a_schedule_prints_as_the_call_that_makes_it_and_pickles(schedule):
    assert eval(repr(schedule), vars(S)) == schedule
    assert S.create(repr(schedule).split("(")[0], **vars(schedule)) == schedule
    copy = pickle.loads(pickle.dumps(schedule))
    assert copy == schedule
    assert [copy(t) for t in range(0, 2000, 7)] == [schedule(t) for t in range(0, 2000, 7)]


# --- properties -------------------------------------------------------------------------------

totals = st.integers(1, 5000)
fractions = st.floats(0.0, 1.0)
gammas = st.floats(1e-6, 1.0)
_leaf = st.one_of(
    st.builds(S.constant),
    st.builds(S.step, st.integers(1, 500), gammas),
    st.builds(S.exponential, gammas),
    st.builds(S.cosine, totals, fractions),
    st.builds(
        S.one_cycle,
        totals,
        st.floats(0.01, 0.99),
        st.floats(1.0, 1e3),
        st.floats(1.0, 1e5),
        st.sampled_from(["cos", "linear"]),
    ),
)
schedules = st.one_of(_leaf, st.builds(S.warmup, totals, st.none() | _leaf, fractions))


@given(schedule=schedules, total=totals, data=st.data())
def test_every_schedule_is_finite_and_nonnegative_up_to_ten_times_its_horizon(
    schedule, total, data
):
    horizon = 10 * max([total, *(v for v in vars(schedule).values() if isinstance(v, int))])
    for t in [0, 1, horizon, data.draw(st.integers(0, horizon))]:
        value = schedule(t)
        assert math.isfinite(value) and value >= 0.0, (schedule, t, value)


# --- the docs ---------------------------------------------------------------------------------


def test_the_snippets_in_the_docs_run():
    snippets = re.findall(r"```python\n(.*?)```", DOCS.read_text(), flags=re.DOTALL)
    assert snippets
    for snippet in snippets:
        exec(compile(snippet, str(DOCS), "exec"), {})
