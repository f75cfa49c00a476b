"""An assignment, built for learners and for the course platforms (``npformer course build``).

    DIR/assignment.json        the exercises, their points and hidden draws (autograder.py)
    DIR/hidden_secret          with --hidden-seeds: the secret the hidden draws come from
    DIR/student/               what learners get: README.md (the order, how to check, what to
                               hand in), exercises/ID.py (the stubs ``exercise start`` writes),
                               notebooks/ID.ipynb (notebooks.py) and npformer's wheel
    DIR/solution/              ID.py: the reference answers, never in student/
    DIR/gradescope/autograder.zip
                               setup.sh, run_autograder, a copy of DIR/assignment.json, the
                               wheel (and the secret): Gradescope's "Autograder Specifications"
    DIR/prairielearn/          one externally graded question: DIR/prairielearn/info.json,
                               question.html and tests/ (run.sh, the assignment, the wheel, the
                               secret), as PrairieLearn's "External Grading" lays it out

Both graders run the same command on the learner's files, ``npformer course grade``, and write
the platform's results file (platforms.py). A CI course with JUnit runs it too, on
DIR/assignment.json. The scripts take their root from ``AUTOGRADER_ROOT`` (default
/autograder for Gradescope, /grade for PrairieLearn), so that a test can run them elsewhere.

Gradescope builds an image once with setup.sh (as root, on Ubuntu): a virtualenv in the root,
npformer's wheel installed into it, NumPy from the package index, nothing else; ``PYTHON``
names the interpreter (default python3). PrairieLearn's grader image
(prairielearn/grader-python) has NumPy and no network: run.sh installs the wheel with
``--no-deps --no-index`` into a folder of the job, so no package is fetched at all.

Every mistake a user can make (an unknown exercise, a folder that is not empty, a points file
that names an exercise outside the assignment or gives a number <= 0) is a ``UserError``,
raised before anything is written.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import stat
import tempfile
import textwrap
import uuid
import zipfile

from npformer.course import autograder, notebooks, wheel
from npformer.errors import UserError

WRITTEN = ("student", "solution", "gradescope", "prairielearn", autograder.ASSIGNMENT, autograder.SECRET)
PL_IMAGE = "prairielearn/grader-python"
SECONDS_PER_DRAW = 20   # PrairieLearn's timeout per graded draw: a check takes about 4 s on one core

SETUP_SH = """\
#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder's image: npformer's wheel
# (beside this script) into a virtualenv of its own. NumPy is the one package from the index.
set -euo pipefail
ROOT="${AUTOGRADER_ROOT:-/autograder}"
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -m venv "$ROOT/venv"; then
    # Ubuntu's python3 comes without venv and pip
    rm -rf "$ROOT/venv"
    apt-get install -y python3-venv python3-pip
    "$PYTHON" -m venv "$ROOT/venv"
fi
"$ROOT/venv/bin/python" -m pip install --quiet "$ROOT/source/%(wheel)s"
"$ROOT/venv/bin/python" -m npformer course grade --help > /dev/null   # it runs, from the virtualenv
"""

RUN_AUTOGRADER = """\
#!/usr/bin/env bash
# Gradescope runs this for each submission: the learner's ID.py files in submission/, graded,
# into the results file. Exit 0, 1 (an exercise failed) and 2 (a file cannot be graded) all
# leave results; anything else, or no results file, is the autograder's failure, not the learner's.
set -uo pipefail
ROOT="${AUTOGRADER_ROOT:-/autograder}"
"$ROOT/venv/bin/python" -m npformer course grade "$ROOT/source/assignment.json" \\
    --submission "$ROOT/submission" --report gradescope --report-file "$ROOT/results/results.json"
code=$?
[ "$code" -le 2 ] && [ -s "$ROOT/results/results.json" ]
"""

PL_RUN_SH = """\
#!/usr/bin/env bash
# PrairieLearn's entrypoint (the question's info file names it): the files in student/, graded, into results/.
# The grader image has NumPy and no network: the wheel goes in without dependencies or an index.
set -uo pipefail
ROOT="${AUTOGRADER_ROOT:-/grade}"
PYTHON="${PYTHON:-python3}"
"$PYTHON" -m pip install --quiet --no-deps --no-index --target "$ROOT/npformer-lib" \\
    "$ROOT/tests/%(wheel)s" || exit 3
PYTHONPATH="$ROOT/npformer-lib" "$PYTHON" -m npformer course grade "$ROOT/tests/assignment.json" \\
    --submission "$ROOT/student" --report prairielearn --report-file "$ROOT/results/results.json"
code=$?
[ "$code" -le 2 ] && [ -s "$ROOT/results/results.json" ]
"""


def read_points(path: str | None, ids) -> dict:
    """The points file (JSON: exercise id -> points > 0), checked against the assignment."""
    if path is None:
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            points = json.load(f)
    except OSError as e:
        raise UserError(f"--points {path}: {e.strerror or e}") from None
    except ValueError as e:
        raise UserError(f"--points {path}: not JSON ({e})") from None
    try:
        return autograder.check_points(points, ids)
    except UserError as e:
        raise UserError(f"--points {path}: {e}") from None


def _check_out(out: str, force: bool) -> None:
    if os.path.isdir(out) and os.listdir(out) and not force:
        raise UserError(f"--out {out} is not empty: pass --force to replace what an earlier build wrote there")


def _write(path: str, text: str, executable: bool = False) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    if executable:
        os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def student_readme(a: autograder.Assignment, wheel_name: str) -> str:
    from npformer.exercise import EXERCISES
    rows = []
    for n, eid in enumerate(a.exercises, 1):
        ex = EXERCISES[eid]
        worth = f"{a.points[eid]:g} points" if eid in a.points else "1 point per graded part"
        rows.append(f"{n}. `{eid}`: {ex.title}. You write {', '.join(f'`{f}`' for f in ex.functions)} in "
                    f"`exercises/{eid}.py` ({worth}). Derivation: `{ex.anchor}` in npformer's source. "
                    f"Builds on: {', '.join(ex.prereqs) or 'nothing'}.")
    hidden = (f"\n\nThe grader also checks each exercise on {a.hidden_seeds} more draw(s) of shapes and values "
              "that you do not see: an answer right for every shape passes them all." if a.hidden_seeds else "")
    return "\n".join([
        "# Your assignment: the backward passes, written by you", "",
        "Write each function, check it on your machine as often as you like, then hand in the files. "
        "Take the exercises in this order (each builds on the ones before):", "", *rows, "",
        "## Install npformer (once)", "", "```sh",
        f"python3 -m venv .venv && . .venv/bin/activate && pip install {wheel_name}",
        "```", "",
        "For the notebooks, also `pip install nbformat jupyter` (or open them in any Jupyter).", "",
        "## Check your work", "", "From this folder:", "", "```sh",
        f"npformer exercise check {a.exercises[0]} --dir exercises   # exit 0: passed; it says which gradient "
        "is wrong, where, and how",
        f"npformer exercise hint {a.exercises[0]} --level 1          # the concept; 2: the structure; 3: what "
        "to read",
        "npformer exercise list --dir exercises                  # your status on each", "```", "",
        "In a notebook: `notebooks/ID.ipynb` holds the same stub; its last cell grades the cell above it "
        "(copy your functions into `exercises/ID.py` to hand them in).", "",
        "## Hand in", "",
        f"The files {', '.join(f'`{e}.py`' for e in a.exercises)} (from `exercises/`), with these names. "
        "The grader runs the same check as above, one test per graded part (the contract, each gradient of "
        f"each case, each block your function is run inside).{hidden}", ""])


def info_json(a: autograder.Assignment) -> str:
    key = "npformer assignment: " + ",".join(a.exercises)
    timeout = min(600, 30 + SECONDS_PER_DRAW * len(a.exercises) * (1 + a.hidden_seeds))
    info = {"uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, key)),   # the same exercises keep their question
            "title": "npformer: " + ", ".join(a.exercises), "topic": "Backpropagation",
            "tags": ["npformer"], "type": "v3", "singleVariant": True, "gradingMethod": "External",
            "externalGradingOptions": {"enabled": True, "image": PL_IMAGE, "entrypoint": "/grade/tests/run.sh",
                                       "timeout": timeout}}
    return json.dumps(info, indent=2) + "\n"


def question_html(a: autograder.Assignment) -> str:
    from npformer.exercise import EXERCISES
    items = "\n".join(f"    <li><code>{e}.py</code>: {EXERCISES[e].title}, "
                      f"<code>{', '.join(EXERCISES[e].functions)}</code></li>" for e in a.exercises)
    return textwrap.dedent("""\
        <pl-question-panel>
          <p>Write the backward passes below, each in its own file, with the names and signatures of the
          stubs you were given (<code>npformer exercise start ID</code>), and upload the files.</p>
          <ol>
        {items}
          </ol>
          <p>Each file is graded against central differences: a test per graded part, and a finding that
          says which gradient is wrong, where and how.</p>
          <pl-file-upload file-names="{names}"></pl-file-upload>
        </pl-question-panel>

        <pl-submission-panel>
          <pl-external-grader-results></pl-external-grader-results>
          <pl-file-preview></pl-file-preview>
        </pl-submission-panel>
        """).format(items=items, names=", ".join(f"{e}.py" for e in a.exercises))


def _zip(path: str, files: dict) -> None:
    """files: name in the zip -> (bytes, executable)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, (data, executable) in files.items():
            entry = zipfile.ZipInfo(name, date_time=wheel.FIXED_DATE)
            entry.external_attr = (0o755 if executable else 0o644) << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(entry, data)


def build(ids, out: str, *, hidden_seeds: int = 0, points_file: str | None = None, force: bool = False) -> dict:
    """Write the assignment of ``ids`` into ``out``; what was written, for the command to print."""
    from npformer.exercise import files
    exercises = autograder.check_exercises(list(ids))
    points = read_points(points_file, exercises)
    _check_out(out, force)
    secret = (os.environ.get("NPFORMER_HIDDEN_SECRET") or secrets.token_hex(16)) if hidden_seeds else None
    a = autograder.Assignment(exercises, points, hidden_seeds, secret)
    with tempfile.TemporaryDirectory() as tmp:
        whl = wheel.build(tmp)   # first: without installed metadata it refuses, and nothing is written
        name = os.path.basename(whl)
        with open(whl, "rb") as f:
            whl_bytes = f.read()
    for item in WRITTEN:   # --force: what an earlier build wrote, and nothing else
        path = os.path.join(out, item)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)
    os.makedirs(out, exist_ok=True)
    spec = a.as_json()
    shared = {autograder.ASSIGNMENT: spec.encode(), name: whl_bytes}
    if secret:
        shared[autograder.SECRET] = (secret + "\n").encode()
    _write(os.path.join(out, autograder.ASSIGNMENT), spec)   # the instructor's copies, for a CI course
    if secret:
        _write(os.path.join(out, autograder.SECRET), secret + "\n")

    student = os.path.join(out, "student")
    for eid in exercises:
        _write(files.path_of(eid, os.path.join(student, "exercises")), files.template(eid))
        notebooks.write(eid, os.path.join(student, "notebooks"))
        _write(os.path.join(out, "solution", f"{eid}.py"), files.reference_text(eid))
    _write(os.path.join(student, "README.md"), student_readme(a, name))
    with open(os.path.join(student, name), "wb") as f:
        f.write(whl_bytes)

    gradescope = os.path.join(out, "gradescope", "autograder.zip")
    os.makedirs(os.path.dirname(gradescope))
    _zip(gradescope, {"setup.sh": ((SETUP_SH % {"wheel": name}).encode(), True),
                      "run_autograder": (RUN_AUTOGRADER.encode(), True),
                      **{item: (data, False) for item, data in shared.items()}})

    pl = os.path.join(out, "prairielearn")
    _write(os.path.join(pl, "info.json"), info_json(a))
    _write(os.path.join(pl, "question.html"), question_html(a))
    _write(os.path.join(pl, "tests", "run.sh"), PL_RUN_SH % {"wheel": name}, executable=True)
    for item, data in shared.items():
        with open(os.path.join(pl, "tests", item), "wb") as f:
            f.write(data)
    return {"out": out, "exercises": list(exercises), "points": points, "hidden_seeds": hidden_seeds,
            "wheel": name, "student": student, "solution": os.path.join(out, "solution"),
            "gradescope": gradescope, "prairielearn": pl}
