"""Variants the package does not contain, for learners who know its code.

Each variant's forward is here (it returns ``(y, cache)``, like npformer's ops);
the learner writes ``<id>_backward(dy, cache)``. No answer is stored anywhere: the
check differentiates the forward numerically, so these exercises are graded by
the same machinery as the others, with nothing to copy. ``VARIANTS`` is data that
grader.py reads and grades; this module imports nothing of the grader's.

    rmsnorm                      y = gamma * x / sqrt(mean(x^2) + eps)       (Zhang & Sennrich 2019)
    gelu                         y = x * Phi(x), tanh form: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
    softmax_temperature          p = softmax(z / tau)
    cross_entropy_ignore_index   mean over targets != ignore_index of -log softmax(z)_target
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from npformer.backend import backend_of
from npformer.exercise.cases import Case, _r, _shapes


class RMSNormCache(NamedTuple):
    x: object      # (..., d) the input
    rrms: object   # (..., 1) 1 / sqrt(mean(x^2) + eps)
    gamma: object  # (d,)


def rmsnorm_forward(x, gamma, eps=1e-6):
    rrms = 1.0 / ((x * x).mean(axis=-1, keepdims=True) + eps) ** 0.5
    return x * rrms * gamma, RMSNormCache(x, rrms, gamma)


class GeluCache(NamedTuple):
    x: object      # the input
    t: object      # tanh(sqrt(2/pi) (x + 0.044715 x^3)), same shape


def gelu_forward(x):
    xp = backend_of(x).xp
    t = xp.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3))
    return 0.5 * x * (1 + t), GeluCache(x, t)


class SoftmaxTemperatureCache(NamedTuple):
    p: object      # (..., n) the output softmax(z / tau)
    tau: float


def softmax_temperature_forward(z, tau):
    zs = z / tau
    e = backend_of(z).xp.exp(zs - zs.max(axis=-1, keepdims=True))
    p = e / e.sum(axis=-1, keepdims=True)
    return p, SoftmaxTemperatureCache(p, float(tau))


class IgnoreIndexCache(NamedTuple):
    p: object        # (..., V) softmax of the logits
    targets: object  # (...) int, ignore_index where ignored
    keep: object     # (...) bool, targets != ignore_index
    n: int           # how many targets count


def cross_entropy_ignore_index_forward(logits, targets, ignore_index=-100):
    xp = backend_of(logits).xp
    keep = targets != ignore_index
    safe = xp.where(keep, targets, 0)
    m = logits.max(axis=-1, keepdims=True)
    e = xp.exp(logits - m)
    s = e.sum(axis=-1, keepdims=True)
    logp = xp.take_along_axis(logits - m - xp.log(s), safe[..., None], axis=-1)[..., 0]
    n = int(keep.sum())
    return -(logp * keep).sum() / n, IgnoreIndexCache(e / s, targets, keep, n)


def _rmsnorm_cases(rng, be):
    B, T, d = _shapes(rng)
    return [Case("random shapes, gamma != 1", rmsnorm_forward, dict(x=_r(rng, be, B, T, d),
                 gamma=1.0 + _r(rng, be, d, scale=0.5)), lambda f, dy, c: f["rmsnorm_backward"](dy, c),
                 context=dict(M=B * T), weights=lambda c: {"dx": [("x", c.x)]})]


def _gelu_cases(rng, be):
    B, T, d = _shapes(rng)
    return [Case("random inputs", gelu_forward, dict(x=_r(rng, be, B, T, d, scale=2.0)),
                 lambda f, dy, c: f["gelu_backward"](dy, c))]


def _softmax_temperature_cases(rng, be):
    B, T, _ = _shapes(rng)
    tau = float(rng.choice([0.5, 2.0, 3.0]))
    return [Case(f"tau = {tau}", softmax_temperature_forward, dict(z=_r(rng, be, B, T, 6, scale=2.0), tau=tau),
                 lambda f, dy, c: f["softmax_temperature_backward"](dy, c), context=dict(tau=tau),
                 weights=lambda c: {"dz": [("p", c.p)]})]


def _ignore_index_cases(rng, be):
    B, T, _ = _shapes(rng)
    V = int(rng.integers(5, 9))
    targets = rng.integers(0, V, (B, T))
    targets[-1, -2:] = -100
    regions = {"dlogits": [("the ignored targets", np.broadcast_to((targets == -100)[..., None], (B, T, V)))]}
    valid = int((targets != -100).sum())
    return [Case("ignored targets (-100)", cross_entropy_ignore_index_forward,
                 dict(logits=_r(rng, be, B, T, V, scale=2.0), targets=be.asarray(targets)),
                 lambda f, dy, c: f["cross_entropy_ignore_index_backward"](dy, c),
                 context=dict(n_valid=valid, n_all=targets.size, regions=regions))]


# id -> (forward, the function to write, what its stub says to return, cases, cache class)
VARIANTS = {
    "rmsnorm": (rmsnorm_forward, "rmsnorm_backward",
                "Return (dx, dgamma): dx (..., d) like x, dgamma (d,) like gamma. dy (..., d) is the gradient "
                "of y.", _rmsnorm_cases, RMSNormCache),
    "gelu": (gelu_forward, "gelu_backward",
             "Return dx, with x's shape. dy is the gradient of y, with x's shape too.", _gelu_cases, GeluCache),
    "softmax_temperature": (softmax_temperature_forward, "softmax_temperature_backward",
                            "Return dz (..., n), with z's shape; tau gets no gradient. dy (..., n) is the "
                            "gradient of p.", _softmax_temperature_cases, SoftmaxTemperatureCache),
    "cross_entropy_ignore_index": (cross_entropy_ignore_index_forward, "cross_entropy_ignore_index_backward",
                                   "Return dlogits (..., V), with the logits' shape; the targets get no "
                                   "gradient. dy is the gradient of the loss: a number or a 0-d array.",
                                   _ignore_index_cases, IgnoreIndexCache),
}


# id -> three hints, as for the exercises (catalog.py): the concept, the structure (which paths,
# which shapes, which sums, never the final formula), what to read.
HINTS = {
    "rmsnorm": ("RMSNorm is LayerNorm without the mean: x reaches y directly and through the one statistic "
                "mean(x^2); gamma scales what reaches x * rrms.",
                "dgamma sums over every position (gamma is shared by all); dx has x's shape. For dx, two paths: "
                "the direct one, where the row's rrms scales x, and the one through rrms, which every entry of "
                "the row moves; it adds a per-row term proportional to x. Find first how rrms changes with "
                "one x_j (the chain rule through the mean of x^2).",
                "Read docs/derivations.md §3.5 (LayerNorm): the same derivation with mu = 0."),
    "gelu": ("GELU is elementwise: each output entry depends on its own input entry only, so dx is dy times the "
             "derivative of GELU at x, entry by entry. GELU(x) is 0.5 x (1 + t), with t the tanh term.",
             "Differentiate 0.5 x (1 + t) by the product rule: one term with t held fixed, one through t. t is "
             "the tanh of a cubic in x, sqrt(2/pi) (x + 0.044715 x^3): the chain rule goes through the tanh, "
             "then the cubic. The derivative of tanh can be written with tanh itself, so the cached t is all "
             "you need.",
             "Read docs/derivations.md §3.6 (ReLU): the same pattern, a smooth gate."),
    "softmax_temperature": ("z / tau, then a softmax: the chain rule gives softmax's backward, then one more "
                            "factor.",
                            "Two steps, last first: the softmax's backward from dy to the scaled logits z / tau "
                            "(one sum over the last axis per row, as in the softmax exercise; the cache holds "
                            "p), then the division by tau, a constant, which scales what passes through it. "
                            "dz has z's shape.",
                            "Read docs/derivations.md §3.2 (Softmax)."),
    "cross_entropy_ignore_index": ("The mean, over the targets that count, of -log p_target, with log p the "
                                   "logits minus their logsumexp: differentiate one counted position's term "
                                   "with respect to its logits first. The logsumexp's derivative is the "
                                   "softmax.",
                                   "Ignored positions get zero gradient; the divisor is cache.n, not every "
                                   "position; dy, the loss's gradient (a number), scales everything.",
                                   "Read docs/derivations.md §6 (Softmax and the loss), with eps = 0."),
}
