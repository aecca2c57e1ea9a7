"""Claims about trainlab.preprocess: scikit-learn equivalence, exact streaming, whitening."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from trainlab.preprocess import (
    NAMES,
    Center,
    NotFittedError,
    Pipeline,
    Standardize,
    Whiten,
    create,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _data(n: int = 400, d: int = 5, seed: int = 0) -> np.ndarray:
    """Correlated features on very different scales and offsets, distinct eigenvalues."""
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(d, d)) + 2 * np.eye(d)
    scales = np.geomspace(0.5, 10.0, d)
    offsets = rng.normal(scale=10.0, size=d)
    return rng.normal(size=(n, d)) @ mixing * scales + offsets


def _estimators() -> list[tuple[str, object]]:
    return [
        ("center", Center()),
        ("standardize", Standardize()),
        ("whiten_pca", Whiten("pca")),
        ("whiten_zca", Whiten("zca")),
        ("pipeline", Pipeline([Center(), Standardize(), Whiten("zca")])),
    ]


ESTIMATORS = pytest.mark.parametrize(
    "estimator", [e for _, e in _estimators()], ids=[name for name, _ in _estimators()]
)


def _fresh(estimator):
    """A new unfitted estimator with the same parameters."""
    if isinstance(estimator, Pipeline):
        return Pipeline([(name, type(step)(**step.get_params())) for name, step in estimator.steps])
    return type(estimator)(**estimator.get_params())


def _assert_same_state(a: dict, b: dict, atol: float) -> None:
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(
            a[key].cpu().double().numpy(),
            b[key].cpu().double().numpy(),
            rtol=atol,
            atol=atol,
            err_msg=key,
        )


# ------------------------------------------------------------------- scikit-learn equality


def test_standardize_equals_sklearn_standard_scaler():
    x = _data()
    ours = Standardize().fit(x)
    theirs = StandardScaler().fit(x)
    np.testing.assert_allclose(ours.transform(x), theirs.transform(x), rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours.mean_.numpy(), theirs.mean_, rtol=1e-14)
    np.testing.assert_allclose(ours.scale_.numpy(), theirs.scale_, rtol=1e-13)
    np.testing.assert_allclose(ours.var_.numpy(), theirs.var_, rtol=1e-13)
    assert ours.n_samples_seen_ == theirs.n_samples_seen_ == len(x)
    assert ours.n_features_in_ == theirs.n_features_in_


def test_whiten_pca_equals_sklearn_pca_whiten_up_to_sign_per_component():
    x = _data()
    ours = Whiten("pca", eps=1e-14).fit(x)
    theirs = PCA(whiten=True).fit(x)
    z_ours, z_theirs = ours.transform(x), theirs.transform(x)
    signs = np.sign(np.sum(z_ours * z_theirs, axis=0))
    assert np.all(np.abs(signs) == 1)
    np.testing.assert_allclose(z_ours * signs, z_theirs, rtol=0, atol=1e-8)
    np.testing.assert_allclose(
        ours.components_.numpy() * signs[:, None], theirs.components_, atol=1e-10
    )
    np.testing.assert_allclose(
        ours.explained_variance_.numpy(), theirs.explained_variance_, rtol=1e-10
    )
    np.testing.assert_allclose(ours.mean_.numpy(), theirs.mean_, rtol=1e-14)


def test_whiten_components_have_their_largest_entry_positive():
    components = Whiten("pca").fit(-_data()).components_
    largest = components.gather(1, components.abs().argmax(dim=1, keepdim=True))
    assert (largest > 0).all()
    eigenvalues = Whiten("pca").fit(_data()).explained_variance_
    assert (eigenvalues[:-1] >= eigenvalues[1:]).all()


# ---------------------------------------------------------------------------- whitening


def test_zca_whitened_training_data_has_identity_covariance():
    x = torch.from_numpy(_data())
    z = Whiten("zca", eps=1e-12).fit_transform(x)
    covariance = torch.cov(z.T)  # the N−1 convention
    assert z.dtype == torch.float64
    assert (covariance - torch.eye(x.shape[1], dtype=torch.float64)).abs().max() < 1e-6
    assert z.mean(dim=0).abs().max() < 1e-10


def test_pca_whitened_training_data_has_identity_covariance():
    x = torch.from_numpy(_data())
    z = Whiten("pca", eps=1e-12).fit_transform(x)
    assert (torch.cov(z.T) - torch.eye(x.shape[1], dtype=torch.float64)).abs().max() < 1e-6


def test_zca_matrix_is_symmetric_and_pca_matrix_is_not():
    x = _data()
    zca = Whiten("zca").fit(x).whitening_
    assert torch.equal(zca, zca.T)
    pca = Whiten("pca").fit(x).whitening_
    assert not torch.allclose(pca, pca.T)


def test_zca_output_stays_closest_to_the_centered_input():
    # Among whitening transforms, ZCA's symmetric W keeps the output nearest the input.
    x = torch.from_numpy(_data(d=3) / 100)
    centered = x - x.mean(dim=0)
    zca = Whiten("zca").fit_transform(x)
    pca = Whiten("pca").fit_transform(x)
    assert (zca - centered).norm() < (pca - centered).norm()


def test_eps_shrinks_whitened_variance_to_lambda_over_lambda_plus_eps():
    x = torch.from_numpy(_data(d=3))
    white = Whiten("pca", eps=1.0).fit(x)
    lam = white.explained_variance_
    np.testing.assert_allclose(
        torch.cov(white.transform(x).T).diagonal().numpy(), (lam / (lam + 1.0)).numpy(), rtol=1e-10
    )


def test_whiten_rejects_input_that_is_not_two_dimensional():
    with pytest.raises(
        ValueError, match=r"Whiten.fit: expects a 2-D N×D input; got shape \(4, 3, 2\)"
    ):
        Whiten().fit(torch.zeros(4, 3, 2))
    with pytest.raises(ValueError, match="Pipeline.fit: expects a 2-D"):
        Pipeline([Center(), Whiten()]).fit(torch.zeros(4, 3, 2))


def test_whiten_needs_two_samples():
    with pytest.raises(ValueError, match="at least 2 samples"):
        Whiten().fit(np.ones((1, 3)))


# ---------------------------------------------------------------------------- streaming


@ESTIMATORS
def test_partial_fit_over_ten_batches_equals_fit(estimator):
    x = _data(n=1000)
    whole = _fresh(estimator).fit(x)
    streamed = _fresh(estimator)
    for batch in np.array_split(x, 10):
        assert streamed.partial_fit(batch) is streamed
    _assert_same_state(streamed.state_dict(), whole.state_dict(), atol=1e-10)
    np.testing.assert_allclose(streamed.transform(x), whole.transform(x), rtol=0, atol=1e-10)


@settings(max_examples=30, deadline=None)
@given(
    cuts=st.lists(st.integers(min_value=1, max_value=59), max_size=8, unique=True),
    which=st.sampled_from([name for name, _ in _estimators()]),
    seed=st.integers(0, 2**16),
)
def test_partial_fit_over_random_splits_equals_fit(cuts, which, seed):
    estimator = dict(_estimators())[which]
    x = _data(n=60, d=3, seed=seed)
    whole = _fresh(estimator).fit(x)
    streamed = _fresh(estimator)
    for batch in np.split(x, sorted(cuts)):
        streamed.partial_fit(batch)
    _assert_same_state(streamed.state_dict(), whole.state_dict(), atol=1e-9)


def test_pipeline_equals_its_steps_fitted_one_after_another():
    x = _data()
    pipe = Pipeline([Center(), Standardize(), Whiten("zca")]).fit(x)
    expected, z = [], x
    for step in (Center(), Standardize(), Whiten("zca")):
        z = step.fit_transform(z)
        expected.append(step)
    for (_, ours), theirs in zip(pipe.steps, expected, strict=True):
        _assert_same_state(ours.state_dict(), theirs.state_dict(), atol=1e-9)
    np.testing.assert_allclose(pipe.transform(x), z, rtol=0, atol=1e-9)


def test_fit_forgets_earlier_fits_and_returns_self():
    x, other = _data(seed=0), _data(seed=1)
    for _, estimator in _estimators():
        assert estimator.fit(other) is estimator
        refit = estimator.fit(x).state_dict()
        _assert_same_state(refit, _fresh(estimator).fit(x).state_dict(), atol=0)


def test_partial_fit_after_load_state_dict_continues_the_stream():
    x = _data(n=300)
    for _, estimator in _estimators():
        first = _fresh(estimator).fit(x[:100])
        resumed = _fresh(estimator).load_state_dict(first.state_dict()).partial_fit(x[100:])
        _assert_same_state(resumed.state_dict(), _fresh(estimator).fit(x).state_dict(), 1e-9)


# ------------------------------------------------------------------ round trips and shapes


@ESTIMATORS
def test_inverse_transform_of_transform_round_trips(estimator):
    x = _data()
    z = estimator.fit_transform(x)
    np.testing.assert_allclose(estimator.inverse_transform(z), x, rtol=1e-10, atol=1e-8)


@pytest.mark.parametrize("shape", [(64, 3, 5, 7), (64, 3, 11)], ids=["NCHW", "NCL"])
def test_per_channel_standardization_gives_channel_mean_zero_and_std_one(shape):
    gen = torch.Generator().manual_seed(0)
    offsets = torch.tensor([-5.0, 0.0, 40.0]).reshape((1, 3) + (1,) * (len(shape) - 2))
    scales = torch.tensor([0.1, 1.0, 30.0]).reshape(offsets.shape)
    x = torch.randn(shape, generator=gen, dtype=torch.float64) * scales + offsets
    standardize = Standardize().fit(x)
    z = standardize.transform(x)
    dims = [d for d in range(len(shape)) if d != 1]
    assert z.shape == x.shape
    assert z.mean(dim=dims).abs().max() < 1e-12
    assert (z.std(dim=dims, correction=0) - 1).abs().max() < 1e-12
    assert standardize.mean_.shape == (3,)
    assert standardize.n_samples_seen_ == x.numel() // 3
    np.testing.assert_allclose(standardize.inverse_transform(z), x, atol=1e-10)
    centered = Center().fit_transform(x)
    assert centered.mean(dim=dims).abs().max() < 1e-12


def test_per_channel_statistics_equal_those_of_the_pixels_as_rows():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(8, 3, 4, 4, generator=gen, dtype=torch.float64)
    x = x * torch.tensor([1.0, 5.0, 9.0], dtype=torch.float64)[:, None, None]
    rows = x.movedim(1, -1).reshape(-1, 3)
    _assert_same_state(
        Standardize().fit(x).state_dict(), Standardize().fit(rows).state_dict(), 1e-12
    )


def test_numpy_in_gives_numpy_out_of_the_same_dtype():
    for dtype in (np.float32, np.float64):
        x = _data().astype(dtype)
        for _, estimator in _estimators():
            z = estimator.fit_transform(x)
            assert isinstance(z, np.ndarray) and z.dtype == dtype
            back = estimator.inverse_transform(z)
            assert isinstance(back, np.ndarray) and back.dtype == dtype


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_tensor_in_gives_tensor_out_on_the_same_device_and_dtype(device, dtype):
    x = torch.from_numpy(_data() / 100).to(device=device, dtype=dtype)
    for _, estimator in _estimators():
        z = estimator.fit_transform(x)
        assert isinstance(z, torch.Tensor)
        assert z.dtype == dtype and z.device == x.device
        assert torch.isfinite(z).all()
        back = estimator.inverse_transform(z)
        assert back.dtype == dtype and back.device == x.device


@pytest.mark.parametrize("device", DEVICES)
def test_transform_of_float32_tensor_matches_the_float64_reference(device):
    x64 = torch.from_numpy(_data())
    for _, estimator in _estimators():
        reference = _fresh(estimator).fit(x64).transform(x64)
        z = estimator.fit(x64.float().to(device)).transform(x64.float().to(device))
        assert (z.double().cpu() - reference).abs().max() < 1e-3


def test_integer_input_is_transformed_as_float():
    z = Standardize().fit_transform(np.array([[1, 2], [3, 6]]))
    assert z.dtype == np.float64
    np.testing.assert_array_equal(z, [[-1.0, -1.0], [1.0, 1.0]])
    t = Center().fit_transform(torch.tensor([[1, 2], [3, 6]]))
    assert t.dtype == torch.get_default_dtype()


# ------------------------------------------------------------------------------- errors


@ESTIMATORS
def test_transform_before_fit_raises_not_fitted_error(estimator):
    unfitted = _fresh(estimator)
    for method in (unfitted.transform, unfitted.inverse_transform):
        with pytest.raises(NotFittedError, match="not fitted yet"):
            method(_data())
    with pytest.raises(NotFittedError):
        unfitted.state_dict()
    assert issubclass(NotFittedError, ValueError) and issubclass(NotFittedError, AttributeError)


def test_unfitted_estimator_has_no_fitted_attributes():
    assert not hasattr(Standardize(), "mean_")
    assert not hasattr(Whiten(), "components_")
    assert hasattr(Standardize().fit(_data()), "scale_")


@pytest.mark.parametrize(
    ("bad", "spelled"), [(float("nan"), "NaN"), (float("inf"), "inf"), (float("-inf"), "-inf")]
)
def test_non_finite_input_error_names_row_and_column(bad, spelled):
    x = _data(n=10, d=3)
    x[3, 1] = bad
    x[7, 2] = bad
    with pytest.raises(
        ValueError, match=rf"^Standardize.fit: non-finite value {spelled} at row 3, column 1$"
    ):
        Standardize().fit(x)
    with pytest.raises(ValueError, match=rf"Whiten.partial_fit: .* {spelled} at row 3, column 1"):
        Whiten().partial_fit(torch.from_numpy(x))
    with pytest.raises(ValueError, match=r"Center.transform: .* at row 3, column 1"):
        Center().fit(x[:3]).transform(x)
    images = torch.zeros(2, 3, 4, 4)
    images[1, 2, 0, 3] = bad
    with pytest.raises(ValueError, match=r"at row 1, channel 2, position \(0, 3\)"):
        Standardize().fit(images)


@pytest.mark.parametrize("estimator", [Standardize(), Whiten("zca")], ids=["standardize", "zca"])
def test_zero_variance_feature_warns_naming_it_and_output_is_finite(estimator):
    x = _data(n=50, d=4)
    x[:, 2] = 7.25
    with pytest.warns(UserWarning, match="feature 2 has zero variance"):
        z = estimator.fit_transform(x)
    assert np.isfinite(z).all()
    np.testing.assert_allclose(z[:, 2], 0.0, atol=1e-6)
    assert np.isfinite(estimator.transform(x + 1.0)).all()


def test_zero_variance_feature_keeps_standardize_equal_to_standard_scaler():
    x = _data(n=50, d=4)
    x[:, [0, 3]] = 1e6
    with pytest.warns(UserWarning, match=r"features \[0, 3\] have zero variance"):
        ours = Standardize().fit(x)
    theirs = StandardScaler().fit(x)
    np.testing.assert_allclose(ours.scale_.numpy(), theirs.scale_, rtol=1e-13)
    np.testing.assert_allclose(ours.transform(x), theirs.transform(x), atol=1e-12)


def test_feature_count_mismatch_is_a_clear_error():
    standardize = Standardize().fit(_data(d=4))
    message = "X has 3 features, but Standardize is expecting 4 features as input"
    with pytest.raises(ValueError, match=f"^Standardize.transform: {message}$"):
        standardize.transform(_data(d=3))
    with pytest.raises(ValueError, match=f"^Standardize.partial_fit: {message}$"):
        standardize.partial_fit(_data(d=3))


def test_one_dimensional_and_empty_inputs_are_rejected():
    with pytest.raises(ValueError, match=r"reshape\(-1, 1\)"):
        Standardize().fit(np.arange(5.0))
    with pytest.raises(ValueError, match="empty input"):
        Center().fit(np.zeros((0, 3)))
    with pytest.raises(TypeError, match="real numbers"):
        Center().fit(np.array([["a", "b"]]))
    with pytest.raises(ValueError, match="real numbers; could not convert string"):
        Center().fit(np.array([[1.0, "b"]], dtype=object))


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"method": "foo"}, "method"),
        ({"method": "PCA"}, "method"),
        ({"method": None}, "method"),
        ({"eps": 0.0}, "eps"),
        ({"eps": -1e-5}, "eps"),
        ({"eps": float("nan")}, "eps"),
        ({"eps": float("inf")}, "eps"),
        ({"eps": "1e-5"}, "eps"),
        ({"eps": True}, "eps"),
    ],
)
def test_bad_parameters_raise_value_error_naming_the_parameter_in_fit(params, parameter):
    white = Whiten(**params)  # scikit-learn's rule: the constructor only stores them
    assert white.get_params() == {"method": "pca", "eps": 1e-5, **params}
    for fit in (white.fit, white.partial_fit, Pipeline([Center(), white]).fit):
        with pytest.raises(ValueError, match=rf"^Whiten: {parameter} must be"):
            fit(_data())
    with pytest.raises(ValueError, match=rf"^Whiten: {parameter} must be"):
        Whiten(**params).load_state_dict(Whiten().fit(_data()).state_dict())


def test_set_params_stores_and_fit_validates():
    white = Whiten().fit(_data())
    pca = white.transform(_data())
    assert white.set_params(method="zca") is white and white.method == "zca"
    # Refit from the stored statistics with the new parameters, no pass over the data.
    np.testing.assert_allclose(white.transform(_data()), Whiten("zca").fit_transform(_data()))
    assert not np.allclose(white.transform(_data()), pca)
    white.set_params(eps=0)
    with pytest.raises(ValueError, match="eps must be"):
        white.fit(_data())
    with pytest.raises(ValueError, match="Invalid parameter 'sigma'"):
        white.set_params(sigma=1)
    assert white.get_params() == {"method": "zca", "eps": 0}


# -------------------------------------------------------------------------------- state


@ESTIMATORS
def test_state_dict_round_trips_through_torch_save_and_weights_only_load(estimator, tmp_path):
    x = _data()
    estimator.fit(x)
    state = estimator.state_dict()
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    torch.save(state, tmp_path / "pre.pt")
    restored = _fresh(estimator).load_state_dict(torch.load(tmp_path / "pre.pt", weights_only=True))
    np.testing.assert_array_equal(restored.transform(x), estimator.transform(x))
    np.testing.assert_array_equal(restored.inverse_transform(x), estimator.inverse_transform(x))
    _assert_same_state(restored.state_dict(), state, atol=0)


def test_load_state_dict_rejects_another_method_and_wrong_keys():
    state = Whiten("pca").fit(_data()).state_dict()
    with pytest.raises(
        ValueError, match="saved with method='pca', but this estimator has method='zca'"
    ):
        Whiten("zca").load_state_dict(state)
    with pytest.raises(ValueError, match=r"missing keys \['scale_', 'var_'\]"):
        Standardize().load_state_dict(Center().fit(_data()).state_dict())
    with pytest.raises(ValueError, match="unexpected keys"):
        Center().load_state_dict(Standardize().fit(_data()).state_dict())


# ----------------------------------------------------------------------- pipeline, make


def test_pipeline_names_steps_and_accepts_named_pairs():
    pipe = Pipeline([Center(), Whiten(), ("white", Whiten("zca")), Whiten()])
    assert [name for name, _ in pipe.steps] == ["center", "whiten", "white", "whiten-2"]
    assert pipe["white"] is pipe[2]
    assert len(pipe) == 4
    with pytest.raises(ValueError, match="unique"):
        Pipeline([("a", Center()), ("a", Standardize())])
    with pytest.raises(ValueError, match="non-empty"):
        Pipeline([])
    with pytest.raises(TypeError, match="expected a trainlab preprocessor"):
        Pipeline([StandardScaler()])


def test_pipeline_transform_chains_its_steps():
    x = _data()
    pipe = Pipeline([("center", Center()), ("scale", Standardize())]).fit(x)
    np.testing.assert_allclose(pipe.transform(x), StandardScaler().fit_transform(x), atol=1e-12)
    state = pipe.state_dict()
    assert {"center.mean_", "scale.scale_", "_input.mean_"} <= state.keys()
    assert pipe.n_features_in_ == x.shape[1] and pipe.n_samples_seen_ == len(x)


def test_create_maps_config_names_to_estimators():
    assert NAMES == ("center", "standardize", "whiten_pca", "whiten_zca")
    assert type(create("center")) is Center
    assert type(create("standardize")) is Standardize
    assert create("whiten_pca").method == "pca"
    assert create("whiten_zca", eps=1e-3).get_params() == {"method": "zca", "eps": 1e-3}


def test_create_with_an_unknown_name_lists_the_allowed_names():
    with pytest.raises(ValueError, match="center, standardize, whiten_pca, whiten_zca"):
        create("normalize")


def test_create_checks_the_parameters_at_once_unlike_the_constructor():
    with pytest.raises(ValueError, match="^Whiten: eps must be"):
        create("whiten_zca", eps=0.0)
    assert Whiten("zca", eps=0.0).eps == 0.0  # scikit-learn's rule: checked in fit


# --------------------------------------------------------------------------- lecture C8


def test_standardizing_house_features_reduces_condition_number_by_orders_of_magnitude():
    # C8: features on the lecture's house-table scales (size ft², bedrooms, floors, age).
    # The loss L(w) = (1/n)‖Xw − y‖² has Hessian (2/n)XᵀX, whose condition number bounds
    # how slowly gradient descent converges; standardizing makes it close to 1.
    rng = np.random.default_rng(0)
    n = 200
    x = np.column_stack(
        [
            rng.uniform(850, 2100, n),
            rng.integers(2, 6, n),
            rng.integers(1, 3, n),
            rng.uniform(30, 45, n),
        ]
    ).astype(np.float64)
    raw = np.linalg.cond(x.T @ x)
    z = Standardize().fit_transform(x)
    standardized = np.linalg.cond(z.T @ z)
    assert raw > 1e5
    assert standardized < 3
    assert raw / standardized > 1e4
