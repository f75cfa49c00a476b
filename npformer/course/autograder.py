"""Grade one submission of an assignment: every exercise of it, into one results file.

``npformer course build`` writes the assignment as DIR/assignment.json, and a copy into each
bundle (Gradescope's autograder.zip, PrairieLearn's tests/), and beside it, when the assignment
has hidden draws, the instructor's secret (DIR/hidden_secret, never in student/). The bundle's
script runs ``npformer course grade ASSIGNMENT --submission folder --report PLATFORM``, which
is ``grade`` then ``platforms.results``:

    {"npformer": "0.1.0",                       the version that built it
     "exercises": ["linear", "layernorm"],      graded in this order, each from DIR/ID.py
     "points": {"linear": 10},                  the points of an exercise (default: 1 per part)
     "hidden_seeds": 2}                         hidden draws of each exercise

An exercise's points are spread evenly over its parts, the hidden draws' included (each draw of
an exercise has the same parts: ``platforms.plan``), so a perfect submission earns exactly the
points the instructor set. A file that cannot be graded (missing, a syntax error, a missing
function: ``ExerciseError``) is that exercise's draws failed with the reason; the other files
are graded as usual.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
import time
from dataclasses import dataclass, field

from npformer.course import platforms
from npformer.errors import UserError

ASSIGNMENT = "assignment.json"
SECRET = "hidden_secret"


@dataclass(frozen=True)
class Assignment:
    exercises: tuple
    points: dict = field(default_factory=dict)
    hidden_seeds: int = 0
    secret: str | None = None

    def as_json(self) -> str:
        from npformer import __version__
        return json.dumps({"npformer": __version__, "exercises": list(self.exercises), "points": self.points,
                           "hidden_seeds": self.hidden_seeds}, indent=2) + "\n"


def gradable_ids() -> tuple:
    """The exercises an assignment may hold: each a file with a reference answer (train has no
    file of its own; a variant has no reference to put in solution/)."""
    from npformer.exercise import EXERCISES
    return tuple(i for i, e in EXERCISES.items() if e.functions)


def check_exercises(ids) -> tuple:
    """``ids`` in the catalog's order (the order a learner takes them), or a ``UserError``."""
    from npformer.exercise import ORDER, VARIANT_IDS
    known = gradable_ids()
    for i in ids:
        if i not in known:
            why = "unknown exercise"
            if i == "train":
                why = "train is graded from the other exercises' files and has no file of its own"
            elif i in VARIANT_IDS:
                why = "a variant has no reference answer for solution/"
            raise UserError(f"exercise {i!r}: {why}; an assignment takes {', '.join(known)}")
    if len(set(ids)) != len(ids) or not ids:
        raise UserError(f"exercises {' '.join(ids) or '(none)'}: name each exercise once, at least one")
    return tuple(sorted(ids, key=ORDER.index))


def check_points(points, ids) -> dict:
    """A points mapping (exercise id -> a number > 0) for these exercises, or a ``UserError``."""
    if not isinstance(points, dict):
        raise UserError(f"points: a JSON object from exercise id to points, not {type(points).__name__}")
    for key, value in points.items():
        if key not in ids:
            raise UserError(f"points: {key!r} is not an exercise of this assignment ({', '.join(ids)})")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise UserError(f"points: {key!r} is {value!r}; points are a number > 0")
    return dict(points)


def load(path: str, secret: str | None = None) -> Assignment:
    """The assignment at ``path``; its secret from ``secret``, else the file beside it."""
    try:
        with open(path, encoding="utf-8") as f:
            spec = json.load(f)
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: not an assignment ({e})") from None
    ids = check_exercises(list(spec.get("exercises", [])))
    n = spec.get("hidden_seeds", 0)
    if not isinstance(n, int) or n < 0:
        raise UserError(f"{path}: hidden_seeds is {n!r}; a whole number >= 0")
    if secret is None and n:
        beside = os.path.join(os.path.dirname(os.path.abspath(path)), SECRET)
        if os.path.isfile(beside):
            with open(beside, encoding="utf-8") as f:
                secret = f.read().strip() or None
    return Assignment(ids, check_points(spec.get("points", {}), ids), n, secret)


def _quietly(fn, *args, **kwargs):
    """fn's result, with the learner's own prints kept out of the grader's output."""
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args, **kwargs)


def grade_exercise(exercise: str, folder: str, *, hidden_seeds: int = 0, secret: str | None = None,
                   seed: int | None = None, backend: str = "numpy") -> list:
    """The draws of one exercise's file: the visible check and ``hidden_seeds`` hidden ones, or,
    when the file cannot be graded, as many draws failed with the reason."""
    from npformer.exercise import check, files
    from npformer.exercise.grader import ExerciseError
    try:
        module = files.load(exercise, folder)
        start = time.perf_counter()
        report = _quietly(check, exercise, module, backend=backend, seed=seed, quiet=True)
    except ExerciseError as e:
        return [platforms.unreadable(exercise, str(e), seed=seed or 0, backend=backend, hidden=k)
                for k in range(hidden_seeds + 1)]
    return draws_of(exercise, module, report, time.perf_counter() - start, hidden_seeds=hidden_seeds,
                    secret=secret, backend=backend)


def draws_of(exercise: str, module, report, seconds: float, *, hidden_seeds: int = 0, secret: str | None = None,
             backend: str = "numpy") -> list:
    """The visible draw (``report``, graded in ``seconds``) and ``hidden_seeds`` hidden draws of the
    same file, their seeds derived from ``secret`` (else from the visible seed)."""
    from npformer.exercise import check
    draws = [platforms.Draw(report, expected=platforms.plan(report), seconds=seconds)]
    for k, s in enumerate(platforms.hidden_seeds(exercise, hidden_seeds, report.seed, secret), 1):
        start = time.perf_counter()
        hidden = _quietly(check, exercise, module, backend=backend, seed=s, quiet=True)
        draws.append(platforms.Draw(hidden, hidden=k, expected=platforms.plan(hidden),
                                    seconds=time.perf_counter() - start))
    return draws


def grade(assignment: Assignment, folder: str, *, seed: int | None = None, backend: str = "numpy") -> list:
    """Every draw of every exercise of the assignment, each with its points."""
    out = []
    for exercise in assignment.exercises:
        draws = grade_exercise(exercise, folder, hidden_seeds=assignment.hidden_seeds, secret=assignment.secret,
                               seed=seed, backend=backend)
        total = assignment.points.get(exercise)
        if total is not None:
            n_parts = sum(len(platforms.grade(d.report, expected=d.expected, error=d.error)) for d in draws)
            for d in draws:
                d.points = {"*": total / n_parts}
        out += draws
    return out


def summary(draws) -> list:
    """One line per exercise: its verdict (of the visible draw) and points."""
    lines = []
    for exercise in dict.fromkeys(d.report.exercise for d in draws):
        mine = [d for d in draws if d.report.exercise == exercise]
        parts = [p for d in mine for p in platforms.grade(d.report, expected=d.expected, error=d.error,
                                                          points=d.points)]
        verdict = "cannot grade" if mine[0].error else mine[0].report.verdict
        got, of = sum(p.score for p in parts), sum(p.points for p in parts)
        lines.append(f"{exercise}: {verdict}, {got:.4g} of {of:.4g} points")
    return lines
