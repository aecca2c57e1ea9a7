"""Claims about trainlab.errors: typed errors that carry what went wrong, one checker."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from trainlab.errors import HyperparameterError, UserError, check_choice, check_range


def test_a_hyperparameter_error_carries_owner_key_and_problem_and_reads_as_one_line():
    err = HyperparameterError("Adam", "eps", "must be in (0, ∞), got 0")
    assert str(err) == "Adam: eps must be in (0, ∞), got 0"
    assert (err.owner, err.key, err.problem) == ("Adam", "eps", "must be in (0, ∞), got 0")
    assert isinstance(err, ValueError) and isinstance(err, UserError)
    assert str(HyperparameterError(None, "gamma", "must be in (0, 1], got 2")).startswith("gamma")


def test_a_hyperparameter_error_survives_pickling_with_its_attributes():
    copy = pickle.loads(pickle.dumps(HyperparameterError("SGD", "lr", "is required")))
    assert (copy.owner, copy.key, copy.problem, str(copy)) == (
        "SGD",
        "lr",
        "is required",
        "SGD: lr is required",
    )


def test_check_choice_returns_an_allowed_value_and_lists_the_choices_otherwise():
    assert check_choice("mode", "zca", ("pca", "zca")) == "zca"
    with pytest.raises(HyperparameterError) as error:
        check_choice("name", "adma", ("sgd", "adam"), owner="optimizer")
    assert str(error.value) == (
        "optimizer: name must be one of sgd, adam; got 'adma'; did you mean 'adam'?"
    )
    assert error.value.key == "name"


@pytest.mark.parametrize(
    ("value", "kwargs", "problem"),
    [
        (1.0, dict(low=0.0, high=1.0, high_open=True), "must be in [0, 1), got 1.0"),
        (0, dict(low=0.0, low_open=True), "must be in (0, ∞), got 0"),
        (math.inf, dict(low=0.0), "must be in [0, ∞), got inf"),
        (math.nan, dict(low=0.0), "must be in [0, ∞), got nan"),
        ("fast", dict(low=0.0), "must be a number in [0, ∞), got 'fast'"),
        (True, dict(low=0.0), "must be a number in [0, ∞), got True"),
        (0, dict(low=1, integer=True), "must be a positive int, got 0"),
        ("ten", dict(low=1, integer=True), "must be a positive int, got 'ten'"),
        (2.0, dict(low=0, high=5, integer=True), "must be an int in [0, 5], got 2.0"),
    ],
)
def test_check_range_names_the_interval_a_refused_value_misses(value, kwargs, problem):
    with pytest.raises(HyperparameterError) as error:
        check_range("x", value, **kwargs)
    assert error.value.problem == problem


def test_an_infinite_end_of_a_range_is_open():
    with pytest.raises(HyperparameterError):
        check_range("div_factor", math.inf, 1.0)
    with pytest.raises(HyperparameterError):
        check_range("shift", -math.inf)


def test_check_range_accepts_numpy_numbers_and_returns_an_int_for_integers():
    assert check_range("lr", np.float32(0.5), 0.0) == 0.5
    steps = check_range("total_steps", np.int64(100), 1, integer=True)
    assert steps == 100 and type(steps) is int
    assert check_range("lr", 3, 0.0) == 3
