"""The residual connection around every sublayer: "Add & Norm". Paper §3.1, §5.4.

Post-LN, as in the paper (and the default):
    y = LayerNorm(x + Dropout(Sublayer(x)))
This module applies the part after the sublayer, given s = Sublayer(x):
    s' = Dropout(s);  z = x + s';  y = LayerNorm(z; gamma, beta)

Backward, the same three ops in reverse:
    dz, dgamma, dbeta = layernorm_backward(dy)
    dx, ds' = dz, dz                                 (the residual copies the gradient)
    ds = dropout_backward(ds')
The caller adds dx to the gradient that reaches x through the sublayer itself.
"""
from typing import NamedTuple

from npformer.ops.dropout import dropout_backward, dropout_forward
from npformer.ops.layernorm import layernorm_backward, layernorm_forward
from npformer.ops.residual import residual_backward, residual_forward


class AddNormCache(NamedTuple):
    drop: object
    add: object
    norm: object


def add_norm_forward(x, s, gamma, beta, p_drop, rng):
    """LayerNorm(x + Dropout(s)). Returns ``(y, cache)``."""
    s, drop = dropout_forward(s, p_drop, rng)
    z, add = residual_forward(x, s)
    y, norm = layernorm_forward(z, gamma, beta)
    return y, AddNormCache(drop, add, norm)


def add_norm_backward(dy, cache: AddNormCache):
    """Returns ``(dx, ds, dgamma, dbeta)``."""
    dz, dgamma, dbeta = layernorm_backward(dy, cache.norm)
    dx, ds = residual_backward(dz, cache.add)
    ds = dropout_backward(ds, cache.drop)
    return dx, ds, dgamma, dbeta


def subdict(params: dict, prefix: str) -> dict:
    """The entries of ``params`` under ``prefix``, with the prefix removed."""
    n = len(prefix)
    return {k[n:]: v for k, v in params.items() if k.startswith(prefix)}


def prefixed(grads: dict, prefix: str) -> dict:
    return {prefix + k: v for k, v in grads.items()}
