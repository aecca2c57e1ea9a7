"""Data preprocessing: centering, per-dimension variance normalization, PCA and ZCA whitening.

The lecture's three preprocessing steps as scikit-learn estimators: ``Center``,
``Standardize`` and ``Whiten`` subclass ``BaseEstimator`` and ``TransformerMixin`` and pass
``sklearn.utils.estimator_checks`` (tests/test_preprocess_sklearn.py). ``fit`` returns
``self``, fitted attributes end in ``_``, the constructor only stores its parameters and
``fit`` validates them, ``transform`` before ``fit`` raises :class:`NotFittedError`,
``set_output(transform="pandas")``, ``get_feature_names_out`` and ``feature_names_in_``
work as in scikit-learn. They take torch tensors (any device; the output keeps the input's
device and dtype), NumPy arrays and array-likes (lists, DataFrames, object arrays of
numbers; the output is NumPy, or a DataFrame under ``set_output``). Sparse input is
refused: centering makes it dense.

``Pipeline`` is trainlab's own container, not a scikit-learn estimator: its point is that
``partial_fit`` streams the input's moments through every step in one pass, which
scikit-learn's ``Pipeline`` cannot do. To put the preprocessors in a scikit-learn
pipeline, use ``sklearn.pipeline.make_pipeline(Center(), Whiten())``.

Statistics always come from the training split only, are accumulated in float64 (the
products behind a float32 input's covariance are float32, see :class:`Whiten`), and are
exact when streamed: ``partial_fit`` merges the count n, the mean μ and the sum of squared
deviations M2 = Σᵢ (x⁽ⁱ⁾ − μ)ᵀ(x⁽ⁱ⁾ − μ) of each batch with Chan et al.'s parallel
formulas, so fitting batch by batch equals fitting the concatenation (up to rounding).

Rows x⁽ⁱ⁾ of an N×D input are the samples. An N×C×H×W (or N×C×L) input is centered and
standardized per channel: every value of channel c, over the N samples and all spatial
positions, is a sample of that channel's distribution. Whitening needs an N×D input.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse
import sklearn.exceptions
import torch
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    OneToOneFeatureMixin,
    TransformerMixin,
)
from sklearn.utils._set_output import _wrap_data_with_container
from sklearn.utils.validation import validate_data
from torch import Tensor

from trainlab.errors import check_choice, check_range
from trainlab.moments import merge_moments

__all__ = [
    "NAMES",
    "Center",
    "NotFittedError",
    "Pipeline",
    "Standardize",
    "Whiten",
    "create",
]

_WHITEN_METHODS = ("pca", "zca")


class NotFittedError(sklearn.exceptions.NotFittedError):
    """Raised when an estimator is used before ``fit``, ``partial_fit`` or ``load_state_dict``.

    scikit-learn's ``NotFittedError`` (so ``except`` clauses written for it catch this),
    which is both a ``ValueError`` and an ``AttributeError``: ``hasattr(estimator, "mean_")``
    is ``False`` on an unfitted estimator.
    """


# --------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class _Moments:
    """Sufficient statistics of a sample, in float64.

    ``n`` values per feature, their mean μ, and M2: ``None`` (mean only), the per-feature
    Σᵢ (xᵢ − μ)² (shape D), or the scatter matrix Σᵢ (x⁽ⁱ⁾ − μ)ᵀ(x⁽ⁱ⁾ − μ) (shape D×D).
    """

    n: int
    mean: Tensor
    m2: Tensor | None

    @classmethod
    def of_batch(cls, x: Tensor, kind: str, where: str) -> _Moments:
        """Moments of one batch; features on dim 1, samples on every other dim.

        The input's finiteness is checked through its moments: they are finite if and only
        if every value is (a NaN or ±Inf term makes a sum non-finite), so the full pass
        that locates the first bad value for the error message runs only when one exists.

        Raises
        ------
        ValueError
            If ``x`` holds a NaN or ±Inf (named by ``where``, row and column).
        """
        moments = cls._of(x, kind)
        if not moments._is_finite():
            _check_finite(x, where)  # raises, naming the first non-finite value
            if kind == "full" and x.dtype != torch.float64:
                # Finite, but float32 products overflowed (|x − s| ≳ 1e19): redo in float64.
                moments = cls(*_scatter(x, torch.float64))
        return moments

    @classmethod
    def _of(cls, x: Tensor, kind: str) -> _Moments:
        if kind == "full":  # x is N×D
            return cls(*_scatter(x, torch.float64 if x.dtype == torch.float64 else torch.float32))
        x = x.detach().to(device=_stats_device(x), dtype=torch.float64)
        dims = [d for d in range(x.ndim) if d != 1]
        n = x.numel() // x.shape[1]
        mean = x.mean(dim=dims)
        if kind == "none":
            return cls(n, mean, None)
        deviation = x - _per_feature(mean, x.ndim)
        return cls(n, mean, deviation.square().sum(dim=dims))  # kind == "diag"

    def _is_finite(self) -> bool:
        finite = torch.isfinite(self.mean).all()
        if self.m2 is not None:
            finite &= torch.isfinite(self.m2).all()
        return bool(finite)

    def merge(self, other: _Moments) -> _Moments:
        """The moments of the union of two samples: Chan et al.'s parallel formulas
        (:func:`trainlab.moments.merge_moments`)."""
        device = self.mean.device
        m2_b = None if self.m2 is None else other.m2.to(device)
        return _Moments(
            *merge_moments(self.n, self.mean, self.m2, other.n, other.mean.to(device), m2_b)
        )

    def project(self, kind: str) -> _Moments:
        """The same moments with only the part of M2 that ``kind`` keeps."""
        if kind == "none":
            return _Moments(self.n, self.mean, None)
        if kind == "diag" and self.m2 is not None and self.m2.ndim == 2:
            return _Moments(self.n, self.mean, self.m2.diagonal().clone())
        return self


def _stats_device(x: Tensor) -> torch.device:
    # MPS has no float64; its statistics live on the CPU.
    return torch.device("cpu") if x.device.type == "mps" else x.device


#: Bytes per block of rows in ``_scatter``: big enough for fast matrix products and few
#: parallel steps, small enough to stay in the CPU's cache.
_SCATTER_BLOCK_BYTES = 8 * 2**20
#: Columns per panel of the upper triangle in ``_scatter``.
_SCATTER_PANEL = 64


def _scatter(x: Tensor, dtype: torch.dtype) -> tuple[int, Tensor, Tensor]:
    """n, mean μ and scatter matrix M2 = Σᵢ (x⁽ⁱ⁾ − μ)ᵀ(x⁽ⁱ⁾ − μ) of the rows of N×D ``x``.

    One pass over blocks of rows, with matrix products in ``dtype`` (float32 for
    float32 and half-precision input: as fast as the hardware multiplies) and sums in
    float64. Each block is shifted by s, the mean of the first block (in ``dtype``):

        d = (1/n) Σᵢ (x⁽ⁱ⁾ − s),  μ = s + d,  M2 = Σᵢ (x⁽ⁱ⁾ − s)ᵀ(x⁽ⁱ⁾ − s) − n dᵀd.

    This is exact for any s; with s ≈ μ the products (x⁽ⁱ⁾ − s)ᵀ(x⁽ⁱ⁾ − s) are rounded
    relative to the spread of the data instead of its offset (the cancellation of
    Σᵢ x⁽ⁱ⁾ᵀx⁽ⁱ⁾ − n μᵀμ), and d is small. M2 is symmetric, and torch has no ``syrk``:
    each block computes only the upper triangle, as one product per panel of
    ``_SCATTER_PANEL`` rows (62.5 % of the full product's flops for D = 256). Memory:
    one block, whatever N.
    """
    device = _stats_device(x)
    x = x.detach()
    n, d = x.shape
    rows = max(256, _SCATTER_BLOCK_BYTES // (d * torch.finfo(dtype).bits // 8))
    shift = x[:rows].to(device).mean(dim=0, dtype=dtype)  # any s is exact; s ≈ μ is accurate
    block = torch.empty(min(rows, n), d, device=device, dtype=dtype)
    ones = torch.ones(len(block), device=device, dtype=dtype)
    total = torch.zeros(d, device=device, dtype=torch.float64)
    m2 = torch.zeros(d, d, device=device, dtype=torch.float64)
    panels = [(p, min(p + _SCATTER_PANEL, d)) for p in range(0, d, _SCATTER_PANEL)]
    for start in range(0, n, rows):
        y = block[: min(rows, n - start)]
        torch.sub(x[start : start + rows].to(device), shift, out=y)
        total += ones[: len(y)] @ y  # column sums; a matrix-vector product beats sum(dim=0)
        for p, q in panels:  # rows p:q of the upper triangle
            m2[p:q, p:] += y[:, p:q].T @ y[:, p:]
    m2 = m2.triu() + m2.triu(1).T
    offset = total / n
    m2 -= torch.outer(offset, offset) * n
    return n, shift.to(torch.float64) + offset, m2


def _per_feature(v: Tensor, ndim: int) -> Tensor:
    """Shape a per-feature vector (C,) to broadcast over dim 1 of an ndim-D input."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def _is_constant(var: Tensor, mean: Tensor, n: int) -> Tensor:
    """scikit-learn's test for a feature whose variance is rounding error (Chan, Golub, LeVeque)."""
    eps = torch.finfo(torch.float64).eps
    return var <= n * eps * var + (n * mean * eps).square()


def _constant_feature_warning(name: str, constant: Tensor, consequence: str) -> None:
    index = constant.nonzero().flatten().tolist()
    if index:
        which = f"feature {index[0]} has" if len(index) == 1 else f"features {index} have"
        warnings.warn(f"{name}: {which} zero variance; {consequence}", UserWarning, stacklevel=5)


#: Largest D whose eigendecomposition runs on one CPU thread (see ``_eigh``).
_EIGH_ONE_THREAD_MAX_D = 1024


def _eigh(c: Tensor) -> tuple[Tensor, Tensor]:
    """``torch.linalg.eigh`` of a symmetric D×D matrix; on one thread on the CPU up to D = 1024.

    The eigendecomposition is hundreds of short parallel steps; when other processes hold
    the cores, every step of a multi-threaded run waits for one. D = 256 on 2 cores: a
    median of 90 ms on 2 threads against 15 ms on 1 while other processes were busy; idle,
    3.2 against 3.8 ms at best.
    """
    if c.device.type != "cpu" or c.shape[0] > _EIGH_ONE_THREAD_MAX_D:
        return torch.linalg.eigh(c)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return torch.linalg.eigh(c)
    finally:
        torch.set_num_threads(threads)


# ------------------------------------------------------------------------------ inputs


def _as_tensor(x: Any, where: str) -> tuple[Tensor, bool]:
    """The input as a floating-point tensor, and whether it came as NumPy (or array-like).

    An object array (a DataFrame of mixed columns, say) is converted to float64, as
    scikit-learn's ``check_array`` does; sparse input is refused by name.
    """
    if isinstance(x, Tensor):
        if x.is_sparse or x.layout != torch.strided:
            raise TypeError(f"{where}: sparse input is not supported; densify it first")
        if x.is_complex():
            raise ValueError(f"{where}: Complex data not supported; got dtype {x.dtype}")
        return (x if x.is_floating_point() else x.to(torch.get_default_dtype())), False
    if scipy.sparse.issparse(x):
        # Centering makes a sparse matrix dense; doing it explicitly is the user's call.
        raise TypeError(
            f"{where}: sparse input ({type(x).__name__}) is not supported; densify it with "
            "x.toarray() first"
        )
    a = np.asarray(x)
    if a.dtype.kind == "O":
        try:
            a = a.astype(np.float64)
        except (TypeError, ValueError) as error:
            raise type(error)(f"{where}: expected real numbers; {error}") from None
    if a.dtype.kind == "c":  # scikit-learn's error and wording
        raise ValueError(f"{where}: Complex data not supported; got dtype {a.dtype}")
    if a.dtype.kind not in "f" or a.dtype.itemsize > 8:
        if a.dtype.kind not in "biuf":
            raise TypeError(
                f"{where}: expected a torch.Tensor or a NumPy array of real numbers; "
                f"got {type(x).__name__} with dtype {a.dtype}"
            )
        a = a.astype(np.float64)
    if any(s < 0 for s in a.strides):
        a = a.copy()  # torch.from_numpy needs positive strides
    if not a.flags.writeable:
        # No copy of a read-only array (np.load(..., mmap_mode="r") of data larger than
        # memory): nothing here writes to its input, so torch's warning does not apply.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "The given NumPy array is not writable")
            return torch.from_numpy(a), True
    return torch.from_numpy(a), True


def _like_input(t: Tensor, was_numpy: bool) -> Tensor | np.ndarray:
    return t.numpy() if was_numpy else t


def _check_finite(t: Tensor, where: str) -> None:
    bad = ~torch.isfinite(t)
    if not bool(bad.any()):
        return
    first = int(bad.reshape(-1).to(torch.uint8).argmax())  # first bad value, row-major
    index = np.unravel_index(first, tuple(t.shape))
    value = float(t[tuple(int(i) for i in index)])
    spelled = "NaN" if value != value else str(value)  # NaN as numpy and scikit-learn spell it
    at = f"row {index[0]}, column {index[1]}"
    if t.ndim > 2:
        at = f"row {index[0]}, channel {index[1]}, position {tuple(int(i) for i in index[2:])}"
    raise ValueError(f"{where}: non-finite value {spelled} at {at}")


def _work_dtype(t: Tensor) -> torch.dtype:
    # Half-precision inputs are transformed in float32, then cast back.
    return torch.promote_types(t.dtype, torch.float32)


# ---------------------------------------------------------------------------- estimators


def _fitted_attribute(name: str, doc: str) -> property:
    return property(lambda self: self._attributes()[name], doc=doc)


class _Preprocessor(TransformerMixin, BaseEstimator, auto_wrap_output_keys=None):
    """Shared machinery: input checks, streaming statistics, scikit-learn's estimator API.

    A subclass sets ``_kind`` (which M2 it needs: "none", "diag" or "full"), ``_state_keys``
    and implements ``_finalize`` (moments → fitted attributes), ``_transform``,
    ``_inverse_transform`` and ``_map_moments`` (moments of its output, for ``Pipeline``);
    one with parameters stores them in ``__init__`` and checks them in ``_validate_params``.

    ``n_features_in_`` (D, or C) is set by ``fit``, ``partial_fit`` and ``load_state_dict``;
    ``feature_names_in_`` by a ``fit`` on a DataFrame, as in scikit-learn.

    ``set_output``: scikit-learn wraps ``transform`` in its output container (a DataFrame)
    automatically; here ``auto_wrap_output_keys=None`` turns that off for this class, and
    ``transform`` wraps only what did not come in as a tensor, so a tensor in is a tensor
    out whatever ``set_output`` or ``sklearn.set_config`` says. (The subclasses keep the
    default keys, which is what makes ``set_output`` available on them.)
    """

    _kind = "none"
    _two_d_only = False
    _state_keys: tuple[str, ...] = ()
    # The state behind the fitted attributes; class-level None, so ``__init__`` stores
    # nothing but the parameters (scikit-learn's rule, which ``clone`` relies on).
    _moments: _Moments | None = None
    _fitted: dict[str, Any] | None = None  # None: recompute from the moments

    n_samples_seen_ = _fitted_attribute(
        "n_samples_seen_",
        "Number of samples behind the statistics: rows of an N×D input, N·H·W per channel.",
    )

    # -- scikit-learn's estimator API

    def fit(self, x: Tensor | np.ndarray, y: Any = None) -> _Preprocessor:
        """Fit the statistics on ``x`` (the training split), forgetting earlier fits.

        Parameters
        ----------
        x : Tensor, ndarray or array-like, N×D (or N×C×… for per-channel statistics)
        y : ignored, for scikit-learn compatibility

        Returns
        -------
        self

        Raises
        ------
        HyperparameterError
            If a parameter is out of range (a ``ValueError`` naming it).
        """
        self._moments, self._fitted = None, None
        self._accumulate(x, "fit")
        self._attributes()  # finalize now, so errors and warnings come from ``fit``
        return self

    def partial_fit(self, x: Tensor | np.ndarray, y: Any = None) -> _Preprocessor:
        """Merge the statistics of one more batch (Chan's formulas; exact, in float64).

        Fitted attributes are computed from the merged statistics when they are next used.

        Returns
        -------
        self
        """
        self._accumulate(x, "partial_fit")
        return self

    def transform(self, x: Tensor | np.ndarray) -> Tensor | np.ndarray:
        """Apply the fitted map; the output has the input's type, device and dtype.

        A tensor gives a tensor; anything else gives NumPy, or the container that
        ``set_output(transform=...)`` asks for (a DataFrame for "pandas").

        Raises
        ------
        NotFittedError
            If the estimator is not fitted.
        ValueError
            If ``x`` has the wrong shape, a different number of features, or a NaN/Inf.
        """
        t, was_numpy = self._check_input(x, "transform")
        z = self._transform(t)
        if not was_numpy:
            return z
        return _wrap_data_with_container("transform", z.numpy(), x, self)

    def fit_transform(self, x: Tensor | np.ndarray, y: Any = None) -> Tensor | np.ndarray:
        """``fit(x)`` then ``transform(x)``."""
        return self.fit(x).transform(x)

    def inverse_transform(self, x: Tensor | np.ndarray) -> Tensor | np.ndarray:
        """Undo ``transform``: map preprocessed data back to the input space."""
        t, was_numpy = self._check_input(x, "inverse_transform")
        return _like_input(self._inverse_transform(t), was_numpy)

    def set_params(self, **params: Any) -> _Preprocessor:
        """scikit-learn's ``set_params``; the next ``fit`` checks the values.

        A fitted estimator recomputes its fitted attributes from its statistics with the
        new parameters (a new ``eps`` needs no pass over the data).
        """
        super().set_params(**params)
        self._fitted = None
        return self

    def __sklearn_is_fitted__(self) -> bool:
        return self._moments is not None

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    # -- state

    def state_dict(self) -> dict[str, Tensor]:
        """Fitted state as tensors only: saves with ``torch.save``, loads with
        ``torch.load(weights_only=True)``.

        Raises
        ------
        NotFittedError
            If the estimator is not fitted.
        """
        attributes = self._attributes_or_raise("state_dict")
        state = {"n_samples_seen_": torch.tensor(attributes["n_samples_seen_"])}
        state.update({key: attributes[key] for key in self._state_keys})
        state.update(self._params_as_tensors())
        return state

    def load_state_dict(self, state: Mapping[str, Tensor]) -> _Preprocessor:
        """Restore a fitted state from ``state_dict``; works on an unfitted estimator.

        ``partial_fit`` may continue from the restored statistics. Feature names are not
        part of the state.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            If keys are missing or unexpected, shapes disagree, or the state was saved by
            an estimator with different parameters.
        """
        self._validate_params()
        name = f"{type(self).__name__}.load_state_dict"
        params = self._params_as_tensors()
        expected = {"n_samples_seen_", *self._state_keys, *params}
        missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
        if missing or unexpected:
            raise ValueError(f"{name}: missing keys {missing}, unexpected keys {unexpected}")
        for key, value in params.items():
            if not torch.equal(state[key].cpu().to(value.dtype), value):
                saved = self._param_from_tensor(key, state[key])
                raise ValueError(
                    f"{name}: the state was saved with {key}={saved!r}, but this estimator "
                    f"has {key}={getattr(self, key)!r}"
                )
        n = int(state["n_samples_seen_"])
        attributes: dict[str, Any] = {
            key: state[key].detach().to(torch.float64) for key in self._state_keys
        }
        d = attributes["mean_"].shape[0]
        for key, value in attributes.items():
            if value.shape not in ((d,), (d, d)):
                raise ValueError(f"{name}: {key} has shape {tuple(value.shape)}; mean_ has ({d},)")
        attributes.update(n_samples_seen_=n, n_features_in_=d)
        self._moments = _Moments(n, attributes["mean_"], self._m2_from_attributes(attributes))
        self._fitted = attributes
        self._forget_feature_names(d)
        return self

    # -- for subclasses and Pipeline

    def _validate_params(self) -> None:
        """Check the constructor's parameters (``check_range``/``check_choice``)."""

    def _params_as_tensors(self) -> dict[str, Tensor]:
        return {}

    def _param_from_tensor(self, key: str, value: Tensor) -> Any:
        return value.item()

    def _m2_from_attributes(self, attributes: dict[str, Any]) -> Tensor | None:
        return None

    def _finalize(self, m: _Moments) -> dict[str, Any]:
        raise NotImplementedError

    def _transform(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def _inverse_transform(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def _map_moments(self, m: _Moments) -> _Moments:
        raise NotImplementedError

    def _set_moments(self, m: _Moments) -> None:
        self._moments, self._fitted = m.project(self._kind), None
        self._forget_feature_names(m.mean.shape[0])

    def _forget_feature_names(self, n_features: int) -> None:
        """Fitted from statistics, not from a DataFrame: D features, no names."""
        self.n_features_in_ = n_features
        if hasattr(self, "feature_names_in_"):
            del self.feature_names_in_

    def _attributes(self) -> dict[str, Any]:
        """The fitted attributes, computed from the moments when first needed."""
        if self._moments is None:
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' or "
                "'partial_fit' with the training split (or 'load_state_dict') first."
            )
        if self._fitted is None:
            self._validate_params()
            m = self._moments
            fitted = {"n_samples_seen_": m.n, "n_features_in_": m.mean.shape[0]}
            fitted.update(self._finalize(m))
            self._fitted = fitted
        return self._fitted

    def _attributes_or_raise(self, method: str) -> dict[str, Any]:
        try:
            return self._attributes()
        except NotFittedError as error:
            raise NotFittedError(f"{type(self).__name__}.{method}: {error}") from None

    def _check_input(self, x: Any, method: str) -> tuple[Tensor, bool]:
        """Validate ``x`` for ``method``; returns it as a float tensor and whether it was NumPy.

        ``fit`` and ``partial_fit`` leave the check for NaN and Inf to ``_Moments.of_batch``.
        Feature names (``feature_names_in_``) are set and checked by scikit-learn's
        ``validate_data``, on the input as given.
        """
        where = f"{type(self).__name__}.{method}"
        fitting = method in ("fit", "partial_fit")
        if not fitting:
            self._attributes_or_raise(method)
        t, was_numpy = _as_tensor(x, where)
        _check_shape(t, where, two_d_only=self._two_d_only)
        if self._moments is not None and (method != "fit"):
            _check_features(t, where, self._moments.mean.shape[0], type(self).__name__)
        reset = method == "fit" or (method == "partial_fit" and self._moments is None)
        if reset or hasattr(self, "feature_names_in_") or not isinstance(x, Tensor | np.ndarray):
            # Skipped where it has nothing to check: it costs 40 µs, a small transform's time.
            validate_data(self, x, reset=reset, skip_check_array=True)
        if not fitting:
            _check_finite(t, where)
        return t, was_numpy

    def _accumulate(self, x: Any, method: str) -> None:
        self._validate_params()
        t, _ = self._check_input(x, method)
        batch = _Moments.of_batch(t, self._kind, f"{type(self).__name__}.{method}")
        self._moments = batch if self._moments is None else self._moments.merge(batch)
        self._fitted = None


def _check_shape(t: Tensor, where: str, *, two_d_only: bool) -> None:
    if t.ndim < 2:
        expected = "a 2-D N×D input" + ("" if two_d_only else ", or N×C×… with channels on dim 1")
        raise ValueError(  # "Reshape your data": scikit-learn's wording, which its checks match
            f"{where}: expects {expected}; got shape {tuple(t.shape)}. Reshape your data with "
            "x.reshape(-1, 1) for a single feature, or x.reshape(1, -1) for a single sample."
        )
    if two_d_only and t.ndim != 2:
        raise ValueError(
            f"{where}: expects a 2-D N×D input; got shape {tuple(t.shape)}. "
            "Flatten images first, e.g. x.reshape(len(x), -1)."
        )
    # scikit-learn's wording (its estimator checks match it).
    if t.shape[0] == 0:
        raise ValueError(
            f"{where}: empty input: 0 sample(s) (shape={tuple(t.shape)}) while a minimum of 1 "
            "is required."
        )
    if t.numel() == 0:
        raise ValueError(
            f"{where}: empty input: 0 feature(s) (shape={tuple(t.shape)}) while a minimum of 1 "
            "is required."
        )


def _check_features(t: Tensor, where: str, expected: int, fitted_by: str) -> None:
    if t.shape[1] != expected:
        raise ValueError(  # scikit-learn's wording (its estimator checks match it)
            f"{where}: X has {t.shape[1]} features, but {fitted_by} is expecting "
            f"{expected} features as input"
        )


class Center(OneToOneFeatureMixin, _Preprocessor):
    r"""Centering: subtract the training mean of every feature.

    .. math:: x \mapsto x - μ, \qquad μ = \frac{1}{N} \sum_{i=1}^{N} x^{(i)}

    On N×C×H×W input μ has one entry per channel (mean over N, H and W).

    Attributes
    ----------
    mean_ : Tensor, float64, shape (D,)
        μ.
    n_samples_seen_ : int
        Samples behind μ (N, or N·H·W per channel).
    n_features_in_ : int
        D (or C).

    Examples
    --------
    >>> x = torch.tensor([[1.0, 10.0], [3.0, 30.0]])
    >>> Center().fit_transform(x)
    tensor([[ -1., -10.],
            [  1.,  10.]])
    """

    _kind = "none"
    _state_keys = ("mean_",)

    mean_ = _fitted_attribute("mean_", "Per-feature training mean μ (float64).")

    def _finalize(self, m: _Moments) -> dict[str, Any]:
        return {"mean_": m.mean}

    def _transform(self, t: Tensor) -> Tensor:
        mean = _per_feature(self.mean_.to(t.device, _work_dtype(t)), t.ndim)
        return (t.to(mean.dtype) - mean).to(t.dtype)

    def _inverse_transform(self, t: Tensor) -> Tensor:
        mean = _per_feature(self.mean_.to(t.device, _work_dtype(t)), t.ndim)
        return (t.to(mean.dtype) + mean).to(t.dtype)

    def _map_moments(self, m: _Moments) -> _Moments:
        return _Moments(m.n, m.mean - self.mean_.to(m.mean.device), m.m2)


class Standardize(OneToOneFeatureMixin, _Preprocessor):
    r"""Per-dimension variance normalization: center, then divide by the training std.

    .. math::
        x \mapsto (x - μ) ⊘ σ, \qquad μ = \frac{1}{N} \sum_i x^{(i)}, \qquad
        σ^2 = \frac{1}{N} \sum_i (x^{(i)} - μ)^2

    σ² is the biased (1/N) variance, as in scikit-learn's ``StandardScaler`` and in batch
    normalization, so the standardized training data has mean 0 and (1/N) std 1. A feature
    with zero variance (up to rounding) gets σ = 1 — it is only centered, never divided by
    zero — and a ``UserWarning`` names it. On N×C×H×W input, μ and σ are per channel.

    Attributes
    ----------
    mean_ : Tensor, float64, shape (D,)
        μ.
    var_ : Tensor, float64, shape (D,)
        σ² (zero for a constant feature).
    scale_ : Tensor, float64, shape (D,)
        σ, with 1 for constant features.
    n_samples_seen_ : int
        Samples behind the statistics (N, or N·H·W per channel).
    n_features_in_ : int
        D (or C).

    Examples
    --------
    >>> x = torch.tensor([[1.0, 10.0], [3.0, 30.0]])
    >>> Standardize().fit_transform(x)
    tensor([[-1., -1.],
            [ 1.,  1.]])
    """

    _kind = "diag"
    _state_keys = ("mean_", "var_", "scale_")

    mean_ = _fitted_attribute("mean_", "Per-feature training mean μ (float64).")
    var_ = _fitted_attribute("var_", "Per-feature training variance σ² (1/N, float64).")
    scale_ = _fitted_attribute("scale_", "Per-feature σ, 1 where the variance is zero.")

    def _finalize(self, m: _Moments) -> dict[str, Any]:
        var = m.m2 / m.n
        constant = _is_constant(var, m.mean, m.n)
        _constant_feature_warning(
            "Standardize", constant, "scale_ is set to 1 there, so it is only centered"
        )
        scale = torch.where(constant, torch.ones_like(var), var.sqrt())
        return {"mean_": m.mean, "var_": var, "scale_": scale}

    def _m2_from_attributes(self, attributes: dict[str, Any]) -> Tensor:
        return attributes["var_"] * attributes["n_samples_seen_"]

    def _transform(self, t: Tensor) -> Tensor:
        dtype = _work_dtype(t)
        mean = _per_feature(self.mean_.to(t.device, dtype), t.ndim)
        scale = _per_feature(self.scale_.to(t.device, dtype), t.ndim)
        return ((t.to(dtype) - mean) / scale).to(t.dtype)

    def _inverse_transform(self, t: Tensor) -> Tensor:
        dtype = _work_dtype(t)
        mean = _per_feature(self.mean_.to(t.device, dtype), t.ndim)
        scale = _per_feature(self.scale_.to(t.device, dtype), t.ndim)
        return (t.to(dtype) * scale + mean).to(t.dtype)

    def _map_moments(self, m: _Moments) -> _Moments:
        scale = self.scale_.to(m.mean.device)
        mean = (m.mean - self.mean_.to(m.mean.device)) / scale
        if m.m2 is None:
            return _Moments(m.n, mean, None)
        if m.m2.ndim == 2:
            return _Moments(m.n, mean, m.m2 / torch.outer(scale, scale))
        return _Moments(m.n, mean, m.m2 / scale.square())


class Whiten(_Preprocessor):
    r"""PCA or ZCA whitening of N×D data: decorrelate the features and give them unit variance.

    With the training covariance C = (1/(N−1)) Σᵢ (x⁽ⁱ⁾ − μ)ᵀ(x⁽ⁱ⁾ − μ) = U Λ Uᵀ (columns of
    U the eigenvectors, Λ the eigenvalues in decreasing order):

    .. math::
        \text{PCA:}\quad x \mapsto (x - μ)\, U (Λ + ε)^{-1/2}
        \qquad
        \text{ZCA:}\quad x \mapsto (x - μ)\, U (Λ + ε)^{-1/2} U^\top

    The unbiased (N−1) covariance matches scikit-learn's ``PCA(whiten=True)``, which
    ``Whiten("pca")`` equals up to the sign of each component (and ε). With ε → 0 the
    whitened training data has identity covariance under the same (N−1) convention; ε > 0
    shrinks it to U Λ(Λ + ε)⁻¹ Uᵀ and keeps a singular covariance (a constant or redundant
    feature) invertible. ZCA's matrix is symmetric: it whitens while staying as close as
    possible to the original coordinates, so whitened images still look like images.

    C comes from one pass over blocks of rows: each block is shifted by an estimate of μ
    and multiplied in the input's precision (float32 for float32 and half-precision input,
    only the upper triangle), and the blocks are summed in float64; data larger than
    memory is read block by block (``fit`` on ``np.load(path, mmap_mode="r")``, or
    ``partial_fit`` over chunks). On float32 data C is within a few float32 roundings of
    the float64 value, even when the means dwarf the spread. The eigendecomposition is
    ``torch.linalg.eigh`` of C in float64. Each eigenvector's sign is fixed so that its
    entry of largest magnitude is positive (scikit-learn's ``svd_flip`` rule), which makes
    the result deterministic.

    Parameters
    ----------
    method : {"pca", "zca"}
        PCA whitening (rotate onto the principal axes) or ZCA (rotate back).
    eps : float > 0
        ε added to every eigenvalue before the inverse square root.

    Attributes
    ----------
    mean_ : Tensor, float64, shape (D,)
        μ.
    covariance_ : Tensor, float64, shape (D, D)
        C, with the 1/(N−1) normalization.
    explained_variance_ : Tensor, float64, shape (D,)
        Λ, decreasing (eigenvalues below zero from rounding are clipped to 0).
    components_ : Tensor, float64, shape (D, D)
        Uᵀ: row k is the k-th eigenvector.
    whitening_ : Tensor, float64, shape (D, D)
        W with transform x ↦ (x − μ) W: U(Λ+ε)^{-1/2} or U(Λ+ε)^{-1/2}Uᵀ.
    inverse_whitening_ : Tensor, float64, shape (D, D)
        W⁻¹ used by ``inverse_transform``: (Λ+ε)^{1/2}Uᵀ or U(Λ+ε)^{1/2}Uᵀ.
    n_samples_seen_ : int
        N.
    n_features_in_ : int
        D.

    Raises
    ------
    HyperparameterError
        From ``fit``, ``partial_fit`` or ``load_state_dict`` (the constructor only stores
        its parameters, as scikit-learn's do): if ``method`` is not "pca" or "zca", or
        ``eps`` is not a positive finite number. A ``ValueError``.

    Examples
    --------
    >>> x = torch.randn(500, 3, dtype=torch.float64) @ torch.tensor(
    ...     [[2.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.5, 0.1]], dtype=torch.float64)
    >>> z = Whiten("zca", eps=1e-12).fit_transform(x)
    >>> torch.allclose(torch.cov(z.T), torch.eye(3, dtype=torch.float64))
    True
    """

    _kind = "full"
    _two_d_only = True
    _state_keys = (
        "mean_",
        "covariance_",
        "explained_variance_",
        "components_",
        "whitening_",
        "inverse_whitening_",
    )

    mean_ = _fitted_attribute("mean_", "Per-feature training mean μ (float64).")
    covariance_ = _fitted_attribute("covariance_", "Training covariance C, 1/(N−1).")
    explained_variance_ = _fitted_attribute(
        "explained_variance_", "Eigenvalues Λ of C, decreasing."
    )
    components_ = _fitted_attribute("components_", "Eigenvectors of C as rows (Uᵀ).")
    whitening_ = _fitted_attribute("whitening_", "W in x ↦ (x − μ) W.")
    inverse_whitening_ = _fitted_attribute("inverse_whitening_", "W⁻¹ in z ↦ z W⁻¹ + μ.")

    def __init__(self, method: str = "pca", eps: float = 1e-5) -> None:
        self.method = method
        self.eps = eps

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Output column names: ZCA keeps the input's feature space and names; PCA's
        columns are components, "whiten0", "whiten1", … (as scikit-learn's PCA names its
        "pca0", …).

        Parameters
        ----------
        input_features : array-like of str or None
            Checked against ``feature_names_in_`` as in scikit-learn.

        Returns
        -------
        ndarray of str objects, shape (D,)
        """
        if self.method == "zca":
            return OneToOneFeatureMixin.get_feature_names_out(self, input_features)
        return ClassNamePrefixFeaturesOutMixin.get_feature_names_out(self, input_features)

    @property
    def _n_features_out(self) -> int:
        # PCA keeps all D components (an AttributeError when unfitted, for check_is_fitted).
        return self.n_features_in_

    def _validate_params(self) -> None:
        check_choice("method", self.method, _WHITEN_METHODS, owner="Whiten")
        check_range("eps", self.eps, 0.0, low_open=True, owner="Whiten")

    def _finalize(self, m: _Moments) -> dict[str, Any]:
        if m.n < 2:
            raise ValueError(f"Whiten: needs at least 2 samples for a covariance; got {m.n} sample")
        covariance = m.m2 / (m.n - 1)
        covariance = (covariance + covariance.T) / 2
        _constant_feature_warning(
            "Whiten",
            _is_constant(covariance.diagonal() * ((m.n - 1) / m.n), m.mean, m.n),
            f"the covariance is singular and eps={self.eps:g} keeps Λ + eps invertible "
            f"(that direction is scaled by 1/√eps = {self.eps**-0.5:.3g})",
        )
        eigenvalues, eigenvectors = _eigh(covariance)  # ascending, columns
        eigenvalues = eigenvalues.flip(0).clamp_min(0.0)
        components = eigenvectors.flip(1).T
        # svd_flip's rule: the entry of largest magnitude of each component is positive.
        largest = components.abs().argmax(dim=1, keepdim=True)
        components = components * components.gather(1, largest).sign()
        inverse_sqrt = (eigenvalues + self.eps).rsqrt()
        sqrt = (eigenvalues + self.eps).sqrt()
        if self.method == "pca":
            whitening = components.T * inverse_sqrt
            inverse_whitening = sqrt[:, None] * components
        else:
            whitening = (components.T * inverse_sqrt) @ components
            inverse_whitening = (components.T * sqrt) @ components
            # U D Uᵀ is symmetric; make it exactly so despite rounding.
            whitening = (whitening + whitening.T) / 2
            inverse_whitening = (inverse_whitening + inverse_whitening.T) / 2
        return {
            "mean_": m.mean,
            "covariance_": covariance,
            "explained_variance_": eigenvalues,
            "components_": components,
            "whitening_": whitening,
            "inverse_whitening_": inverse_whitening,
        }

    def _params_as_tensors(self) -> dict[str, Tensor]:
        # Tensors only, so the state loads with weights_only=True; method as its index.
        return {
            "method": torch.tensor(_WHITEN_METHODS.index(self.method)),
            "eps": torch.tensor(self.eps, dtype=torch.float64),
        }

    def _param_from_tensor(self, key: str, value: Tensor) -> Any:
        if key == "method":
            index = int(value)
            return _WHITEN_METHODS[index] if 0 <= index < len(_WHITEN_METHODS) else index
        return value.item()

    def _m2_from_attributes(self, attributes: dict[str, Any]) -> Tensor:
        return attributes["covariance_"] * (attributes["n_samples_seen_"] - 1)

    def _transform(self, t: Tensor) -> Tensor:
        dtype = _work_dtype(t)
        mean = self.mean_.to(t.device, dtype)
        return ((t.to(dtype) - mean) @ self.whitening_.to(t.device, dtype)).to(t.dtype)

    def _inverse_transform(self, t: Tensor) -> Tensor:
        dtype = _work_dtype(t)
        mean = self.mean_.to(t.device, dtype)
        return (t.to(dtype) @ self.inverse_whitening_.to(t.device, dtype) + mean).to(t.dtype)

    def _map_moments(self, m: _Moments) -> _Moments:
        w = self.whitening_.to(m.mean.device)
        mean = (m.mean - self.mean_.to(m.mean.device)) @ w
        return _Moments(m.n, mean, w.T @ m.m2 @ w)  # a Pipeline gives Whiten a full M2


# ------------------------------------------------------------------------------ pipeline


class Pipeline:
    """A chain of preprocessors applied in order: z = f_K(… f_2(f_1(x))).

    Parameters
    ----------
    steps : list of estimators, or of (name, estimator) pairs
        Unnamed steps are named after their class in lower case ("center", "whiten",
        "whiten-2" for a repeat, as scikit-learn's ``make_pipeline``).

    ``fit`` and ``partial_fit`` accumulate the moments of the pipeline's *input* and push
    them through the steps: each step's moments are those of its predecessor's output,
    computed exactly from the input's (every step is affine). So ``partial_fit`` over
    batches equals ``fit`` on their concatenation for the whole chain, in one pass over the
    data; feeding batches through steps that are still being fitted would not. (A step
    that is not the last one is refit on every ``partial_fit`` to carry the moments on;
    that costs an eigendecomposition per batch for a ``Whiten`` in the middle.)
    ``state_dict`` keys are "<step name>.<key>", plus "_input.*" for the input moments.

    Not a scikit-learn estimator (its constructor names and checks the steps, and its
    steps must be trainlab's): the steps are, so scikit-learn's own
    ``make_pipeline(Center(), Whiten())`` works too, without the one-pass streaming.

    Examples
    --------
    >>> pipe = Pipeline([Center(), ("white", Whiten("zca"))])
    >>> z = pipe.fit(torch.randn(100, 3)).transform(torch.randn(5, 3))
    >>> pipe["white"].components_.shape
    torch.Size([3, 3])
    """

    def __init__(self, steps: Sequence[_Preprocessor | tuple[str, _Preprocessor]]) -> None:
        self.steps = _named_steps(steps)
        self._moments: _Moments | None = None

    @property
    def named_steps(self) -> dict[str, _Preprocessor]:
        """The steps by name."""
        return dict(self.steps)

    def __getitem__(self, key: int | str) -> _Preprocessor:
        return self.named_steps[key] if isinstance(key, str) else self.steps[key][1]

    def __len__(self) -> int:
        return len(self.steps)

    def __repr__(self) -> str:
        return f"Pipeline({self.steps!r})"

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's parameter ``steps``."""
        return {"steps": self.steps}

    def __sklearn_is_fitted__(self) -> bool:
        return all(step._moments is not None for _, step in self.steps)

    @property
    def n_samples_seen_(self) -> int:
        """Samples behind the statistics of the first step."""
        return self._first_fitted("n_samples_seen_").n_samples_seen_

    @property
    def n_features_in_(self) -> int:
        """Number of input features D (or channels C)."""
        return self._first_fitted("n_features_in_").n_features_in_

    def fit(self, x: Tensor | np.ndarray, y: Any = None) -> Pipeline:
        """Fit every step on ``x`` (the training split); returns self."""
        self._moments = None
        self._accumulate(x, "fit")
        for _, step in self.steps:
            step._attributes()  # finalize now, so errors and warnings come from ``fit``
        return self

    def partial_fit(self, x: Tensor | np.ndarray, y: Any = None) -> Pipeline:
        """Merge one more batch into the input moments and refit every step; returns self."""
        self._accumulate(x, "partial_fit")
        return self

    def transform(self, x: Tensor | np.ndarray) -> Tensor | np.ndarray:
        """Apply f_1, …, f_K in order."""
        self._check_fitted("transform")
        x = _like_input(*_as_tensor(x, "Pipeline.transform"))  # a DataFrame's names go
        for _, step in self.steps:
            x = step.transform(x)
        return x

    def fit_transform(self, x: Tensor | np.ndarray, y: Any = None) -> Tensor | np.ndarray:
        """``fit(x)`` then ``transform(x)``."""
        return self.fit(x).transform(x)

    def inverse_transform(self, x: Tensor | np.ndarray) -> Tensor | np.ndarray:
        """Apply f_K⁻¹, …, f_1⁻¹ in order."""
        self._check_fitted("inverse_transform")
        x = _like_input(*_as_tensor(x, "Pipeline.inverse_transform"))
        for _, step in reversed(self.steps):
            x = step.inverse_transform(x)
        return x

    def state_dict(self) -> dict[str, Tensor]:
        """Every step's state under "<name>.", and the input moments under "_input."."""
        self._check_fitted("state_dict")
        state = {
            f"{name}.{key}": value
            for name, step in self.steps
            for key, value in step.state_dict().items()
        }
        if self._moments is not None:
            state["_input.n_samples_seen_"] = torch.tensor(self._moments.n)
            state["_input.mean_"] = self._moments.mean
            if self._moments.m2 is not None:
                state["_input.m2_"] = self._moments.m2
        return state

    def load_state_dict(self, state: Mapping[str, Tensor]) -> Pipeline:
        """Restore every step (and the input moments, when saved); returns self."""
        prefixes = [f"{name}." for name, _ in self.steps] + ["_input."]
        unexpected = sorted(k for k in state if not any(k.startswith(p) for p in prefixes))
        if unexpected:
            raise ValueError(f"Pipeline.load_state_dict: unexpected keys {unexpected}")
        for name, step in self.steps:
            prefix = f"{name}."
            step.load_state_dict(
                {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            )
        self._moments = None
        if "_input.n_samples_seen_" in state:
            m2 = state.get("_input.m2_")
            self._moments = _Moments(
                int(state["_input.n_samples_seen_"]),
                state["_input.mean_"].detach().to(torch.float64),
                None if m2 is None else m2.detach().to(torch.float64),
            )
        return self

    # -- internals

    def _kind(self) -> str:
        kinds = {step._kind for _, step in self.steps}
        return "full" if "full" in kinds else "diag" if "diag" in kinds else "none"

    def _accumulate(self, x: Any, method: str) -> None:
        for _, step in self.steps:
            step._validate_params()
        where = f"Pipeline.{method}"
        t, _ = _as_tensor(x, where)
        _check_shape(t, where, two_d_only=any(step._two_d_only for _, step in self.steps))
        if self._moments is not None and method != "fit":
            _check_features(t, where, self._moments.mean.shape[0], "Pipeline")
        batch = _Moments.of_batch(t, self._kind(), where)
        self._moments = batch if self._moments is None else self._moments.merge(batch)
        moments = self._moments
        for i, (_, step) in enumerate(self.steps):
            step._set_moments(moments)
            if i + 1 < len(self.steps):
                moments = step._map_moments(moments)

    def _check_fitted(self, method: str) -> None:
        if not self.__sklearn_is_fitted__():
            raise NotFittedError(
                f"Pipeline.{method}: this Pipeline instance is not fitted yet. Call 'fit' "
                "or 'partial_fit' with the training split (or 'load_state_dict') first."
            )

    def _first_fitted(self, attribute: str) -> _Preprocessor:
        self._check_fitted(attribute)
        return self.steps[0][1]


def _named_steps(
    steps: Sequence[_Preprocessor | tuple[str, _Preprocessor]],
) -> list[tuple[str, _Preprocessor]]:
    if isinstance(steps, (str, bytes)) or not isinstance(steps, Sequence) or not steps:
        raise ValueError(
            "Pipeline: steps must be a non-empty list of preprocessors or (name, "
            f"preprocessor) pairs; got {steps!r}"
        )
    named: list[tuple[str, _Preprocessor]] = []
    counts: dict[str, int] = {}
    for step in steps:
        if isinstance(step, tuple) and len(step) == 2 and isinstance(step[0], str):
            name, estimator = step
        else:
            estimator = step
            base = type(step).__name__.lower()
            counts[base] = counts.get(base, 0) + 1
            name = base if counts[base] == 1 else f"{base}-{counts[base]}"
        if not isinstance(estimator, _Preprocessor):
            raise TypeError(
                f"Pipeline: step {name!r} is {estimator!r}; expected a trainlab preprocessor "
                "(Center, Standardize or Whiten)"
            )
        if not name or "." in name or name.startswith("_"):
            raise ValueError(
                f"Pipeline: step name {name!r} must be non-empty, contain no '.', and not "
                "start with '_'"
            )
        named.append((name, estimator))
    names = [name for name, _ in named]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"Pipeline: step names must be unique; repeated: {duplicates}")
    if len({id(estimator) for _, estimator in named}) != len(named):
        raise ValueError("Pipeline: the same estimator object appears in two steps")
    return named


# ------------------------------------------------------------------------------- factory

_FACTORIES: dict[str, Callable[..., _Preprocessor]] = {
    "center": Center,
    "standardize": Standardize,
    "whiten_pca": lambda **params: Whiten(method="pca", **params),
    "whiten_zca": lambda **params: Whiten(method="zca", **params),
}

NAMES: tuple[str, ...] = tuple(_FACTORIES)
"""The config names of the preprocessors: center, standardize, whiten_pca, whiten_zca."""


def create(name: str, **params: Any) -> _Preprocessor:
    """The preprocessor a config names.

    Parameters
    ----------
    name : {"center", "standardize", "whiten_pca", "whiten_zca"}
        One of :data:`NAMES`.
    **params
        Passed to the constructor, e.g. ``eps`` for the whitening methods.

    Returns
    -------
    An unfitted ``Center``, ``Standardize`` or ``Whiten``.

    Raises
    ------
    HyperparameterError
        If ``name`` is not one of ``NAMES``, or a parameter is out of range (checked here,
        at the boundary, though the constructor only stores it; a ``ValueError``).
    """
    check_choice("name", name, NAMES, owner="preprocess")
    estimator = _FACTORIES[name](**params)
    estimator._validate_params()
    return estimator
