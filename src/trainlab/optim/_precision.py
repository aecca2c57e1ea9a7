"""float16 and bfloat16 parameters: their optimizer state and update in float32.

float16's smallest positive number is 2⁻²⁴ ≈ 6·10⁻⁸: an ε of 1e-8 rounds to 0, and so does
(1−β₂)·g² = 10⁻³·g² for |g| < 8·10⁻³. An RMSProp or Adam step computed in float16 then
divides by zero: a NaN where g = 0, an inf where g is small. bfloat16 has float32's range
but 8 significant bits: β₂ = 0.999 rounds to 1, so s would never decay. Hence, for a
float16 or bfloat16 parameter w, trainlab keeps the optimizer state in float32 and
computes the update in float32 from w and g converted exactly:

    w ← round(w₃₂ − Δ₃₂),    w₃₂ = float32(w), g₃₂ = float32(g), state in float32

so a half-precision step is the float32 step rounded once. (The weights themselves stay
in half precision: an update smaller than half a unit in the last place of w is lost.
When that matters, keep float32 weights and compute the forward pass in half precision
with ``torch.autocast``.)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch

__all__ = ["LOW_PRECISION", "state_dtype", "in_float32"]

#: Parameter dtypes whose optimizer state and update are kept in float32.
LOW_PRECISION = (torch.float16, torch.bfloat16)


def state_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype of the optimizer state of a parameter of ``dtype``: float32 for float16
    and bfloat16, ``dtype`` itself otherwise."""
    return torch.float32 if dtype in LOW_PRECISION else dtype


def _tensors(x: Any) -> list[torch.Tensor] | None:
    """The tensors of a tensor or a TensorList; None for anything else (a KernelTensor
    records an expression: its compiled kernel promotes to the state's float32 itself)."""
    if isinstance(x, torch.Tensor):
        return [x]
    tensors = getattr(x, "tensors", None)
    return tensors if isinstance(tensors, list) else None


def _as(x: Any, tensors: list[torch.Tensor]) -> Any:
    return tensors[0] if isinstance(x, torch.Tensor) else type(x)(tensors)


def in_float32(update: Callable[..., None]) -> Callable[..., None]:
    """Decorate an optimizer's ``update(p, g, state, group, step)`` so that it runs in
    float32 when ``p`` is float16 or bfloat16 (see the module's notes); for other dtypes
    it is called as it is."""

    @functools.wraps(update)
    def wrapped(self: Any, p: Any, g: Any, state: dict, group: dict, step: Any) -> None:
        params = _tensors(p)
        if not params or params[0].dtype not in LOW_PRECISION:
            update(self, p, g, state, group, step)
            return
        p32 = [t.float() for t in params]
        g32 = [t.float() for t in _tensors(g)]
        state32, back = {}, []  # state kept in half precision (e.g. loaded): back after
        for key, value in state.items():
            tensors = _tensors(value)
            if tensors is None or tensors[0].dtype == torch.float32:
                state32[key] = value
                continue
            converted = [t.float() for t in tensors]
            state32[key] = _as(value, converted)
            back.append((tensors, converted))
        update(self, _as(p, p32), _as(g, g32), state32, group, step)
        torch._foreach_copy_(params, p32)  # the one rounding
        for tensors, converted in back:
            torch._foreach_copy_(tensors, converted)

    return wrapped
