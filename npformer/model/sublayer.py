"""The residual connection around every sublayer: "Add & Norm". Paper §3.1, §5.4.

Where the LayerNorm sits is the config's ``norm``:

    post (the paper's, the default):  y = LayerNorm(x + Dropout(Sublayer(x)))
    pre  (Xiong et al. 2020):         y = x + Dropout(Sublayer(LayerNorm(x)))
                                      and each stack ends with one more LayerNorm

A layer wraps each sublayer in two calls, one on each side of it:

    u, c_in  = sublayer_in_forward(x, ...)     post: u = x        pre: u = LayerNorm(x)
    s        = Sublayer(u)
    y, c_out = sublayer_out_forward(x, s, ...) post: y = LayerNorm(x + Dropout(s))
                                               pre:  y = x + Dropout(s)

Backward, the same in reverse:

    dx, ds, g_out = sublayer_out_backward(dy, c_out)   post: dz = LN'(dy); dx = dz, ds = Dropout'(dz)
                                                       pre:  dx = dy,       ds = Dropout'(dy)
    du            = Sublayer'(ds)
    dx_u, g_in    = sublayer_in_backward(du, c_in)     post: dx_u = du     pre: dx_u = LN'(du)
    dx            = dx + dx_u

g_out and g_in hold the LayerNorm's {"gamma", "beta"} gradients on the side
where it sits, and are empty on the other. The difference that matters: in
pre-LN, dx = dy + (path through the sublayer), so the upstream gradient
reaches the layer's input unchanged; in post-LN every layer's LN' sits on the
residual path itself (docs/derivations.md, "Pre-LN and post-LN").
"""
from typing import NamedTuple

from npformer import ops  # the ops it uses, read at call time (npformer/ops/__init__.py)

NORMS = ("post", "pre")


def validate_norm(norm: str) -> str:
    if norm not in NORMS:
        raise ValueError(f"norm: expected 'post' (LayerNorm after the residual, the paper's) or 'pre' "
                         f"(LayerNorm before the sublayer), got {norm!r}")
    return norm


class AddNormCache(NamedTuple):
    drop: object
    add: object
    norm: object


class AddCache(NamedTuple):
    drop: object
    add: object


def add_norm_forward(x, s, gamma, beta, p_drop, rng):
    """LayerNorm(x + Dropout(s)). Returns ``(y, cache)``."""
    s, drop = ops.dropout_forward(s, p_drop, rng)
    z, add = ops.residual_forward(x, s)
    y, norm = ops.layernorm_forward(z, gamma, beta)
    return y, AddNormCache(drop, add, norm)


def add_norm_backward(dy, cache: AddNormCache):
    """Returns ``(dx, ds, dgamma, dbeta)``."""
    dz, dgamma, dbeta = ops.layernorm_backward(dy, cache.norm)
    dx, ds = ops.residual_backward(dz, cache.add)
    ds = ops.dropout_backward(ds, cache.drop)
    return dx, ds, dgamma, dbeta


def sublayer_in_forward(x, gamma, beta, norm: str):
    """The sublayer's input u: LayerNorm(x) for pre-LN, x itself for post-LN. Returns ``(u, cache)``."""
    if validate_norm(norm) == "pre":
        return ops.layernorm_forward(x, gamma, beta)  # (..., d_model)
    return x, None


def sublayer_in_backward(du, cache):
    """Returns ``(dx, {"gamma", "beta"} or {})``."""
    if cache is None:
        return du, {}
    dx, dgamma, dbeta = ops.layernorm_backward(du, cache)
    return dx, {"gamma": dgamma, "beta": dbeta}


def sublayer_out_forward(x, s, gamma, beta, norm: str, p_drop, rng):
    """The layer's output from its input x and the sublayer's output s. Returns ``(y, cache)``."""
    if validate_norm(norm) == "post":
        return add_norm_forward(x, s, gamma, beta, p_drop, rng)  # its own post-LN case: a plain call
    s, drop = ops.dropout_forward(s, p_drop, rng)
    y, add = ops.residual_forward(x, s)  # (..., d_model)
    return y, AddCache(drop, add)


def sublayer_out_backward(dy, cache):
    """Returns ``(dx, ds, {"gamma", "beta"} or {})``: dx along the residual path only."""
    if isinstance(cache, AddNormCache):
        dx, ds, dgamma, dbeta = add_norm_backward(dy, cache)  # its own post-LN case: a plain call
        return dx, ds, {"gamma": dgamma, "beta": dbeta}
    dx, ds = ops.residual_backward(dy, cache.add)
    return dx, ops.dropout_backward(ds, cache.drop), {}


class StackCache(NamedTuple):
    layers: list        # one cache per layer
    final_norm: object  # LayerNormCache of the stack's last LayerNorm (pre-LN), else None


def final_norm_forward(x, params, stack: str, norm: str):
    """Pre-LN ends the stack with LayerNorm(x; "<stack>.norm.*"); post-LN's last layer already normalised."""
    if validate_norm(norm) == "pre":
        return ops.layernorm_forward(x, params[f"{stack}.norm.gamma"], params[f"{stack}.norm.beta"])
    return x, None


def final_norm_backward(dy, cache, stack: str):
    """Returns ``(dx, grads)`` with grads keyed "<stack>.norm.*" (none for post-LN)."""
    if cache is None:
        return dy, {}
    dx, dgamma, dbeta = ops.layernorm_backward(dy, cache)
    return dx, {f"{stack}.norm.gamma": dgamma, f"{stack}.norm.beta": dbeta}


def subdict(params: dict, prefix: str) -> dict:
    """The entries of ``params`` under ``prefix``, with the prefix removed."""
    n = len(prefix)
    return {k[n:]: v for k, v in params.items() if k.startswith(prefix)}


def prefixed(grads: dict, prefix: str) -> dict:
    return {prefix + k: v for k, v in grads.items()}
