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
        keep = rng.random(x.shape, dtype=x.dtype) >= p  # kept with probability 1 - p
    elif keep.shape != x.shape:
        raise ValueError(f"dropout: keep mask shape {keep.shape} does not match x shape {x.shape}")
    xp = backend_of(x, keep).xp
    scale = xp.divide(keep, 1.0 - p, dtype=x.dtype)  # keep / (1 - p), in x's dtype
    return x * scale, DropoutCache(scale)


def dropout_backward(dy, cache: DropoutCache):
    """Returns ``dx``."""
    return dy if cache.scale is None else dy * cache.scale
