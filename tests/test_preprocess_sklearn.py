"""Claims: trainlab's preprocessors are scikit-learn estimators, by scikit-learn's own checks.

``parametrize_with_checks`` runs every check scikit-learn has for a transformer on Center,
Standardize and Whiten; none is expected to fail. The one check that needs the environment
variable SCIPY_ARRAY_API=1 set before SciPy is imported (array API dispatch with NumPy
input) runs in a subprocess that sets it, instead of being skipped.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import warnings
from functools import cache, partial

import numpy as np
import pandas as pd
import pytest
import scipy.sparse
import sklearn.exceptions
import torch
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import check_array_api_input, parametrize_with_checks

from trainlab.preprocess import Center, NotFittedError, Pipeline, Standardize, Whiten

ESTIMATORS = [Center(), Standardize(), Whiten(method="pca"), Whiten(method="zca", eps=1e-3)]
COLUMNS = ["size", "rooms", "floors", "age"]


def _frame(n: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)) @ (rng.normal(size=(4, 4)) + 2 * np.eye(4)) + [900, 3, 1, 40]
    return pd.DataFrame(x, columns=COLUMNS)


# ------------------------------------------------------------- scikit-learn's own checks


def _needs_scipy_array_api(check) -> bool:
    return isinstance(check, partial) and check.func is check_array_api_input


@cache
def _array_api_check_failures() -> dict[int, str]:
    """Run the array API checks of all ESTIMATORS in one subprocess with SCIPY_ARRAY_API=1.

    Returns the traceback text of each failing one, by its index in ESTIMATORS.
    """
    runner = (
        "import pickle, sys, traceback\n"
        "from sklearn.utils.estimator_checks import check_array_api_input\n"
        "failures = {}\n"
        "for i, estimator in enumerate(pickle.load(sys.stdin.buffer)):\n"
        "    try:\n"
        "        check_array_api_input(type(estimator).__name__, estimator,\n"
        "                              array_namespace='numpy', expect_only_array_outputs=False)\n"
        "    except BaseException:\n"
        "        failures[i] = traceback.format_exc()\n"
        "sys.stdout.buffer.write(pickle.dumps(failures))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", runner],
        input=pickle.dumps(ESTIMATORS),
        capture_output=True,
        env={**os.environ, "SCIPY_ARRAY_API": "1"},
        timeout=240,
        check=True,
    )
    return pickle.loads(done.stdout)


@parametrize_with_checks(ESTIMATORS)
def test_preprocessor_passes_scikit_learn_estimator_check(estimator, check):
    if _needs_scipy_array_api(check) and os.environ.get("SCIPY_ARRAY_API") != "1":
        index = next(i for i, e in enumerate(ESTIMATORS) if repr(e) == repr(estimator))
        failure = _array_api_check_failures().get(index)
        assert failure is None, failure
        return
    check(estimator)


# ------------------------------------------------------------------ in a sklearn pipeline


def test_pandas_output_of_a_scikit_learn_pipeline_keeps_the_column_names():
    df = _frame()
    out = make_pipeline(Standardize()).set_output(transform="pandas").fit_transform(df)
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns) == COLUMNS and out.index.equals(df.index)
    expected = StandardScaler().set_output(transform="pandas").fit_transform(df)
    pd.testing.assert_frame_equal(out, expected, rtol=0, atol=1e-12)


def test_pandas_output_names_pca_components_and_keeps_zca_columns():
    df = _frame()
    pca = make_pipeline(Center(), Whiten("pca")).set_output(transform="pandas")
    assert list(pca.fit_transform(df).columns) == ["whiten0", "whiten1", "whiten2", "whiten3"]
    zca = make_pipeline(Standardize(), Whiten("zca")).set_output(transform="pandas")
    assert list(zca.fit_transform(df).columns) == COLUMNS


@pytest.mark.parametrize(
    ("estimator", "names"),
    [
        (Center(), COLUMNS),
        (Standardize(), COLUMNS),
        (Whiten("zca"), COLUMNS),
        (Whiten("pca"), ["whiten0", "whiten1", "whiten2", "whiten3"]),
    ],
    ids=["center", "standardize", "zca", "pca"],
)
def test_get_feature_names_out_names_the_output_columns(estimator, names):
    with pytest.raises(sklearn.exceptions.NotFittedError):
        clone(estimator).get_feature_names_out()
    fitted = clone(estimator).fit(_frame())
    assert list(fitted.feature_names_in_) == COLUMNS and fitted.n_features_in_ == 4
    assert list(fitted.get_feature_names_out()) == names
    on_array = clone(estimator).fit(_frame().to_numpy())
    assert not hasattr(on_array, "feature_names_in_")
    generic = names if names[0].startswith("whiten") else ["x0", "x1", "x2", "x3"]
    assert list(on_array.get_feature_names_out()) == generic


def test_column_transformer_names_columns_after_the_trainlab_step():
    df = _frame().assign(city=["a", "b"] * 30)
    columns = ColumnTransformer([("num", Standardize(), COLUMNS)], remainder="drop")
    out = columns.set_output(transform="pandas").fit_transform(df)
    assert list(out.columns) == [f"num__{c}" for c in COLUMNS]


def test_clone_gives_an_unfitted_estimator_with_the_same_parameters():
    white = Whiten("zca", eps=1e-3).fit(_frame())
    twin = clone(white)
    assert twin is not white and twin.get_params() == {"method": "zca", "eps": 1e-3}
    assert not hasattr(twin, "mean_") and not hasattr(twin, "n_features_in_")
    standardize = clone(Standardize())
    assert type(standardize) is Standardize and standardize.get_params() == {}


def test_trainlab_not_fitted_error_is_scikit_learns():
    assert issubclass(NotFittedError, sklearn.exceptions.NotFittedError)
    with pytest.raises(sklearn.exceptions.NotFittedError, match="Standardize.transform"):
        Standardize().transform(_frame())


# ---------------------------------------------------------------------- inputs


def test_object_dtype_numbers_are_standardized_as_standard_scaler_does():
    x = _frame().to_numpy().astype(object)
    ours = Standardize().fit_transform(x)
    assert ours.dtype == np.float64
    np.testing.assert_allclose(ours, StandardScaler().fit_transform(x), rtol=0, atol=1e-12)


def test_a_transform_with_other_column_names_is_refused_like_scikit_learn():
    standardize = Standardize().fit(_frame())
    with pytest.raises(ValueError, match="feature names should match"):
        standardize.transform(_frame().rename(columns={"age": "year"}))
    with pytest.warns(UserWarning, match="fitted with feature names"):
        standardize.transform(_frame().to_numpy())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Pipeline([Center(), Standardize()]).fit(_frame()).transform(_frame())


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=repr)
def test_sparse_input_is_refused_with_an_error_that_says_sparse(estimator):
    dense = _frame().to_numpy()
    for sparse in (scipy.sparse.csr_matrix(dense), scipy.sparse.csr_array(dense)):
        with pytest.raises(TypeError, match=r"sparse input \(csr_\w+\) is not supported"):
            clone(estimator).fit(sparse)
    with pytest.raises(TypeError, match="sparse input is not supported"):
        clone(estimator).fit(torch.from_numpy(dense).to_sparse())


def test_tensor_in_gives_tensor_out_even_under_pandas_output():
    x = torch.from_numpy(_frame().to_numpy()).float()
    for estimator in ESTIMATORS:
        z = clone(estimator).set_output(transform="pandas").fit_transform(x)
        assert isinstance(z, torch.Tensor) and z.dtype == torch.float32
        with sklearn.config_context(transform_output="pandas"):
            fitted = clone(estimator).fit(x)
            assert isinstance(fitted.transform(x), torch.Tensor)
            assert isinstance(fitted.transform(x.numpy()), pd.DataFrame)
