"""Finite-difference gradient checking, for npformer's ops and for your own.

The contract checked is the one every npformer op follows:

    y, cache = forward(**inputs)          # inputs: arrays, dicts of arrays, or anything else
    grads    = backward(dy, cache)        # gradients of L = sum(y * dy)

``grads`` lists the gradient of every *differentiable* input (a floating-point
array, or a dict of them) in the order ``inputs`` names them: a single array, a
tuple, or a dict (which is flattened as ``name.key``). Integer arrays, booleans,
``None`` and numbers pass straight through and get no gradient.

How the numerical gradient is taken. Instead of dy = ones we draw a random
upstream gradient dy (with dy = ones and gamma = 1, LayerNorm's true dx is exactly
zero, and a backward that forgets its variance term returns that zero too) and
check the scalar L(x) = sum(forward(x) * dy):

    dL/dx_i ~ (L(x + h e_i) - L(x - h e_i)) / (2 h)          central difference, error O(h^2)

in float64 with h = 1e-6. The error of one tensor is

    max_rel_error = max_i |analytic_i - numeric_i| / scale
    scale = max(max_i |analytic_i|, max_i |numeric_i|, 1% of the largest such scale among the op's gradients)

i.e. the worst entry relative to the tensor's scale: robust where single
entries are near zero, and a gradient off by any factor (1/batch, a lost gamma)
shows up as an error of order one. The 1% floor matters only for a gradient
that is exactly zero in theory, such as the key bias b_K of attention (softmax
ignores a shift shared by all keys): there only rounding noise is left to
compare, and it is judged against the op's other gradients.

Besides values, ``check_gradients`` verifies that the backward
  * returns one gradient per differentiable input, with its shape and dtype,
  * is re-entrant (a second call gives bit-identical results),
  * maps a zero upstream gradient to zero gradients,
and names the shape of each wrong gradient's error (``findings``, from
``diagnose``): one factor off (its value, and which size it is where ``context``
gives the sizes), a transpose, all zero, the same error along one axis, or which
entries are wrong.

``check_directional`` checks a whole block along one random direction v:
    d/dt L(x + t v) at t=0  ==  sum_k <grad_k, v_k>
which costs two forward passes however many parameters there are.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from npformer.backend import backend_of
from npformer.verify.diagnose import diagnose, rel_error

DEFAULT_TOL = 1e-7


@dataclass
class GradCheckResult:
    name: str
    max_rel_error: float
    passed: bool
    errors: dict = field(default_factory=dict)   # per differentiable input
    problems: list = field(default_factory=list)  # contract violations (shape, dtype, re-entrancy, ...)
    findings: list = field(default_factory=list)  # diagnose.Finding of each wrong gradient: the error's shape

    def as_dict(self) -> dict:
        return {"name": self.name, "max_rel_error": self.max_rel_error, "passed": self.passed,
                "findings": [f.as_dict() for f in self.findings]}


def _is_float_array(a) -> bool:
    # NumPy scalars (np.float64(2.0), e.g. a scale factor) are constants, not inputs
    return (hasattr(a, "dtype") and hasattr(a, "shape") and not isinstance(a, np.generic)
            and a.dtype.kind == "f")


def differentiable(inputs: dict, constants=()) -> dict:
    """name -> array for every floating-point input not in ``constants``; dict
    inputs are flattened to 'name.key'."""
    out = {}
    for name, value in inputs.items():
        if name in constants:
            continue
        if isinstance(value, dict):
            for key, a in value.items():
                if _is_float_array(a):
                    out[f"{name}.{key}"] = a
        elif _is_float_array(value):
            out[name] = value
    return out


class ContractError(ValueError):
    """A backward's return value does not match its forward's inputs: another number of gradients,
    or a plain array where a dict of parameters' gradients belongs."""


def flatten_grads(grads, inputs: dict, constants=()) -> dict:
    """Align ``backward``'s return value with the differentiable inputs' names (``ContractError``
    when it cannot be aligned)."""
    if not isinstance(grads, (tuple, list)):
        grads = (grads,)
    names = [n for n, v in inputs.items() if n not in constants and (
             (isinstance(v, dict) and any(_is_float_array(a) for a in v.values())) or _is_float_array(v))]
    if len(grads) != len(names):
        raise ContractError(f"backward returned {len(grads)} gradient(s) but forward has {len(names)} "
                         f"differentiable input(s): {names}")
    out = {}
    for name, g in zip(names, grads):
        if isinstance(inputs[name], dict):
            if not isinstance(g, dict):
                raise ContractError(f"gradient for dict input {name!r} must be a dict, got {type(g).__name__}")
            for key, a in inputs[name].items():
                if _is_float_array(a):
                    out[f"{name}.{key}"] = g.get(key)
        else:
            out[name] = g
    return out


def _loss(forward, inputs, dy):
    y, _ = forward(**inputs)
    return float((y * dy).sum())


def scale_floor(pairs: dict) -> float:
    """1% of the largest scale, max(|analytic|, |numeric|), of a check's gradients: name ->
    (analytic, numeric) arrays. ``rel_error``'s floor, here and in the exercise grader."""
    return 0.01 * max((max(float(np.abs(a).max(initial=0.0)), float(np.abs(n).max(initial=0.0)))
                       for a, n in pairs.values()), default=0.0)


def numerical_gradient(forward: Callable, inputs: dict, name: str, dy, h: float = 1e-6,
                       max_entries: int | None = None, seed: int = 0, constants=()):
    """Central-difference dL/d(input ``name``) of L = sum(forward(**inputs)[0] * dy).

    Returns ``(indices, values)``: the flat indices checked (all of them, or a
    random sample of ``max_entries``) and the numerical derivative at each.
    The input array is perturbed in place and restored exactly.
    """
    arr = differentiable(inputs, constants)[name]
    size = arr.size
    idx = np.arange(size)
    if max_entries is not None and size > max_entries:
        idx = np.sort(np.random.default_rng(seed).choice(size, max_entries, replace=False))
    values = np.empty(len(idx))
    for j, i in enumerate(idx):
        pos = np.unravel_index(i, arr.shape)  # index the array itself: works for any strides
        old = arr[pos].item()
        arr[pos] = old + h
        plus = _loss(forward, inputs, dy)
        arr[pos] = old - h
        minus = _loss(forward, inputs, dy)
        arr[pos] = old
        values[j] = (plus - minus) / (2 * h)
    return idx, values


def check_gradients(forward: Callable, backward: Callable, inputs: dict, name: str = "",
                    *, tol: float = DEFAULT_TOL, h: float = 1e-6, max_entries: int | None = None,
                    seed: int = 0, constants=(), context: dict | None = None) -> GradCheckResult:
    """Check ``backward`` against central differences for every differentiable input.

    ``inputs`` is passed to ``forward`` as keyword arguments; differentiable
    inputs should be float64 (float32 differences are too noisy for 1e-7).
    ``max_entries`` samples that many entries per tensor (for big tensors).
    ``constants`` names float inputs that are not differentiated (a fixed table).
    ``context`` gives the sizes a wrong factor may be named by (``d_model``, ``d_k``,
    ``p``, ``M``, ...: ``diagnose.scale_suspects`` lists them).
    """
    diff = differentiable(inputs, constants)
    for n, a in diff.items():
        if a.dtype.itemsize < 8:
            raise TypeError(f"gradcheck: input {n!r} is {a.dtype}; finite differences need float64")
    be = backend_of(*diff.values())
    y, cache = forward(**inputs)
    dy = be.asarray(np.random.default_rng(seed).standard_normal(y.shape), dtype=y.dtype)
    problems = []
    grads = flatten_grads(backward(dy, cache), inputs, constants)
    grads2 = flatten_grads(backward(dy, cache), inputs, constants)
    zero = flatten_grads(backward(dy * 0, cache), inputs, constants)
    pairs = {}
    for n, a in diff.items():
        g = grads[n]
        if g is None:
            problems.append(f"{n}: no gradient returned")
            continue
        if g.shape != a.shape:
            problems.append(f"{n}: gradient shape {g.shape} != input shape {a.shape}")
            continue
        if g.dtype != a.dtype:
            problems.append(f"{n}: gradient dtype {g.dtype} != input dtype {a.dtype}")
        if not bool((be.to_host(grads2[n]) == be.to_host(g)).all()):
            problems.append(f"{n}: backward is not re-entrant (second call differs)")
        if bool(be.xp.any(zero[n] != 0)):
            problems.append(f"{n}: zero upstream gradient gave a non-zero gradient")
        idx, num = numerical_gradient(forward, inputs, n, dy, h, max_entries, seed, constants)
        G = be.to_host(g)
        # every entry: the error's shape can be read in the input's layout; a sample: as a vector
        pairs[n] = (G, num.reshape(a.shape)) if idx.size == a.size else (G.reshape(-1)[idx], num)
    floor = scale_floor(pairs)
    errors = {n: rel_error(G, N, floor) for n, (G, N) in pairs.items()}
    findings = [diagnose(f"d{n}", name or "check_gradients", G, N, context or {}, floor=floor)
                for n, (G, N) in pairs.items() if errors[n] > tol]
    worst = max(errors.values(), default=0.0)
    passed = not problems and worst <= tol
    return GradCheckResult(name, worst, passed, errors, problems, [f for f in findings if f is not None])


def check_directional(forward: Callable, backward: Callable, inputs: dict, name: str = "",
                      *, tol: float = DEFAULT_TOL, h: float = 1e-6, seed: int = 0,
                      constants=()) -> GradCheckResult:
    """Random-direction check of a whole block: one number, any number of parameters.

    Draws dy and a unit direction v over all differentiable inputs, then compares
    sum_k <grad_k, v_k> with (L(x + h v) - L(x - h v)) / (2 h).
    """
    diff = differentiable(inputs, constants)
    be = backend_of(*diff.values())
    rng = np.random.default_rng(seed)
    y, cache = forward(**inputs)
    dy = be.asarray(rng.standard_normal(y.shape), dtype=y.dtype)
    grads = flatten_grads(backward(dy, cache), inputs, constants)
    v = {n: rng.standard_normal(a.shape) for n, a in diff.items()}
    norm = np.sqrt(sum(float((d * d).sum()) for d in v.values()))
    v = {n: be.asarray(d / norm, dtype=diff[n].dtype) for n, d in v.items()}
    problems = [f"{n}: no gradient returned" for n in diff if grads.get(n) is None]
    if problems:
        return GradCheckResult(name, float("inf"), False, {}, problems)
    analytic = sum(float((grads[n] * v[n]).sum()) for n in diff)
    originals = {n: a.copy() for n, a in diff.items()}

    def shifted(t):
        for n, a in diff.items():
            a[...] = originals[n] + t * v[n]
        return _loss(forward, inputs, dy)

    numeric = (shifted(h) - shifted(-h)) / (2 * h)
    for n, a in diff.items():
        a[...] = originals[n]
    err = abs(analytic - numeric) / max(abs(analytic), abs(numeric), 1e-300)
    return GradCheckResult(name, err, err <= tol, {"direction": err}, [])
