"""Softmax over the last axis, as used for attention weights. Paper §3.2.1.

Forward (one row z of length n; every other axis is independent)
    p_i = exp(z_i - max(z)) / sum_k exp(z_k - max(z))
Subtracting max(z) changes nothing mathematically (it cancels) but keeps exp()
from overflowing, so logits of +-1e4 stay finite in float32.

Backward (Jacobian-vector product; never build the n x n Jacobian)
    dp_i/dz_j = p_i (delta_ij - p_j)
    dz_j = sum_i dp_i p_i (delta_ij - p_j) = p_j (dp_j - sum_i dp_i p_i)
    dz = p * (dp - sum(dp * p, axis=-1, keepdims=True))
"""
from typing import NamedTuple


class SoftmaxCache(NamedTuple):
    p: object  # the output: the backward needs only p, not z


def softmax(z, axis=-1):
    """The forward values only (no cache), for inference code."""
    xp = _xp(z)
    e = xp.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def softmax_forward(z):
    p = softmax(z)
    return p, SoftmaxCache(p)


def softmax_backward(dp, cache: SoftmaxCache):
    """Returns ``dz``."""
    p = cache.p
    return p * (dp - (dp * p).sum(axis=-1, keepdims=True))


def _xp(a):
    from npformer.backend import backend_of
    return backend_of(a).xp
