"""Layer normalisation with gain gamma and bias beta (Ba et al. 2016). Paper §3.1.

Forward, over the last axis (d = d_model features of one position):
    mu    = (1/d) sum_j x_j
    var   = (1/d) sum_j (x_j - mu)^2          biased variance, as in the LayerNorm paper
    rstd  = 1 / sqrt(var + eps)               eps inside the square root
    xhat  = (x - mu) * rstd
    y     = gamma * xhat + beta               gamma, beta (d_model,)

Backward. With g = dy * gamma (the gradient reaching xhat) and, over the last
axis, mean_g = mean(g) and mean_gxhat = mean(g * xhat), both (..., 1):
    dbeta  = sum over positions of dy
    dgamma = sum over positions of dy * xhat
    dx     = rstd * (g - mean(g) - xhat * mean(g * xhat))
           = rstd * (g - mean_g - xhat * mean_gxhat)
The three terms of dx: x reaches the output directly (g), through the mean mu
(every x_j shifts mu by 1/d, hence -mean(g)), and through the variance
(d var/d x_j = 2 (x_j - mu)/d, hence -xhat * mean(g xhat)). Forgetting gamma in
g is a classic bug: the gradient is then only right when gamma == 1.

The cache holds xhat (..., d_model), an array as large as x itself, rstd
(..., 1), one number per position, and gamma (d_model,): exactly what the
backward reads. x and mu are not kept, since x - mu = xhat / rstd.
"""
from typing import NamedTuple

LAYERNORM_EPS = 1e-5


class LayerNormCache(NamedTuple):
    xhat: object   # (..., d_model) normalised input
    rstd: object   # (..., 1) reciprocal standard deviation per position
    gamma: object  # (d_model,)


def layernorm_forward(x, gamma, beta, eps=LAYERNORM_EPS):
    """y = gamma * (x - mu) / sqrt(var + eps) + beta over the last axis."""
    if gamma.shape != x.shape[-1:] or beta.shape != x.shape[-1:]:
        raise ValueError(f"layernorm: gamma and beta must be ({x.shape[-1]},) for x {x.shape}; "
                         f"got gamma {gamma.shape}, beta {beta.shape}")
    mu = x.mean(axis=-1, keepdims=True)  # (..., 1)
    xmu = x - mu  # (..., d_model)
    var = (xmu * xmu).mean(axis=-1, keepdims=True)  # (..., 1)
    rstd = 1.0 / (var + eps) ** 0.5  # (..., 1)
    xhat = xmu * rstd  # (..., d_model)
    y = gamma * xhat + beta  # (..., d_model)
    return y, LayerNormCache(xhat, rstd, gamma)


def layernorm_backward(dy, cache: LayerNormCache):
    """Returns ``(dx, dgamma, dbeta)``."""
    xhat, rstd, gamma = cache
    d = xhat.shape[-1]
    dbeta = dy.reshape(-1, d).sum(axis=0)  # (d_model,)
    dgamma = (dy * xhat).reshape(-1, d).sum(axis=0)  # (d_model,)
    g = dy * gamma  # (..., d_model) the gradient reaching xhat
    mean_g = g.mean(axis=-1, keepdims=True)  # (..., 1)
    mean_gxhat = (g * xhat).mean(axis=-1, keepdims=True)  # (..., 1)
    dx = rstd * (g - mean_g - xhat * mean_gxhat)  # (..., d_model)
    return dx, dgamma, dbeta
