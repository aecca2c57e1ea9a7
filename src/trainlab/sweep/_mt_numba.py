"""The compiled kernel of :mod:`trainlab.sweep._mt` (imported only where numba is).

The words are uint32 with uint32 constants (16 to a vector). Each model's threshold is an
integer, so the comparisons are exact integer ones (a 53-bit draw as its two 32-bit
halves): ``(d mod 2⁵³)·2⁻⁵³ < q`` ⇔ ``d mod 2⁵³ < ⌈q·2⁵³⌉`` (scaling by a power of two
is exact), and likewise ``(w mod 2²⁴)·2⁻²⁴ < q`` ⇔ ``w mod 2²⁴ < ⌈q·2²⁴⌉``."""

from __future__ import annotations

import numpy as np
from numba import njit

N, M = 624, 397
_UPPER, _LOWER, _A = np.uint32(0x80000000), np.uint32(0x7FFFFFFF), np.uint32(0x9908B0DF)
_ONE = np.uint32(1)
_B, _C = np.uint32(0x9D2C5680), np.uint32(0xEFC60000)
_S11, _S7, _S15, _S18 = np.uint32(11), np.uint32(7), np.uint32(15), np.uint32(18)
_LOW21, _LOW24 = np.uint32(0x1FFFFF), np.uint32(0xFFFFFF)


@njit(cache=True, nogil=True, boundscheck=False)
def twist(s):
    """at::mt19937::next_state on one state (624 words), branch-free so it vectorizes."""
    for i in range(N - M):
        y = (s[i] & _UPPER) | (s[i + 1] & _LOWER)
        s[i] = s[i + M] ^ (y >> _ONE) ^ ((y & _ONE) * _A)
    for i in range(N - M, N - 1):
        y = (s[i] & _UPPER) | (s[i + 1] & _LOWER)
        s[i] = s[i + M - N] ^ (y >> _ONE) ^ ((y & _ONE) * _A)
    y = (s[N - 1] & _UPPER) | (s[0] & _LOWER)
    s[N - 1] = s[M - 1] ^ (y >> _ONE) ^ ((y & _ONE) * _A)


@njit(cache=True, nogil=True, boundscheck=False)
def temper(src, dst):
    """dst = the tempered words src (slices: indices from a range, which numba knows are
    not negative, so the loop vectorizes; offset indices such as s[start + t] would not,
    2.6× slower)."""
    for t in range(src.shape[0]):
        y = src[t]
        y ^= y >> _S11
        y ^= (y << _S7) & _B
        y ^= (y << _S15) & _C
        y ^= y >> _S18
        dst[t] = y


@njit(cache=True, nogil=True, boundscheck=False)
def words(s, counters, k, buf):
    """Fill ``buf`` with generator k's next words, as torch draws them
    (``counters[k]`` = torch's ``left``, ``next``)."""
    left, nxt = counters[k, 0], counters[k, 1]
    i, n = 0, buf.shape[0]
    while i < n:
        if left == 1:  # torch's next draw twists, then reads word 0 with left = 624
            twist(s)
            left, nxt = N + 1, 0
        take = min(left - 1, n - i)
        temper(s[nxt : nxt + take], buf[i : i + take])
        i += take
        nxt += take
        left -= take
    counters[k, 0], counters[k, 1] = left, nxt


@njit(cache=True, nogil=True, boundscheck=False)
def masks(state, counters, models, mem, models_first, limits, kept, double):
    """For each k in ``models``, model k's mask of one step ([rows, cols]) in ``mem``, a
    C-contiguous [K, rows, cols] (``models_first``) or [rows, K, cols] array: ``kept[k]``
    where generator k's draw is below ``limits[k]``, else 0. ``double``: two words an
    element, the 53-bit draw of ``bernoulli_`` with a Python float; else one word, the
    24-bit draw of ``torch.bernoulli`` of a float32 tensor. A negative limit draws nothing
    and keeps all (p = 0: no Dropout in the sequential model)."""
    rows = mem.shape[1] if models_first else mem.shape[0]
    cols = mem.shape[2]
    buf = np.empty(rows * cols * (2 if double else 1), dtype=np.uint32)
    zero = np.float32(0.0)
    for k in models:
        value = kept[k]
        if limits[k] >= 0:
            words(state[k], counters, k, buf)
        top = np.uint32(limits[k] >> 32)  # a 53-bit draw: its halves against the limit's
        bottom = np.uint32(limits[k] & 0xFFFFFFFF)
        limit = np.uint32(limits[k] & 0xFFFFFFFF)
        for r in range(rows):
            row = mem[k, r] if models_first else mem[r, k]  # contiguous: vectorizes
            if limits[k] < 0:
                row[:] = value
            elif double:
                b = buf[2 * r * cols : 2 * (r + 1) * cols]
                for c in range(cols):
                    hi = b[2 * c] & _LOW21
                    hit = (hi < top) | ((hi == top) & (b[2 * c + 1] < bottom))
                    row[c] = value if hit else zero
            else:
                b = buf[r * cols : (r + 1) * cols]
                for c in range(cols):
                    row[c] = value if (b[c] & _LOW24) < limit else zero
