"""A check's report as a course platform reads it: the results files of Gradescope's and
PrairieLearn's autograders, and JUnit XML (``npformer exercise check ID --report PLATFORM``).

This module grades nothing: it reads ``Report`` objects (and, for the list of parts a
full check grades, the catalog's cases).

Parts: a check is cut into graded parts, each one test of the platform:

    the contract         every contract finding (inplace, count, dtype, type, missing,
                         reentrant, zero, exception, reference, not started)
    GRADIENT [CASE]      each gradient of each case of the alone stage: dx [T = 1]
    in BLOCK             each composition, one part: in encoder_layer, in model

Per gradient inside a case, because the learner writes each gradient and the grader
measures each on its own: a layernorm whose dgamma and dbeta are right and dx wrong
earns the dgamma and dbeta parts of every case (a part per case would give it nothing).
One part per composition, because a composition measures the whole block's gradients
(every parameter of the model), none of which the learner wrote: the part passes when
all of them are right. Staged mode's steps are parts like the alone stage's gradients
(dxhat [staged]); a train run is one part.

A part passes when no finding of its own is left and each of its rows is within the
grader's pass line (TOL_PASS = 1e-7; a train run's loss: training.RTOL). The rows decide
too because the text report states a mistake once: the first case it shows in gets the
findings, a later case a note ("also wrong in case 'T = 1' (alone): ...") and its rows.
A finding is a part's own when it names one gradient of that part's case (its case is
"CASE" in the alone stage, "STAGE: CASE" in a composition). A finding about several
gradients at once (which gradients are right, a known mistake) decides nothing: it is
shown on the failed parts of its case. A finding that names no part (none of npformer's
own checks writes one) fails the contract part, so that no finding goes unscored.

Every draw of an exercise has the same parts: ``plan(report)`` lists those a full check
grades, from the catalog, so that a check that stopped early (the learner's function
raised in the first case; the compositions run only when the alone stage has no finding) still
shows every part, failed as "not graded", and the maximum score does not depend on the
answer (PrairieLearn's score is a fraction of it). The variants, staged mode and train
have no plan: their parts are those their report graded.

Points: 1 per part, or ``points``, a dict from a part's name ("dx [T = 1]", "the
contract", "in model") or its stage ("contract", "alone", "staged", "in model", "train")
to points, the name first; "*" for every other part. A hidden draw's parts are worth what
the visible draw's are.

Each test's output is its findings as the text report prints them (``str(finding)``);
a passed part's says so, with its largest relative error.

Hidden draws: ``hidden_seeds`` derives the seeds of the draws an instructor adds (see
there); each is one more ``check`` of the same functions, its parts flagged hidden:

    Gradescope    each test "visibility": "hidden" (or ``hidden_visibility``:
                  "after_due_date", "after_published"); while a test is hidden, students
                  do not see their total score (Gradescope's documentation)
    PrairieLearn  no per-test visibility: each hidden draw is one test, "ID: hidden draw
                  K", with its points and how many parts passed, never a finding (its
                  output is empty); the score counts it
    JUnit         each draw a <testsuite>, with <property name="hidden" value="true"/>

A hidden draw's seed is written nowhere: ``hidden_seeds`` gives it back to whoever has
the secret (and the visible seed, which the file holds).

An assignment (``npformer course grade``, npformer/course/autograder.py): the draws of
several exercises in one file, each with its own ``points`` (the assignment's points of
the exercise spread over its parts). A file of the assignment that cannot be graded is a
draw with an ``error``: its contract part fails with the reason and every other part of
its plan is "not graded", so that it is worth what a graded file is (the maximum does
not depend on the answers) while the other files are graded as usual; on PrairieLearn
the whole submission is "gradable": false, as one file is (the attempt does not count).

Cannot grade (an ``ExerciseError``: a syntax error, a missing function or file):
``cannot_grade``: Gradescope "score": 0 with the reason as "output"; PrairieLearn
"gradable": false with the reason as "message" and "format_errors" (the attempt is not
counted); JUnit one <testcase> with an <error>.

The formats, as documented by each platform:

    Gradescope    gradescope-autograders.readthedocs.io, "Autograder Specifications":
                  /autograder/results/results.json; "score" (optional when every test
                  has one; it overrides their sum), "execution_time" (seconds), "output"
                  with "output_format" (the top level's default, "simple_format", renders
                  HTML, so "text" is set), "tests": [{"name", "score", "max_score",
                  "status": "passed" | "failed", "output", "visibility", "extra_data"}]
    PrairieLearn  prairielearn.readthedocs.io, "External Grading", "Grading results":
                  /grade/results/results.json (the folder is not made for you: ``write``
                  makes it), at most 1 MB; "gradable", "score" in [0, 1], "message",
                  "output", "format_errors" (when not gradable), "tests": [{"name",
                  "points", "max_points", "message", "output"}]
    JUnit XML     as the schema pytest checks its own files against (Jenkins'
                  junit-10.xsd) has it: <testsuites> of <testsuite name tests failures
                  errors skipped time> with <properties> and <testcase classname name
                  time>, each with a <failure message type> or an <error message type>
                  whose text is the detail, and <system-out> (here: its points).
                  The grader times a draw, not a part: a suite has its draw's time, each
                  testcase 0.

tests/course/schemas/ holds JSON Schemas of the two results files (the documented
fields only); tests/course/test_platforms.py validates every file it writes against them.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from npformer.verify.diagnose import TOL_PASS

PLATFORMS = ("gradescope", "prairielearn", "junit")
DEFAULT_PATHS = {"gradescope": "/autograder/results/results.json",
                 "prairielearn": "/grade/results/results.json",
                 "junit": "junit.xml"}
CONTRACT = "the contract"
CONTRACT_TAGS = frozenset({"inplace", "count", "dtype", "type", "missing", "reentrant", "zero", "exception",
                           "reference", "not started"})
INFORMATIONAL = ("only:", "known:")   # a finding about several gradients at once: decides nothing
PER_GRADIENT = ("alone", "staged")    # stages whose every (case, gradient) is a part; any other stage is one
VISIBILITIES = ("hidden", "after_due_date", "after_published")
SHOWN = 10   # rows listed in a failed part's output, at most


@dataclass
class Part:
    """One graded part of one draw: a test of the platform."""
    name: str                 # "the contract", "dx [T = 1]", "in model"
    stage: str                # "contract", "alone", "staged", "in model", "train"
    case: str | None = None
    gradient: str | None = None
    rows: list = field(default_factory=list)       # (case, gradient, relative error) graded in it
    findings: list = field(default_factory=list)   # its own findings: each fails it
    context: list = field(default_factory=list)    # findings about its case as a whole, shown when it fails
    notes: list = field(default_factory=list)      # the report's notes that name its case
    points: float = 1.0
    reason: str = ""          # why it was not graded, when it has no row
    error: str = ""           # the contract part of a file that cannot be graded: why

    @property
    def graded(self) -> bool:
        return self.stage == "contract" or bool(self.rows)

    @property
    def tolerance(self) -> float:
        if self.stage == "train":
            from npformer.exercise.training import RTOL
            return RTOL
        return TOL_PASS

    @property
    def passed(self) -> bool:
        return self.graded and not self.error and not self.findings and all(
            err is not None and not math.isnan(err) and err <= self.tolerance for _, _, err in self.rows)

    @property
    def score(self) -> float:
        return self.points if self.passed else 0.0

    def output(self) -> str:
        if self.error:
            return f"cannot grade: {self.error}"
        if not self.graded:
            return f"not graded: {self.reason}"
        if self.passed:
            errs = [err for _, _, err in self.rows]
            if not errs:
                return "passed: no contract finding" if self.stage == "contract" else "passed: no finding"
            of = f" of {len(errs)} gradients" if len(errs) > 1 else ""
            return f"passed: the largest relative error{of} {max(errs):.1e} (the pass line: {self.tolerance:g})"
        lines = [str(f) for f in self.findings + self.context]
        if not self.findings:  # no finding of its own: wrong as an earlier case was (its rows say)
            bad = [f"{g} [{c}]: relative error {'-' if e is None else f'{e:.1e}'} (the pass line: {self.tolerance:g})"
                   for c, g, e in self.rows if e is None or math.isnan(e) or e > self.tolerance]
            more = [f"... and {len(bad) - SHOWN} more"] if len(bad) > SHOWN else []
            lines = bad[:SHOWN] + more + [f"note: {n}" for n in self.notes] + lines
        return "\n".join(lines)

    def message(self) -> str:
        """One line: passed, not graded, or the first line of the first finding."""
        if not self.graded:
            return "not graded"
        return "passed" if self.passed else self.output().splitlines()[0]


@dataclass
class Draw:
    """One check of the learner's functions: the visible one, or a hidden draw."""
    report: object                      # a Report
    hidden: int = 0                     # 0: the visible draw; k: hidden draw k
    expected: list | None = None        # plan(report): the parts a full check grades
    seconds: float | None = None        # how long the check took
    points: dict | None = None          # this draw's points (an assignment's), else the call's
    error: str | None = None            # the file cannot be graded: why (report: no row, no finding)


def _key(stage, case, gradient) -> tuple:
    return (stage, case, gradient) if stage in PER_GRADIENT else (stage, None, None)


def _name(stage, case, gradient) -> str:
    if stage == "alone":
        return f"{gradient} [{case}]"
    return f"{gradient} [{stage}]" if stage in PER_GRADIENT else stage


def _finding_case(stage: str, case: str) -> str:
    """The case a finding about this row names: CASE alone, STAGE: CASE elsewhere (grader.py)."""
    return case if stage == "alone" else f"{stage}: {case}"


def _points(points: dict | None, part: Part) -> float:
    if not points:
        return 1.0
    value = points.get(part.name, points.get(part.stage, points.get("*", 1.0)))
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"points for {part.name!r}: {value} (a number >= 0)")
    return value


def grade(report, *, expected: list | None = None, points: dict | None = None, error: str | None = None
          ) -> list[Part]:
    """The report's parts, in order: the contract, the parts of ``expected`` (``plan``), then
    every other part its rows grade; each with its findings, points and verdict. ``error``: the
    file cannot be graded, and the contract part fails with it."""
    parts: dict = {}

    def part(stage, case, gradient) -> Part:
        key = _key(stage, case, gradient)
        if key not in parts:
            parts[key] = Part(_name(*key), *key)
        return parts[key]

    contract = part("contract", None, None)
    contract.name = CONTRACT
    contract.error = error or ""
    for stage, case, gradient in expected or []:
        part(stage, case, gradient)
    for stage, case, gradient, err in report.rows:
        part(stage, case, gradient).rows.append((case, gradient, err))
    for f in report.findings:
        if f.tag in CONTRACT_TAGS:
            contract.findings.append(f)
            continue
        if f.tag.startswith(INFORMATIONAL):
            for p in parts.values():
                if any(f.case == _finding_case(p.stage, c) for c, _, _ in p.rows):
                    p.context.append(f)
            continue
        owners = _owners(f, parts.values()) or [contract]
        for p in owners:
            p.findings.append(f)
    blocked = bool(report.findings)
    for p in parts.values():
        p.points = _points(points, p)
        cases = {c for c, _, _ in p.rows}
        p.notes = [n for n in report.notes if f"({p.stage})" in n and any(repr(c) in n for c in cases)]
        if not p.graded:
            blocks = blocked and p.stage.startswith("in ")
            p.reason = ("a block is checked with your functions only when the alone stage has no finding" if blocks
                        else "the check stopped before it: see the contract part")
    return list(parts.values())


def _owners(f, parts) -> list:
    """The parts a finding of one gradient belongs to: the row of its gradient and case; else a
    composition that its case names (positional's "in model"); else the rows of its gradient
    (staged mode's "dvar [staged, in your chain]", train's "loss [step 3]")."""
    for match in (lambda p: any(g == f.gradient and f.case == _finding_case(p.stage, c) for c, g, _ in p.rows),
                  lambda p: p.stage not in PER_GRADIENT and (f.case == p.stage or f.case.startswith(p.stage + ": ")),
                  lambda p: any(g == f.gradient for _, g, _ in p.rows)):
        found = [p for p in parts if p.stage != "contract" and match(p)]
        if found:
            return found
    return []


def plan(report, composed: bool = True) -> list | None:
    """(stage, case, gradient) of every part a full check of the report's exercise grades on its
    seed, from the catalog's cases (composed=False: the alone stage only, as ``check(...,
    composed=False)``); None for a variant, staged mode and train (their parts: the report's)."""
    import numpy as np

    from npformer.backend import get_backend
    from npformer.exercise.catalog import EXERCISES
    from npformer.verify.gradcheck import differentiable
    ex = EXERCISES.get(report.exercise)
    if ex is None or ex.kind == "train":
        return None
    rng, be = np.random.default_rng(report.seed), get_backend("numpy")
    out = []
    if ex.kind == "forward":   # positional.py: the table per case, then the model with it, always
        out += [("alone", f"max_len = {m}, d_model = {d}", "PE") for m, d in ex.cases(rng, be)]
        return out + [("in model", None, None)]
    for case in ex.cases(rng, be):
        out += [("alone", case.name, "d" + n.split(".", 1)[-1]) for n in differentiable(case.inputs)]
    return out + ([(f"in {cid}", None, None) for cid in ex.composed] if composed else [])


def hidden_seeds(exercise: str, n: int, seed: int, secret: str | None = None) -> list[int]:
    """The seeds of ``n`` hidden draws. The k-th (k = 1, 2, ...): the first 4 bytes of
    SHA-256("npformer hidden draw|EXERCISE|SECRET|k"), big-endian, mod 2^31, skipping the visible
    seed and repeats. SECRET is the instructor's secret; without one it is "seed S", the visible
    seed S: the draws then change with the visible seed, and anyone who knows both the seed and
    this rule can repeat them. With a secret they are the same for every submission of the
    exercise, and only the secret's holder can repeat them."""
    base = secret if secret else f"seed {seed}"
    out, k = [], 0
    while len(out) < n:
        k += 1
        digest = hashlib.sha256(f"npformer hidden draw|{exercise}|{base}|{k}".encode()).digest()
        s = int.from_bytes(digest[:4], "big") % (1 << 31)
        if s != seed and s not in out:
            out.append(s)
    return out


def _draws(draws) -> list[Draw]:
    if not isinstance(draws, (list, tuple)):
        draws = [draws]
    return [d if isinstance(d, Draw) else Draw(d) for d in draws]


def _graded(draws, points) -> list:
    return [(d, grade(d.report, expected=d.expected, points=points if d.points is None else d.points,
                      error=d.error)) for d in _draws(draws)]


def unreadable(exercise: str, message: str, *, seed: int = 0, backend: str = "numpy", hidden: int = 0,
               points: dict | None = None) -> Draw:
    """The draw of an assignment's file that cannot be graded: no row, the plan of a full check
    (its maximum), the reason as its error."""
    from npformer.exercise.grader import Report
    report = Report(exercise, False, "failed", seed, backend)
    return Draw(report, hidden=hidden, expected=plan(report), points=points, error=message)


def _total(parts) -> tuple:
    return sum(p.score for p in parts), sum(p.points for p in parts)


def _num(x: float):
    """A whole number of points as an int (1, not 1.0) in the files; a sum of shares of an exercise's
    points (10/13 each) rounded first, so that 49.99999999999999 is written 50."""
    x = round(float(x), 6)
    return int(x) if x.is_integer() else x


def _label(draw: Draw) -> str:
    ex = draw.report.exercise
    return f"{ex}, hidden draw {draw.hidden}" if draw.hidden else ex


def _summary(graded) -> str:
    """The visible draw's text report, then a line per hidden draw (its points, never a finding)."""
    text = [f"{d.report.exercise}: cannot grade: {d.error}" if d.error else str(d.report)
            for d, _ in graded if not d.hidden]
    hidden = [(d, parts) for d, parts in graded if d.hidden]
    if hidden:
        lines = [f"{_label(d)}: {_num(_total(parts)[0])} of {_num(_total(parts)[1])} points" for d, parts in hidden]
        text.append("\n".join(lines))
    return "\n\n".join(text)


def gradescope(draws, *, points: dict | None = None, hidden_visibility: str = "hidden") -> dict:
    """Gradescope's results file as a dict: a test per part of each draw."""
    if hidden_visibility not in VISIBILITIES:
        raise ValueError(f"hidden_visibility {hidden_visibility!r}: one of {', '.join(VISIBILITIES)}")
    graded = _graded(draws, points)
    tests = []
    for d, parts in graded:
        for p in parts:
            test = {"name": f"{_label(d)}: {p.name}", "score": _num(p.score), "max_score": _num(p.points),
                    "status": "passed" if p.passed else "failed", "output": _text(p.output()),
                    "visibility": hidden_visibility if d.hidden else "visible"}
            extra = {"exercise": d.report.exercise, "stage": p.stage, "case": p.case, "gradient": p.gradient,
                     "tags": sorted({f.tag for f in p.findings})}
            if not d.hidden and not d.error:
                extra["seed"] = d.report.seed
            test["extra_data"] = extra
            tests.append(test)
    out = {"score": _num(sum(_total(parts)[0] for _, parts in graded)),
           "output": _text(_summary(graded)), "output_format": "text", "tests": tests}
    seconds = [d.seconds for d, _ in graded if d.seconds is not None]
    if seconds:
        out["execution_time"] = round(sum(seconds), 3)
    return out


def prairielearn(draws, *, points: dict | None = None) -> dict:
    """PrairieLearn's results file as a dict: a test per part of the visible draw, and one per
    hidden draw (PrairieLearn shows every test: a hidden draw shows its points only)."""
    graded = _graded(draws, points)
    tests = []
    for d, parts in graded:
        if d.hidden:
            got, of = _total(parts)
            right = sum(p.passed for p in parts)
            tests.append({"name": f"{_label(d)}", "points": _num(got), "max_points": _num(of),
                          "message": f"{right} of {len(parts)} parts passed on a draw you do not see",
                          "output": ""})
            continue
        for p in parts:
            tests.append({"name": f"{_label(d)}: {p.name}", "points": _num(p.score), "max_points": _num(p.points),
                          "message": _text(p.message()), "output": _text(p.output())})
    got = sum(_total(parts)[0] for _, parts in graded)
    of = sum(_total(parts)[1] for _, parts in graded)
    errors = [f"{d.report.exercise}: {d.error}" for d, _ in graded if d.error and not d.hidden]
    if errors:   # one file that cannot be graded makes the submission not gradable: the attempt is not counted
        return {"gradable": False, "score": 0.0, "message": _text("cannot grade: " + "; ".join(errors)),
                "output": _text(_summary(graded)), "format_errors": [_text(e) for e in errors], "tests": tests}
    verdicts = ", ".join(f"{d.report.exercise}: {d.report.verdict}" for d, _ in graded if not d.hidden) or \
        f"{graded[0][0].report.exercise}: {graded[0][0].report.verdict}"
    return {"gradable": True, "score": (got / of) if of else 0.0,
            "message": f"{verdicts}, {_num(got)} of {_num(of)} points",
            "output": _text(_summary(graded)), "tests": tests}


def junit(draws, *, points: dict | None = None) -> str:
    """JUnit XML: <testsuites> with a <testsuite> per draw, a <testcase> per part."""
    graded = _graded(draws, points)
    root = ET.Element("testsuites")
    n_tests = n_failures = 0
    total_time = 0.0
    n_errors = 0
    for d, parts in graded:
        errors = sum(bool(p.error) for p in parts)
        failures = sum(not p.passed for p in parts) - errors
        got, of = _total(parts)
        suite = ET.SubElement(root, "testsuite", name=_label(d), tests=str(len(parts)), failures=str(failures),
                              errors=str(errors), skipped="0", time=f"{d.seconds or 0.0:.3f}")
        props = ET.SubElement(suite, "properties")
        shown = {"exercise": d.report.exercise, "hidden": "true" if d.hidden else "false",
                 "verdict": d.report.verdict, "backend": d.report.backend, "score": _num(got), "max_score": _num(of)}
        if not d.hidden and not d.error:
            shown["seed"] = d.report.seed
        for k, v in shown.items():
            ET.SubElement(props, "property", name=k, value=_text(str(v)))
        classname = _classname(d.report.exercise, d.hidden)
        for p in parts:
            case = ET.SubElement(suite, "testcase", classname=classname, name=_text(p.name), time="0")
            if p.error:
                err = ET.SubElement(case, "error", message=_text(p.error), type="ExerciseError")
                err.text = _text(p.output())
            elif not p.passed:
                kind = ",".join(sorted({f.tag for f in p.findings})) or (
                    "relative error" if p.graded else "not graded")
                fail = ET.SubElement(case, "failure", message=_text(p.message()), type=_text(kind))
                fail.text = _text(p.output())
            out = ET.SubElement(case, "system-out")
            out.text = f"{_num(p.score)} of {_num(p.points)} points"
        n_tests += len(parts)
        n_failures += failures
        n_errors += errors
        total_time += d.seconds or 0.0
    exercises = ", ".join(dict.fromkeys(d.report.exercise for d, _ in graded))
    root.set("name", f"npformer exercise check {exercises}")
    root.set("tests", str(n_tests))
    root.set("failures", str(n_failures))
    root.set("errors", str(n_errors))
    root.set("time", f"{total_time:.3f}")
    return _xml(root)


def _classname(exercise: str, hidden: int = 0) -> str:
    ident = re.sub(r"\W+", "_", exercise).strip("_")
    return f"npformer.exercise.{ident}" + (f".hidden_draw_{hidden}" if hidden else "")


def _xml(root) -> str:
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _text(s: str) -> str:
    """Text any of the three files can hold: no control character but tab and newline (XML 1.0
    has none; an exception message of the learner's may)."""
    return _NOT_XML.sub("", s)


def cannot_grade(platform: str, exercise: str, message: str):
    """The results of a submission that cannot be graded (``ExerciseError``): a dict for the JSON
    platforms, the XML text for junit."""
    message = _text(message)
    if platform == "gradescope":
        return {"score": 0, "output": f"{exercise}: cannot grade: {message}", "output_format": "text", "tests": []}
    if platform == "prairielearn":
        return {"gradable": False, "score": 0.0, "message": f"{exercise}: cannot grade: {message}",
                "output": "", "format_errors": [message], "tests": []}
    if platform == "junit":
        root = ET.Element("testsuites", name=f"npformer exercise check {exercise}", tests="1", failures="0",
                          errors="1", time="0.000")
        suite = ET.SubElement(root, "testsuite", name=exercise, tests="1", failures="0", errors="1", skipped="0",
                              time="0.000")
        case = ET.SubElement(suite, "testcase", classname=_classname(exercise), name="cannot grade",
                             time="0")
        err = ET.SubElement(case, "error", message=message, type="ExerciseError")
        err.text = message
        return _xml(root)
    raise ValueError(f"platform {platform!r}: one of {', '.join(PLATFORMS)}")


def results(platform: str, draws, *, points: dict | None = None) -> str:
    """The text of the platform's results file for these draws."""
    if platform == "gradescope":
        return _json(gradescope(draws, points=points))
    if platform == "prairielearn":
        return _json(prairielearn(draws, points=points))
    if platform == "junit":
        return junit(draws, points=points)
    raise ValueError(f"platform {platform!r}: one of {', '.join(PLATFORMS)}")


def _json(obj) -> str:
    return json.dumps(obj, indent=2, allow_nan=False) + "\n"


def text_of(content) -> str:
    """A results dict (``gradescope``, ``prairielearn``, ``cannot_grade``) as its file's text; XML as it is."""
    return content if isinstance(content, str) else _json(content)


def write(path: str, text: str) -> str:
    """Write the results file, making its folder (PrairieLearn's /grade/results is not made for
    you); returns the path."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path
