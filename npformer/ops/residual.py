"""Residual connection (He et al. 2016): the "Add" of "Add & Norm". Paper §3.1.

Forward
    z = x + s                 x: the sublayer's input, s: its (dropped-out) output

Backward: dz/dx = dz/ds = I, so the upstream gradient is copied to both
branches unchanged:
    dx = dz,  ds = dz
This is why deep residual stacks train: within a layer the identity path
carries the gradient past the sublayer without multiplying it by any weight
(with post-LN, the default, it still passes through each LayerNorm's backward).
"""
from typing import NamedTuple


class ResidualCache(NamedTuple):
    pass  # nothing: the backward needs no value from the forward


def residual_forward(x, s):
    if x.shape != s.shape:
        raise ValueError(f"residual: shapes differ, x {x.shape} vs sublayer output {s.shape}")
    return x + s, ResidualCache()


def residual_backward(dz, cache: ResidualCache):
    """Returns ``(dx, ds)``: the same gradient, to both branches."""
    return dz, dz
