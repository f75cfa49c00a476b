"""Inverted dropout (Srivastava et al. 2014). Paper §5.4, P_drop = 0.1.

Forward, with keep ~ Bernoulli(1 - p) drawn per element:
    y = x * keep / (1 - p)
Scaling by 1/(1-p) at training time keeps E[y] = x, so inference is the identity.

Backward: y is linear in x with the same fixed mask, so
    dx = dy * keep / (1 - p)

p = 0 (or inference) is exactly the identity and stores no mask. The scaled
mask lives in the cache: the backward must use the very mask the forward drew.
"""
from typing import NamedTuple

from npformer.backend import backend_of


class DropoutCache(NamedTuple):
    scale: object  # keep / (1 - p) in x's dtype, or None for the identity


def dropout_forward(x, p, rng=None, keep=None):
    """Drop each element of x with probability p.

    Either ``rng`` (a backend generator) draws the mask, or ``keep`` (a boolean
    array shaped like x) fixes it, as gradient checks and tests do.
    """
    p = float(p)  # a NumPy float64 scalar would upcast float32 activations
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout: p must be in [0, 1), got {p}")
    if p == 0.0:
        return x, DropoutCache(None)
    if keep is None:
        if rng is None:
            raise ValueError("dropout: p > 0 needs an rng (or a fixed keep mask)")
        # One buffer: uniform draws u, overwritten in place by [u >= p] (as 1.0 / 0.0),
        # then by the scaled mask.
        scale = rng.random(x.shape, dtype=x.dtype)
        backend_of(x, scale).xp.greater_equal(scale, p, out=scale)
    elif keep.shape != x.shape:
        raise ValueError(f"dropout: keep mask shape {keep.shape} does not match x shape {x.shape}")
    else:
        scale = keep.astype(x.dtype)
    scale *= 1.0 / (1.0 - p)  # keep / (1 - p), same shape and dtype as x
    return x * scale, DropoutCache(scale)


def dropout_backward(dy, cache: DropoutCache):
    """Returns ``dx``."""
    return dy if cache.scale is None else dy * cache.scale
