"""Naming the mistake: generic detectors on E = G - N, the difference between a
backward's gradient G (a learner's in ``npformer exercise check``, anyone's in
``check_gradients``) and the numerical one N (central differences, float64).

Each detector looks for one shape of error that a real bug leaves behind:

    scale       G = r N for a constant r, named where r is one of the usual suspects
                (sqrt(d_model), sqrt(d_k), 1/(1-p), N_valid/N_all, M = B*T, -1, 2, ...);
                the advice (multiply by 1/r) follows from the measured r
    transpose   G^T = N (last two axes): a matmul's operands in the wrong order; the
                case names the gradient's product in the op's forward (x^T dy, not dy^T x)
    operands    G equals one of the case's wrong operand orders of the gradient's
                product (dy W where the gradient is dy W^T: a square W hides it)
    region      E = 0 outside one region the exercise names (masked keys, pad
                targets, repeated ids, the future positions, ReLU's kink, ...)
    axis        E is the same for every entry along one axis: a term that is
                constant along that axis (a sum or a mean) is missing or extra
    weights     E = w * c with c constant along the last axis, for a named w
                (softmax's p, LayerNorm's xhat, attention's P K / sqrt(d_k)): the
                "- sum(...)" term is wrong
    zeros       G is all zero
    where       otherwise: which batch rows, positions and features are wrong

Every detector returns a ``Finding`` with a ``tag`` (machine-readable, stable: the
tests assert on it) and a sentence for the learner. Nothing here knows the
answer of any exercise: it only sees G, N and what the case names (sizes, regions,
weights, the products of its forward and their wrong operand orders). Where the
advice is an operation on G (multiply by a factor, transpose), ``Finding.fix``
holds it, so that a test can apply it and see the error vanish.
"""
from __future__ import annotations

import math
import textwrap
from dataclasses import asdict, dataclass

import numpy as np

TOL_PASS = 1e-7   # relative error at or below: right
TOL_BUG = 1e-3    # at or above: a bug, not finite-difference noise


@dataclass
class Finding:
    gradient: str      # which input's gradient ("dx", "dgamma", "dp.W_Q"), or the function
    case: str          # which case ("T = 1", "a look-ahead mask with a fully masked row")
    where: str         # where it is wrong ("every entry", "the pad targets (6 of 42 entries)")
    diagnosis: str     # what is wrong, in words
    tag: str           # the detector's name: "scale:sqrt(d_k)", "region:the pad targets", ...
    rel_error: float | None = None
    fix: tuple | None = None   # the advice as an operation on the learner's gradient, where it is one:
    #                            ("scale", c): multiply it by c; ("transpose",): swap its last two axes

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        err = "" if self.rel_error is None else f" (relative error {self.rel_error:.1e})"
        return f"{self.gradient} [{self.case}]: {self.where}{err}\n    {self.diagnosis}"

    def indented(self, prefix: str = "  ") -> str:
        """The finding as a block of a report: every line after ``prefix``."""
        return textwrap.indent(str(self), prefix)


def apply_fix(fix: tuple, G):
    """What a finding's advice says to do to the learner's gradient G: ("scale", c) multiplies it by c,
    ("transpose",) swaps its last two axes. The tests apply it to see the error vanish."""
    if fix[0] == "scale":
        return G * fix[1]
    if fix == ("transpose",):
        return np.swapaxes(G, -1, -2)
    raise ValueError(f"unknown advice {fix!r}")


def rel_error(g, n, floor: float = 0.0) -> float:
    """max |g - n| / max(|g|, |n|, floor): the gradient check's measure, per tensor. The floor
    (1% of the largest gradient of the case, as in npformer.verify) keeps a gradient that is
    truly zero (b_k's: softmax ignores a shift shared by all keys) from dividing noise by noise."""
    if np.isnan(g).any() or np.isnan(n).any():
        return float("inf")
    scale = max(float(np.abs(g).max(initial=0.0)), float(np.abs(n).max(initial=0.0)), floor)
    return 0.0 if scale == 0.0 else float(np.abs(g - n).max(initial=0.0)) / scale


def scale_suspects(ctx: dict) -> list:
    """(value, name) of the constant factors a bug typically multiplies a gradient by."""
    out = []
    if "d_model" in ctx:
        d = ctx["d_model"]
        out += [(math.sqrt(d), f"sqrt(d_model) = sqrt({d})"), (1 / math.sqrt(d), f"1/sqrt(d_model) = 1/sqrt({d})")]
    if "d_k" in ctx:
        d = ctx["d_k"]
        out += [(math.sqrt(d), f"sqrt(d_k) = sqrt({d})"), (1 / math.sqrt(d), f"1/sqrt(d_k) = 1/sqrt({d})"),
                (float(d), f"d_k = {d}"), (1 / d, f"1/d_k = 1/{d}")]
    if "p" in ctx:
        p = ctx["p"]
        out += [(1 / (1 - p), f"1/(1-p) = 1/(1-{p})"), (1 - p, f"1-p = {1 - p:g}"),
                ((1 - p) ** 2, f"(1-p)^2 = {(1 - p) ** 2:g}")]
    if "n_valid" in ctx:
        nv, na = ctx["n_valid"], ctx["n_all"]
        if nv != na:
            out += [(nv / na, f"N_valid/N_all = {nv}/{na}"), (na / nv, f"N_all/N_valid = {na}/{nv}")]
        out += [(float(nv), f"N_valid = {nv}"), (1 / nv, f"1/N_valid = 1/{nv}")]
    if "n_mean" in ctx:
        n = ctx["n_mean"]
        out += [(float(n), f"n = {n} (the count a mean over the last axis divides by)"), (1 / n, f"1/n = 1/{n}")]
    if "dloss" in ctx:  # a scalar output's upstream gradient, not multiplied in (or twice)
        u = ctx["dloss"]
        out += [(u, f"dloss = {u:.6g} (the upstream gradient)"), (1 / u, f"1/dloss = 1/{u:.6g}")]
    if "tau" in ctx:
        t = ctx["tau"]
        out += [(1 / t, f"1/tau = 1/{t}"), (float(t), f"tau = {t}")]
    if "M" in ctx:
        m = ctx["M"]
        out += [(float(m), f"M = B*T = {m} (positions)"), (1 / m, f"1/M = 1/{m}")]
    return out + [(-1.0, "-1"), (2.0, "2"), (0.5, "1/2")]


_TINY = np.finfo(np.float64).tiny


def _close(a, b, scale) -> bool:
    return float(np.abs(a - b).max(initial=0.0)) <= 1e-6 * max(scale, 1e-300)


def _count(region, size) -> str:
    k = int(np.count_nonzero(region))
    return f"{k} of {size} entries"


def _where(E, scale, axes_names) -> str:
    """Which indices along each axis carry an error, where that is a strict subset."""
    wrong = np.abs(E) > 1e-6 * scale
    k = int(wrong.sum())
    parts = []
    for ax in range(E.ndim):
        other = tuple(i for i in range(E.ndim) if i != ax)
        hit = np.flatnonzero(wrong.any(axis=other)) if other else np.flatnonzero(wrong)
        if 0 < len(hit) < E.shape[ax]:
            name = axes_names[ax] if ax < len(axes_names) else f"axis {ax}"
            shown = ", ".join(str(int(i)) for i in hit[:6]) + (", ..." if len(hit) > 6 else "")
            parts.append(f"{name} {shown} only")
    first = np.unravel_index(int(np.argmax(np.abs(E))), E.shape)
    where = f"{k} of {E.size} entries wrong, the largest at index {tuple(int(i) for i in first)}"
    return where + ("; " + "; ".join(parts) if parts else "")


AXES = {1: ("feature",), 2: ("row", "column"), 3: ("batch row b", "position t", "feature"),
        4: ("batch row b", "head", "query position", "last axis")}   # the axes' names where a case gives none


def diagnose(grad: str, case: str, G, N, ctx: dict, axes: tuple = (), floor: float = 0.0) -> Finding | None:
    """The finding for one gradient, or None when it is right (relative error <= TOL_PASS)."""
    G, N = np.asarray(G), np.asarray(N, dtype=np.float64)  # G's own dtype: every product with N is float64
    axes = axes or AXES.get(N.ndim, ())
    if G.shape != N.shape:
        if G.shape == N.shape[:-2] + N.shape[-2:][::-1]:   # the last two axes swapped (never equal below 2-D)
            return transpose_finding(grad, case, ctx, "its shape",
                                     f"has shape {G.shape}, the transpose of the input's {N.shape}")
        return Finding(grad, case, "its shape", f"shape {G.shape}, but the input is {N.shape}: a gradient has "
                       "its input's shape (sum over the axes that broadcasting added)", "shape")
    if not np.isfinite(G).all():
        bad = ~np.isfinite(G)
        return Finding(grad, case, _count(bad, G.size), "contains NaN or inf: a division by zero (a fully masked "
                       "row, a zero count) or an overflow (exp without subtracting the max)", "nonfinite")
    err = rel_error(G, N, floor)
    if err <= TOL_PASS:
        return None
    scale = max(float(np.abs(G).max(initial=0.0)), float(np.abs(N).max(initial=0.0)), floor)
    nscale = float(np.abs(N).max(initial=0.0))
    f = _detect(grad, case, G, N, G - N, ctx, scale, nscale, axes)
    f.rel_error = err
    return f


def _detect(grad, case, G, N, E, ctx, scale, nscale, axes) -> Finding:
    if not np.any(G):
        return Finding(grad, case, "every entry", "is all zero, but the true gradient is not: the input does "
                       "reach the output (is a path, or an accumulation into it, missing?)", "zeros")
    if nscale == 0.0:
        return Finding(grad, case, _where(E, scale, axes), "should be all zero here (this input does not reach "
                       "the output in this case), but is not", "nonzero")
    # scale: G = r N
    r = float((G * N).sum() / (N * N).sum())
    if _close(G, r * N, scale):
        return scale_finding(grad, case, r, ctx)
    # transpose: G^T = N (last two axes)
    if G.ndim >= 2 and G.shape[-1] == G.shape[-2] and _close(G.swapaxes(-1, -2), N, scale):
        return transpose_finding(grad, case, ctx, "every entry", "is the transpose of the true gradient")
    # one operand of the gradient's product transposed (or the two swapped), where the shapes allow it
    for right, wrong, value in ctx.get("operands", {}).get(grad, []):
        if np.shape(value) == G.shape and _close(G, np.asarray(value), scale):
            return Finding(grad, case, "every entry", f"is {wrong}, but the gradient is {right}: the operands of "
                           "its product are in the wrong order or one of them is transposed; with a square "
                           "matrix the shapes cannot tell the two apart, the indices can: write one entry "
                           "as a sum over the shared index", "operands")
    # a named region
    for label, region in ctx.get("regions", {}).get(grad, []):
        region = np.broadcast_to(np.asarray(region, dtype=bool), E.shape)
        if region.any() and not region.all() and _close(E[~region], 0.0, scale) and not _close(E[region], 0.0, scale):
            return Finding(grad, case, f"only {label} ({_count(region, E.size)}); right everywhere else",
                           f"is wrong only at {label}: {ctx.get('region_hints', {}).get(label, _REGION_HINT)}",
                           f"region:{label}")
    # a named weight: E = w * c, c constant along the last axis
    for label, w in ctx.get("weights", {}).get(grad, []):
        w = np.broadcast_to(np.asarray(w, dtype=np.float64), E.shape)
        # the least-squares c of each row; a row whose weight is all zero (a fully masked row) has E * w = 0 too
        cm = (E * w).sum(axis=-1, keepdims=True) / np.maximum((w * w).sum(axis=-1, keepdims=True), _TINY)
        if _close(E, w * cm, scale) and not _close(E, 0.0, scale):
            hint = ctx.get("weight_hints", {}).get(label, f"the term {label} * sum(...) (or {label} * mean(...)) "
                                                          "over the last axis is missing or wrong")
            return Finding(grad, case, "every row, in proportion to " + label,
                           f"the error is {label} times one number per row: {hint}", f"weights:{label}")
    # constant along an axis
    for ax in reversed(range(E.ndim)):
        if E.shape[ax] > 1 and _close(E, E.mean(axis=ax, keepdims=True), scale):
            name = axes[ax] if ax < len(axes) else f"axis {ax}"
            return Finding(grad, case, f"every entry, the same error along {name}",
                           f"the error does not change along {name}: a term that is constant along it is "
                           "missing or extra, typically a sum or a mean over that axis (LayerNorm's mean term "
                           "-mean(g) is one: the same for every feature of a row)", f"axis:{name}")
    staged = ctx.get("staged_hint")
    return Finding(grad, case, _where(E, scale, axes), "differs from the numerical gradient, in no pattern the "
                   "detectors know: re-derive it one step at a time" + (f" ({staged})" if staged else ""), "other")


def _suspects_at(r: float, ctx: dict) -> list:
    """(value, name) of the usual suspects equal to ``r`` (to the finite differences' accuracy)."""
    return [(value, name) for value, name in scale_suspects(ctx) if abs(r - value) <= 1e-6 * max(1.0, abs(value))]


def scale_finding(grad: str, case: str, r: float, ctx: dict) -> Finding:
    """G = r N: the advice follows from the measured r alone. Multiplying G by 1/r fixes it, so the
    cause is a factor r applied that does not belong (or once too often), or a factor 1/r missing;
    which of the two sizes is "too large" is read off |r|, never assumed."""
    hits = _suspects_at(r, ctx)
    r = hits[0][0] if hits else r  # a named factor is exact; the measured r carries the differences' error
    names, inverse = [n for _, n in hits], [n for _, n in _suspects_at(1.0 / r, ctx)]
    sign = bool(hits) and r == -1.0
    said = f", and {r:.6g} is {' or '.join(names)}" if names and not sign else ""
    fix = ("scale", 1.0 / r)
    if sign:
        why = ("the sign is flipped: a term subtracted that should be added, or the operands of a difference "
               "swapped; multiply by -1")
    else:
        size = "too large" if abs(r) > 1 else "too small"
        extra = names[0] if names else f"a factor {r:.6g}"
        missing = inverse[0] if inverse else f"a factor {1 / r:.6g}"
        why = (f"{size}: either {extra} is applied where it does not belong (or once too often), or {missing} "
               f"is missing; multiply by {1 / r:.6g} to fix it")
    tag = "scale:" + ("|".join(n.split(" = ")[0] for n in names) if names else "other")
    if not names:
        why += " (not one of the usual suspects: recompute each scale in the chain)"
    return Finding(grad, case, "every entry, by one factor", f"is {r:.6g} x the true gradient{said}: {why}", tag,
                   fix=fix)


def transpose_finding(grad: str, case: str, ctx: dict, where: str, what: str) -> Finding:
    """G^T = N: the advice names the gradient's product in the op's own forward with its two
    operand orders, from the case (``ctx["products"][grad]``, e.g. "for y = x W: dW = x^T dy
    (d_in, d_out), not dy^T x"); without one, it says to return the input's layout."""
    how = ctx.get("products", {}).get(grad) or f"return {grad} in its input's layout (transpose it)"
    return Finding(grad, case, where, f"{what}: {how}", "transpose", fix=("transpose",))


_REGION_HINT = "those entries are the ones where the forward treats values specially; check that case"


def summary(findings: list, grad_names: list) -> str | None:
    """'dgamma and dbeta are right; dx is wrong' when some gradients are right and some not."""
    wrong = sorted({f.gradient for f in findings if f.gradient in grad_names}, key=grad_names.index)
    right = [g for g in grad_names if g not in wrong]
    if wrong and len(right) > 6:
        return f"{len(right)} of {len(grad_names)} gradients are right; {_join(wrong)} " \
               f"{'is' if len(wrong) == 1 else 'are'} wrong"
    if wrong and right:
        return f"{_join(right)} {'is' if len(right) == 1 else 'are'} right; {_join(wrong)} " \
               f"{'is' if len(wrong) == 1 else 'are'} wrong"
    return None


def _join(names) -> str:
    *rest, last = names
    return f"{', '.join(rest)} and {last}" if rest else last
