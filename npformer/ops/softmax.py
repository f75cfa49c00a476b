"""Softmax over the last axis, optionally masked. Paper §3.2.1.

The one softmax of the model: attention's weights (ops/attention.py) and the
loss's distribution (ops/cross_entropy.py) are both computed by this module.

Forward (one row z of length n; every other axis is independent)
    m   = max_k z_k
    s   = sum_k exp(z_k - m)
    p_i = exp(z_i - m) / s
Subtracting m changes nothing mathematically (it cancels) but keeps exp()
from overflowing, so logits of +-1e4 stay finite in float32. The row's
log-sum-exp, log sum_k exp(z_k) = m + log s, is what a loss needs:
``softmax_terms`` hands m and s to such a caller.

Masked softmax (``mask`` True = "may be chosen"): masked entries get p_i = 0,
the row normalised over the others. They are filled with the dtype's most
negative finite number, finfo(dtype).min, not -inf: exp() of it minus the row
max is exactly 0, as with -inf, but a row with no unmasked entry, which would
have max -inf and z - max = -inf - (-inf) = NaN, has z - max = 0 instead and
comes out uniform. Such a row is then defined as all zero (p *= mask), so it
passes no gradient. The result is always finite.

Backward: the vector-Jacobian product dz = J^T dp, never building the n x n
Jacobian J_ij = dp_i/dz_j:
    dp_i/dz_j = p_i (delta_ij - p_j)              J = diag(p) - p p^T
    dz_j = sum_i dp_i p_i (delta_ij - p_j) = p_j (dp_j - sum_i dp_i p_i)
    dz = p * (dp - sum(dp * p, axis=-1, keepdims=True)) = p * (dp - row)
with row = sum_i dp_i p_i, one number per row (..., 1).
Reverse mode pulls the output's gradient dp back through J^T (the sum runs over
the output index i); the Jacobian-vector product J v would push an input
change forward instead. This J is symmetric, so the two coincide here, but not
in general: LayerNorm's Jacobian is not symmetric, and its J dy would be wrong.
Masked entries have p = 0, so dz = 0 there: the mask needs no backward of its own.

``out=`` gives a buffer of z's shape and dtype to write p (or dz) into; it may
be the input itself. Attention passes its (B, h, T_q, T_k) scores, which
become its weights, and in the backward dP, which becomes dS: one buffer for
each direction. A mask adds one temporary: the scores with the masked entries
filled (``where``), which the buffer then receives as exp(z - m).
"""
from typing import NamedTuple

from npformer.backend import backend_of


class SoftmaxCache(NamedTuple):
    p: object  # (..., n) the output: the backward needs only p, not z


def softmax_terms(z, mask=None, out=None):
    """``(p, m, s)``: p = softmax(z) (masked), with the row max m and the shifted sum
    s = sum_k exp(z_k - m), both (..., 1), for a caller that needs log-sum-exp = m + log s."""
    xp = backend_of(z, mask).xp
    if mask is not None:  # a masked z_k becomes finfo(dtype).min, so m is the max over the others
        z = xp.where(mask, z, xp.finfo(z.dtype).min)  # -inf in effect, but no NaN in an all-masked row
    m = z.max(axis=-1, keepdims=True)  # (..., 1)
    e = xp.exp(xp.subtract(z, m, out=out), out=out)  # (..., n)  exp(z - m), written into out if given
    s = e.sum(axis=-1, keepdims=True)  # (..., 1)
    p = xp.divide(e, s, out=e)  # (..., n)  exp(z - m) / s, in e's buffer
    if mask is not None:
        p *= mask  # only changes rows with no unmasked entry: uniform -> 0
    return p, m, s


def softmax_forward(z, mask=None, out=None):
    """p = softmax(z) over the last axis, 0 where ``mask`` is False. Returns ``(p, cache)``."""
    p, _, _ = softmax_terms(z, mask, out)
    return p, SoftmaxCache(p)


def softmax_backward(dp, cache: SoftmaxCache, out=None):
    """Returns ``dz`` = p * (dp - sum(dp * p)); ``out`` may be ``dp`` itself."""
    p = cache.p
    xp = backend_of(dp, p).xp
    row = (dp * p).sum(axis=-1, keepdims=True)  # (..., 1)  sum_i dp_i p_i
    dz = xp.multiply(p, xp.subtract(dp, row, out=out), out=out)  # (..., n)  p * (dp - row), into out if given
    return dz
