"""Grading a learner's backward pass: ``check(exercise, functions) -> Report``.

In this order, for every case the exercise draws (fresh shapes, lengths and masks
from a seed the report prints, so a run can be repeated with ``seed=``):

1. The contract: one gradient per differentiable input, each with its input's
   shape and dtype; the same result twice (re-entrant); ``dy`` and the cache left
   as they were; a zero upstream gradient gives zero gradients.
2. Central differences in float64 against every entry (``npformer.verify``'s
   ``numerical_gradient``), with a random upstream gradient (never all ones).
   Relative error <= 1e-7 passes, >= 1e-3 is a bug; in between the check is redone
   at two other step sizes h, and the verdict says whether the error was
   finite-difference noise (it moves with h) or small but real (it does not).
3. Inside the model: with the learner's functions swapped into ``npformer.ops`` or
   ``npformer.model``, where npformer's layers call them, the blocks that contain
   the op (encoder layer, decoder layer, whole model) are checked the same way: a
   backward that is right alone and wrong when composed is caught there.
4. Findings that explain themselves (``diagnose``), the known mistakes of the op
   recognised by name (``mistakes``), and a one-line summary of which gradients
   are right; ``verdict`` turns the errors and findings into pass, fail or borderline.

While it runs, the exercise's reference functions refuse to run where npformer's
ops and blocks read them, and a file that takes them from their defining module is
refused before it runs (``guard``).
"""
from __future__ import annotations

import ast
import inspect
import json
import textwrap
from dataclasses import dataclass, field

import numpy as np

from npformer.backend import get_backend
from npformer.errors import UserError
from npformer.exercise import guard, staged, variants
from npformer.exercise.catalog import EXERCISES, get
from npformer.verify.diagnose import Finding, diagnose, rel_error, summary
from npformer.verify.verdict import closest_per_entry, same, settle, verdict
from npformer.verify.gradcheck import (ContractError, differentiable, flatten_grads, numerical_gradient,
                                       scale_floor)

FLOAT64_WHY = ("finite differences need float64: the central difference's error is about h^2 (truncation) plus "
               "eps/h (rounding), which is ~1e-10 in float64 at h = 1e-6 but ~1e-3 in float32 (eps = 1.2e-7), "
               "as large as the bugs the check must see")


@dataclass
class Report:
    exercise: str
    passed: bool
    verdict: str                     # "passed", "failed", "borderline", "not started"
    seed: int
    backend: str
    findings: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    rows: list = field(default_factory=list)   # (stage, case, gradient, relative error)

    def as_dict(self) -> dict:
        return {"exercise": self.exercise, "passed": self.passed, "verdict": self.verdict, "seed": self.seed,
                "backend": self.backend, "findings": [f.as_dict() for f in self.findings], "notes": self.notes,
                "rows": [dict(stage=s, case=c, gradient=g, rel_error=e) for s, c, g, e in self.rows]}

    def to_json(self) -> str:
        return json.dumps(self.as_dict())

    def __str__(self) -> str:
        head = {"passed": "PASSED", "failed": "FAILED", "borderline": "BORDERLINE",
                "not started": "NOT STARTED"}[self.verdict]
        lines = [f"{self.exercise}: {head}  (seed {self.seed}, {self.backend}; repeat with --seed {self.seed})"]
        shown = {}
        for stage, case, grad, err in self.rows:
            shown.setdefault((stage, case), []).append(f"{grad} {err:.1e}" if err is not None else f"{grad} -")
        for (stage, case), parts in shown.items():
            lines.append(f"  [{stage}] {case}: {', '.join(parts)}")
        if self.findings:
            lines.append("findings:")
            lines += [f.indented() for f in self.findings]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


class ExerciseError(UserError):
    """A call that cannot be graded: an unknown id, a missing function, float32. A ``UserError``: the
    command prints it as one line and exits 2."""


def _references(ex) -> dict:
    return ex.references() if ex.functions else {}


def all_references() -> dict:
    """name -> every exercise's reference function, as its defining module holds it."""
    out = {}
    for ex in EXERCISES.values():
        out.update(_references(ex))
    return out


class Fns(dict):
    """The functions a case calls: the learner's, and the reference for every other name."""

    def __init__(self, learner: dict, refs: dict):
        super().__init__(learner)
        self.refs = refs

    def __missing__(self, name):
        return self.refs[name]


def lookup(eid: str, names, functions) -> dict:
    """A function, a dict of them, or a module/namespace -> {name: function} for exercise ``eid``."""
    names = list(names)
    if callable(functions) and not isinstance(functions, dict) and len(names) == 1 \
            and not inspect.ismodule(functions):
        return {names[0]: functions}
    get_ = functions.get if isinstance(functions, dict) else (lambda n: getattr(functions, n, None))
    out = {}
    for name in names:
        fn = get_(name)
        if fn is None:
            raise ExerciseError(f"exercise {eid}: no function {name!r} (it must define {', '.join(names)})")
        if not callable(fn):
            raise ExerciseError(f"exercise {eid}: {name!r} is a {type(fn).__name__}, not a function")
        out[name] = fn
    return out


def normalise(ex, functions) -> dict:
    """The exercise's functions (see ``lookup``), each taking ``out=``."""
    return {name: _accept_out(name, fn) for name, fn in lookup(ex.id, ex.functions, functions).items()}


def _accept_out(name, fn):
    """npformer calls softmax_backward(dp, cache, out=buffer); a learner's may lack ``out``."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return fn
    if name != "softmax_backward" or "out" in params:
        return fn

    def with_out(dp, cache, out=None):
        dz = fn(dp, cache)
        if out is None:
            return dz
        out[...] = dz
        return out
    with_out.learner = fn
    return with_out


# --- the check ------------------------------------------------------------------
def check(exercise: str, functions, *, backend=None, seed: int | None = None, dtype: str = "float64",
          quiet: bool = False, composed: bool = True, known: bool = True) -> Report:
    """Grade ``functions`` (one function, a dict, or a module) for ``exercise``; print the report
    unless ``quiet`` and return it. ``npformer exercise check`` runs exactly this on a file."""
    if dtype != "float64":
        raise ExerciseError(f"check: dtype {dtype} refused; {FLOAT64_WHY}")
    if exercise in variants.VARIANTS:
        return finish(_check_variant(exercise, functions, get_backend(backend), _seed(seed)), quiet)
    try:
        ex = get(exercise)
    except KeyError as e:
        raise ExerciseError(e.args[0]) from None
    if ex.kind == "train":
        raise ExerciseError("exercise train grades a folder of exercises: run `npformer exercise check train "
                            "--dir DIR` or npformer.exercise.check_train(DIR)")
    be = get_backend(backend)
    seed = _seed(seed)
    if getattr(functions, "STAGED", False):
        report = Report(ex.id + " (staged)", False, "failed", seed, be.name)
        staged.check_staged(ex.id, functions, seed, report, be)
        return finish(report, quiet)
    fns = normalise(ex, functions)
    report = Report(ex.id, False, "failed", seed, be.name)
    refs = _references(ex)
    if _verbatim(fns, refs):
        report.notes.append("these functions are the reference's code, verbatim: a fine answer to compare "
                            "against, but the exercise is to write them yourself")
    leaning = guard.names_the_reference(ex.module, refs, functions)
    if leaning:
        report.findings.append(Finding(", ".join(refs), "your code", "its source", f"{leaning}: the reference "
                                       "refuses to run while check grades it (write it yourself)", "reference"))
        return finish(report, quiet)
    if ex.kind == "forward":
        from npformer.exercise import positional
        positional.check_table(ex, fns, refs, be, seed, report)
        return finish(report, quiet)
    all_refs = all_references()
    from npformer.exercise import mistakes
    library = mistakes.MISTAKES.get(ex.id, []) if known else []
    rng = np.random.default_rng(seed)
    hint = {"staged_hint": f"`npformer exercise start {ex.id} --staged` writes the forward as steps and grades "
                           "each step's gradient"} if ex.id in staged.GRAPHS else {}
    with guard.refused(refs):
        for case in ex.cases(rng, be):
            case.context.update(hint)
            if not run_case(case, Fns(fns, all_refs), be, seed, report, "alone", library):
                break
    if composed and not report.findings:
        with guard.swapped(fns):
            for cid in ex.composed:
                for case in EXERCISES[cid].cases(rng, be):
                    run_case(case, Fns({}, all_refs), be, seed, report, f"in {cid}", [])
    return finish(report, quiet)


def _seed(seed) -> int:
    return int(np.random.SeedSequence().entropy % (1 << 31)) if seed is None else int(seed)


def _check_variant(vid, functions, be, seed) -> Report:
    """A variant (variants.py): its cases, against central differences only (no reference exists)."""
    _, name, _, cases, _ = variants.VARIANTS[vid]
    fns, report = Fns(lookup(vid, [name], functions), {}), Report(vid, False, "failed", seed, be.name)
    rng = np.random.default_rng(seed)
    for case in cases(rng, be):
        if not run_case(case, fns, be, seed, report, "alone", []):
            break
    return report


def finish(report: Report, quiet: bool) -> Report:
    if report.verdict != "not started":
        report.passed, report.verdict = verdict(report.findings)
    if not quiet:
        print(report)
    return report


def _arrays(obj, path="cache"):
    """(path, array) of every array in a (nested) cache."""
    if hasattr(obj, "dtype") and hasattr(obj, "shape"):
        yield path, obj
    elif isinstance(obj, tuple) and hasattr(obj, "_fields"):
        for name, v in zip(obj._fields, obj):
            yield from _arrays(v, f"{path}.{name}")
    elif isinstance(obj, (tuple, list)):
        for i, v in enumerate(obj):
            yield from _arrays(v, f"{path}[{i}]")
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _arrays(v, f"{path}[{k!r}]")


def _grad_names(inputs: dict) -> list:
    return ["d" + n.split(".", 1)[1] if "." in n else "d" + n for n in differentiable(inputs)]


SHAPES_HINT = (" (a ValueError in a backward is nearly always shapes that do not fit: a sum or a mean without "
               "keepdims=True, or a product's operands in the wrong order or one of them transposed; print each "
               "operand's shape)")


@dataclass
class Graded:
    """One case being graded: where its findings go, and what every step needs."""
    case: object
    fns: Fns
    be: object
    seed: int
    report: Report
    stage: str
    dy: np.ndarray          # the upstream gradient, on the host: never all ones, never symmetric
    cache: object           # the forward's, on this case
    dtype: object           # the forward output's

    @property
    def where(self) -> str:
        return self.case.name if self.stage == "alone" else f"{self.stage}: {self.case.name}"

    def finding(self, grad, where, diagnosis, tag, err=None):
        self.report.findings.append(Finding(grad, self.where, where, diagnosis, tag, err))

    def grads(self, dy, fns=None) -> dict:
        """The backward on these functions (the learner's unless ``fns``), on the host ``dy``."""
        return case_grads(self.case, self.fns if fns is None else fns, self.device(dy), self.cache)

    def device(self, dy):
        """A fresh copy of ``dy`` on the backend: a backward that writes into its dy changes no other."""
        return self.be.asarray(np.array(dy), dtype=self.dtype)


def run_case(case, fns: Fns, be, seed, report, stage, library) -> bool:
    """Grade one case: the contract, then the numerical comparison, then the explanation. False
    when grading cannot go on (the function raised, or is not written)."""
    y, cache = case.forward(**case.inputs)
    rng = np.random.default_rng(seed)
    dy = be.to_host(be.asarray(rng.standard_normal(np.shape(y)) + 0.5, dtype=y.dtype))
    g = Graded(case, fns, be, seed, report, stage, dy, cache, y.dtype)
    start = len(report.findings)
    grads = first_call(g)
    if grads is None:
        return False
    if contract(g, grads):
        numerical(g, grads)
        explain(g, grads, start, library)
    return True


def first_call(g: Graded):
    """The learner's gradients on this case, or None (with the finding why) when the call raised."""
    cache_before = [(p, g.be.to_host(a).copy()) for p, a in _arrays(g.cache)]
    dy = g.device(g.dy)
    names = _grad_names(g.case.inputs)
    try:
        grads = case_grads(g.case, g.fns, dy, g.cache)
    except NotImplementedError:
        g.report.verdict = "not started"
        g.finding(", ".join(g.fns) or "backward", "the function body", "raises NotImplementedError: write the "
                  "gradient (`npformer exercise hint ID` helps)", "not started")
        return None
    except guard.ReferenceCalled as e:
        g.finding("backward", "a call", str(e), "reference")
        return None
    except ContractError as e:
        g.finding("backward", "its return value", f"{e}; in order: {', '.join(names)}", "count")
        return None
    except Exception as e:  # noqa: BLE001 -- any error of the learner's code is a finding, not a crash
        hint = SHAPES_HINT if isinstance(e, ValueError) else ""
        g.finding("backward", "a call", f"raised {type(e).__name__}: {e}{hint}", "exception")
        return None
    if not np.array_equal(g.be.to_host(dy), g.dy):
        g.finding("dy", "the upstream gradient", "was changed in place: the caller may still need dy (a residual "
                  "sends the same dy to two branches); compute into a new array", "inplace")
    for (path, a), (_, before) in zip(_arrays(g.cache), cache_before):
        if a.shape != before.shape or not np.array_equal(g.be.to_host(a), before, equal_nan=True):
            g.finding(path, "the cache", "was changed in place: the cache belongs to the forward; a second "
                      "backward call (or another consumer of it) would see your changes", "inplace")
    return grads


def contract(g: Graded, grads: dict) -> bool:
    """One array per differentiable input, in its dtype; the same result twice; zero for a zero
    dy. False when the gradients cannot be compared with numbers at all."""
    diff = differentiable(g.case.inputs)
    for name, n in zip(grads, diff):
        grad, inp = grads[name], diff[n]
        if grad is None:
            g.finding(name, "missing", "is None: return a gradient for every differentiable input", "missing")
        elif not hasattr(grad, "dtype"):
            g.finding(name, "its type", f"is a {type(grad).__name__}, not an array", "type")
        elif grad.dtype != inp.dtype:
            g.finding(name, "its dtype", f"is {grad.dtype}, but the input is {inp.dtype}: a gradient keeps its "
                      "input's dtype (a float32 here is a silent downcast, a float64 in training a silent "
                      "upcast)", "dtype")
    if any(grad is None or not hasattr(grad, "dtype") for grad in grads.values()):
        return False
    try:
        again, zero = g.grads(g.dy), g.grads(g.dy * 0)
    except Exception as e:  # noqa: BLE001
        g.finding("backward", "a second call", f"raised {type(e).__name__}: {e} (the first call worked: is "
                  "something consumed or overwritten?)", "reentrant")
        return False
    host = g.be.to_host
    for name in grads:
        if not np.array_equal(host(again[name]), host(grads[name]), equal_nan=True):
            g.finding(name, "a second call", "differs from the first with the same dy and cache: the backward "
                      "must not keep state or change its inputs", "reentrant")
        z = host(zero[name])
        if np.any(np.isfinite(z) & (z != 0)):
            g.finding(name, "dy = 0", "is not zero for a zero upstream gradient: a term does not carry dy "
                      "(a constant added to the gradient?)", "zero")
    return True


def _context(g: Graded) -> dict:
    """What the diagnosis may recognise on this case: its sizes, regions, weights and operands."""
    host, case = g.be.to_host, g.case
    ctx = dict(case.context)
    if np.size(g.dy) == 1:
        ctx["dloss"] = float(g.dy.reshape(-1)[0])
    if case.weights:
        ctx["weights"] = {k: [(lbl, host(w)) for lbl, w in v] for k, v in case.weights(g.cache).items()}
    if case.operands:
        dy = g.device(g.dy)
        ctx["operands"] = {k: [(right, wrong, host(v)) for right, wrong, v in lst]
                           for k, lst in case.operands(g.cache, dy).items()}
    return ctx


def numerical(g: Graded, grads: dict) -> None:
    """Every gradient against central differences in float64; a row of the report each, and a
    finding each where it is wrong (after the kink retry and the in-between re-measure)."""
    case, inputs, host = g.case, g.case.inputs, g.be.to_host
    dy = g.device(g.dy)
    diff, ctx = differentiable(inputs), _context(g)

    def numeric_at(n, h):
        return numerical_gradient(case.forward, inputs, n, dy, h, case.entries(n), g.seed)
    numeric = {n: numeric_at(n, case.h) for n in diff}
    floor = scale_floor({name: (host(grads[name]), v) for name, (_, v) in zip(grads, numeric.values())})
    for name, n in zip(grads, diff):
        G = host(grads[name])
        err, f = _compare(case, inputs, n, name, G, numeric[n], ctx, g.where, floor)
        if f is not None:
            idx, num = numeric[n]
            if G.size >= idx.size and G.shape == diff[n].shape:  # the kink retry: h, h/10 and h/100
                num = closest_per_entry(G.reshape(-1)[idx], [num] + [numeric_at(n, h)[1]
                                                                     for h in (case.h / 10, case.h / 100)])
                err, f = _compare(case, inputs, n, name, G, (idx, num), ctx, g.where, floor)

        def err_at_step(h, n=n, name=name, G=G):
            return _compare(case, inputs, n, name, G, numeric_at(n, h), ctx, "", floor)[0]
        err, f, note = settle(err, f, err_at_step, case.h)
        if note:
            g.report.notes.append(f"{name} [{case.name}]: {note}")
        g.report.rows.append((g.stage, case.name, name, err))
        if f is not None:
            g.report.findings.append(f)


def explain(g: Graded, grads: dict, start: int, library) -> None:
    """After this case's findings: one line if an earlier case already explained them; else which
    gradients are right, and the known mistake whose gradients are the learner's."""
    report, names = g.report, list(grads)
    found = report.findings[start:]
    if not found:
        return
    if start:
        tags = list(dict.fromkeys(f.tag for f in found))
        del report.findings[start:]
        report.notes.append(f"also wrong in case {g.case.name!r} ({g.stage}): {', '.join(tags)}")
        return
    line = summary(found, names)
    if line:
        report.findings.append(Finding(", ".join(names), g.case.name, "which gradients", line,
                                       "only:" + ",".join(sorted({f.gradient for f in found}))))
    host = {k: g.be.to_host(v) for k, v in grads.items()}
    for m in library:
        try:
            theirs = g.grads(g.dy, Fns(m.functions, g.fns.refs))
        except Exception:  # noqa: BLE001 -- a mistake that cannot run on this case is not this one
            continue
        if all(same(host[k], g.be.to_host(theirs[k])) for k in host):
            report.findings.append(Finding(", ".join(names), g.case.name, "the whole function",
                                           f"this is a known mistake: {m.description}", f"known:{m.name}"))
            return


def case_grads(case, fns, dy, cache) -> dict:
    """The case's backward call on these functions, as {"dX": gradient} in the forward's input order."""
    raw = case.call(fns, dy, cache)
    raw = case.adapt(raw) if case.adapt else raw
    flat = flatten_grads(raw, case.inputs)
    return {g: flat[n] for g, n in zip(_grad_names(case.inputs), differentiable(case.inputs))}


def _compare(case, inputs, n, g, G, numeric, ctx, label, floor):
    idx, num = numeric
    arr = differentiable(inputs)[n]
    if idx.size < arr.size:
        if G.shape != arr.shape:
            return float("inf"), diagnose(g, label, G, np.zeros(arr.shape), ctx)
        Gs = G.reshape(-1)[idx]
        return rel_error(Gs, num, floor), diagnose(g, label + f" ({idx.size} sampled entries)", Gs, num,
                                                   {k: v for k, v in ctx.items() if k not in ("regions", "weights")},
                                                   floor=floor)
    N = num.reshape(arr.shape)
    return (rel_error(G, N, floor) if G.shape == N.shape else float("inf")), \
        diagnose(g, label, G, N, ctx, case.axes, floor)


def _verbatim(fns: dict, refs: dict) -> bool:
    def body(fn):
        fn = getattr(fn, "learner", fn)
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
        except (OSError, TypeError, SyntaxError):
            return None
        node = tree.body[0] if tree.body else None
        if not isinstance(node, ast.FunctionDef):
            return None
        stmts = node.body[1:] if (node.body and isinstance(node.body[0], ast.Expr)
                                  and isinstance(getattr(node.body[0], "value", None), ast.Constant)) else node.body
        return ast.dump(ast.Module(body=stmts, type_ignores=[]))
    return bool(refs) and all(body(fns[n]) is not None and body(fns[n]) == body(refs[n]) for n in refs)
