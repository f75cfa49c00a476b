"""``npformer course build``, end to end: an assignment of linear, layernorm and attention, built,
then graded as each platform grades it.

* Gradescope: autograder.zip unzipped into a root of its own (``AUTOGRADER_ROOT``), setup.sh run
  there (a fresh virtualenv: npformer's wheel from the bundle, NumPy from the index or pip's
  cache), then run_autograder on three submissions: the reference answers (full score), one known
  mistake per exercise (a partial score; the failing test names the gradient and the mistake) and
  files with a syntax error (zero, with the reason);
* PrairieLearn: the question's tests/run.sh, on the same machine, into /grade's stand-in
  (gradable false for the syntax error);
* JUnit: ``npformer course grade --report junit``, as a CI course runs it.

Every results file is checked against its platform's documented format (the schemas and the
JUnit checks of test_platforms.py), and student/ against every form of the answer that
test_stubs.py knows (the reference's statements, its docstring's equations, the final formulas).
"""
import importlib.util
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from npformer.cli import main
from npformer.course import platforms
from npformer.exercise import EXERCISES, mistakes
from npformer.exercise.mistakes import MISTAKES

ROOT = Path(__file__).resolve().parents[2]
IDS = ("linear", "layernorm", "attention")
POINTS = {"linear": 10, "layernorm": 20, "attention": 30}


def _sibling(relative: str, name: str):
    """A test module of this repository, by path (tests are no package), for its helpers."""
    spec = importlib.util.spec_from_file_location(name, ROOT / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


stubs = _sibling("tests/exercise/test_stubs.py", "npformer_tests_stubs")   # _leaks: every form of the answer
validated = _sibling("tests/course/test_platforms.py", "npformer_tests_platforms").validated

# One known mistake per exercise (mistakes.py): its name, the gradient it breaks, and the learner's
# function, bound from the mistake's own source (the helpers it names are copied into the file).
MISTAKE = {
    "linear": ("dW_transposed", "dW", "def linear_backward(dy, cache):\n"
               "    return _linear(dy, cache, dW_transposed=True)"),
    "layernorm": ("no_gamma_in_dx", "dx", "def layernorm_backward(dy, cache):\n"
                  "    return _ln(dy, cache, gamma_in_dx=False)"),
    "attention": ("no_scale", "dQ", "def attention_backward(dout, cache):\n"
                  "    return _attention(dout, cache, scale_power=0)"),
}
SYNTAX_ERROR = "def {name}(dy, cache:\n    return dy\n"


def _helpers(text: str) -> list:
    """The functions of mistakes.py that ``text`` names, and the ones they name, in source order."""
    found, todo = {}, re.findall(r"\b_\w+", text)
    while todo:
        name = todo.pop()
        fn = getattr(mistakes, name, None)
        if inspect.isfunction(fn) and name not in found:
            found[name] = fn
            todo += list(fn.__code__.co_names)
    return sorted(found.values(), key=lambda f: f.__code__.co_firstlineno)


def mistake_file(eid: str) -> str:
    binding = MISTAKE[eid][2]
    sources = [inspect.getsource(f) for f in _helpers(binding)]
    return "import numpy as np  # noqa: F401\n\n\n" + "\n\n".join(sources) + "\n\n" + binding + "\n"


def description(eid: str) -> str:
    return next(m.description for m in MISTAKES[eid] if m.name == MISTAKE[eid][0])


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """The built assignment's folder: 10, 20 and 30 points, one hidden draw each."""
    base = tmp_path_factory.mktemp("course")
    points = base / "points.json"
    points.write_text(json.dumps(POINTS))
    out = base / "out"
    assert main(["course", "build", *IDS, "--out", str(out), "--points", str(points), "--hidden-seeds", "1"]) == 0
    return out


@pytest.fixture(scope="module")
def submissions(course, tmp_path_factory):
    """Three learners' folders of ID.py files: right, one known mistake each, a syntax error each."""
    base = tmp_path_factory.mktemp("submissions")
    folders = {kind: base / kind for kind in ("right", "mistake", "syntax")}
    for folder in folders.values():
        folder.mkdir()
    for eid in IDS:
        shutil.copy(course / "solution" / f"{eid}.py", folders["right"] / f"{eid}.py")
        (folders["mistake"] / f"{eid}.py").write_text(mistake_file(eid))
        name = EXERCISES[eid].functions[0]
        (folders["syntax"] / f"{eid}.py").write_text(SYNTAX_ERROR.format(name=name))
    return folders


def bundle_env(**extra) -> dict:
    """The environment of a platform's script: none of this checkout on the path, one BLAS thread."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "NPFORMER_DEBUG")}
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", **extra)
    return env


@pytest.fixture(scope="module")
def gradescope_root(course, tmp_path_factory):
    """/autograder's stand-in after Gradescope's image build: source/ unzipped, setup.sh run."""
    root = tmp_path_factory.mktemp("autograder")
    with zipfile.ZipFile(course / "gradescope" / "autograder.zip") as z:
        assert {"setup.sh", "run_autograder"} <= set(z.namelist())   # at the zip's root, as Gradescope reads it
        z.extractall(root / "source")
    for script in ("setup.sh", "run_autograder"):
        (root / "source" / script).chmod(0o755)   # zipfile does not restore the mode; Gradescope's unzip does
    shutil.copy(root / "source" / "run_autograder", root / "run_autograder")
    proc = subprocess.run(["bash", str(root / "source" / "setup.sh")], capture_output=True, text=True,
                          env=bundle_env(AUTOGRADER_ROOT=str(root), PYTHON=sys.executable), timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    venv_python = root / "venv" / "bin" / "python"
    where = subprocess.run([str(venv_python), "-c", "import npformer; print(npformer.__file__)"],
                           capture_output=True, text=True, cwd=root, env=bundle_env())
    assert str(root / "venv") in where.stdout, where.stdout + where.stderr   # the wheel's copy, not this checkout
    return root


def run_gradescope(root: Path, submission: Path) -> dict:
    shutil.rmtree(root / "submission", ignore_errors=True)
    shutil.rmtree(root / "results", ignore_errors=True)
    shutil.copytree(submission, root / "submission")
    proc = subprocess.run([str(root / "run_autograder")], capture_output=True, text=True, cwd=root,
                          env=bundle_env(AUTOGRADER_ROOT=str(root)), timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return validated("gradescope", (root / "results" / "results.json").read_text(encoding="utf-8"))


def parts_of(results: dict, eid: str, visibility="visible") -> dict:
    return {t["name"].split(": ", 1)[1]: t for t in results["tests"]
            if t["name"].startswith(f"{eid}: ") and t["visibility"] == visibility}


def test_gradescope_a_right_submission_gets_every_point(gradescope_root, submissions, course):
    gs = run_gradescope(gradescope_root, submissions["right"])
    assert gs["score"] == sum(POINTS.values())
    assert {t["status"] for t in gs["tests"]} == {"passed"}
    for eid in IDS:
        shown, hidden = parts_of(gs, eid), parts_of(gs, f"{eid}, hidden draw 1", "hidden")
        assert shown and len(hidden) == len(shown)   # every draw has the same parts
        assert sum(t["max_score"] for t in [*shown.values(), *hidden.values()]) == pytest.approx(POINTS[eid])
    secret = (course / "hidden_secret").read_text().strip()
    for eid in IDS:
        seed = next(iter(parts_of(gs, eid).values()))["extra_data"]["seed"]
        hidden_seed, = platforms.hidden_seeds(eid, 1, seed, secret)
        assert str(hidden_seed) not in json.dumps(gs)   # a hidden draw's seed is written nowhere


def test_gradescope_a_known_mistake_per_exercise_gets_a_partial_score_that_names_it(gradescope_root, submissions):
    gs = run_gradescope(gradescope_root, submissions["mistake"])
    assert 0 < gs["score"] < sum(POINTS.values())
    for eid in IDS:
        gradient = MISTAKE[eid][1]
        failed = [t for name, t in parts_of(gs, eid).items() if name.startswith(f"{gradient} [")
                  and t["status"] == "failed"]
        assert failed, eid
        assert any(f"this is a known mistake: {description(eid)}" in t["output"] for t in failed), failed[0]["output"]
        assert any(t["status"] == "passed" for t in parts_of(gs, eid).values())   # the other gradients earn theirs


def test_gradescope_a_syntax_error_scores_zero_and_says_why(gradescope_root, submissions):
    gs = run_gradescope(gradescope_root, submissions["syntax"])
    assert gs["score"] == 0 and {t["status"] for t in gs["tests"]} == {"failed"}
    for eid in IDS:
        contract = parts_of(gs, eid)["the contract"]
        assert "cannot grade" in contract["output"] and "syntax error" in contract["output"]
        assert sum(t["max_score"] for t in gs["tests"] if t["name"].startswith(eid)) == pytest.approx(POINTS[eid])
    assert "syntax error" in gs["output"]


def run_prairielearn(course: Path, venv_python: Path, submission: Path, tmp: Path) -> dict:
    """/grade's stand-in: the question's tests/ and the learner's files, run.sh as the entrypoint."""
    info = json.loads((course / "prairielearn" / "info.json").read_text())
    entry = info["externalGradingOptions"]["entrypoint"]
    assert entry.startswith("/grade/")
    grade = tmp / "grade"
    shutil.copytree(course / "prairielearn" / "tests", grade / "tests")
    shutil.copytree(submission, grade / "student")
    script = grade / entry[len("/grade/"):]
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, cwd=tmp, timeout=600,
                          env=bundle_env(AUTOGRADER_ROOT=str(grade), PYTHON=str(venv_python)))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return validated("prairielearn", (grade / "results" / "results.json").read_text(encoding="utf-8"))


def test_prairielearn_question_layout(course):
    """info.json's documented fields, the entrypoint in tests/ (copied to /grade/tests), the upload."""
    q = course / "prairielearn"
    info = json.loads((q / "info.json").read_text())
    assert info["type"] == "v3" and info["gradingMethod"] == "External" and re.fullmatch(r"[0-9a-f-]{36}",
                                                                                            info["uuid"])
    options = info["externalGradingOptions"]
    assert set(options) <= {"enabled", "image", "entrypoint", "serverFilesCourse", "timeout", "enableNetworking",
                            "environment"}
    assert options["enabled"] is True and options["image"] and 30 <= options["timeout"] <= 600
    assert (q / "tests" / options["entrypoint"].rsplit("/", 1)[1]).stat().st_mode & 0o111
    html = (q / "question.html").read_text()
    names, = re.findall(r'<pl-file-upload file-names="([^"]+)">', html)
    assert [n.strip() for n in names.split(",")] == [f"{e}.py" for e in IDS]
    assert "<pl-external-grader-results>" in html


def test_prairielearn_grades_a_mistake_and_refuses_a_syntax_error(course, gradescope_root, submissions, tmp_path):
    venv_python = gradescope_root / "venv" / "bin" / "python"   # a fresh environment with NumPy, as the image has
    pl = run_prairielearn(course, venv_python, submissions["mistake"], tmp_path / "mistake")
    assert pl["gradable"] is True and 0 < pl["score"] < 1
    dW = next(t for t in pl["tests"] if t["name"].startswith("linear: dW [") and t["points"] == 0)
    assert f"this is a known mistake: {description('linear')}" in dW["output"]
    hidden = [t for t in pl["tests"] if "hidden draw" in t["name"]]
    assert len(hidden) == len(IDS) and all(t["output"] == "" for t in hidden)
    pl = run_prairielearn(course, venv_python, submissions["syntax"], tmp_path / "syntax")
    assert pl["gradable"] is False and len(pl["format_errors"]) == len(IDS)
    assert all("syntax error" in e for e in pl["format_errors"])


def test_junit_for_a_ci_course(course, submissions, tmp_path, capsys):
    out = tmp_path / "junit.xml"
    code = main(["course", "grade", str(course / "assignment.json"), "--submission", str(submissions["mistake"]),
                 "--report", "junit", "--report-file", str(out), "--seed", "4"])
    assert code == 1 and "linear: failed" in capsys.readouterr().out
    xml = validated("junit", out.read_text(encoding="utf-8"))
    assert [s.get("name") for s in xml.findall("testsuite")] == [n for e in IDS for n in (e, f"{e}, hidden draw 1")]
    failure = xml.find("testsuite[@name='layernorm']/testcase[@name='dx [random shapes]']/failure")
    assert failure is not None and description("layernorm") in failure.text
    code = main(["course", "grade", str(course / "assignment.json"), "--submission", str(submissions["syntax"]),
                 "--report", "junit", "--report-file", str(out)])
    assert code == 2
    xml = validated("junit", out.read_text(encoding="utf-8"))
    errors = xml.findall("testsuite/testcase/error")
    assert len(errors) == 2 * len(IDS) and all("syntax error" in e.get("message") for e in errors)


def _texts(folder: Path) -> dict:
    """Every text a learner reads in ``folder``: files as they are, notebooks' cells joined."""
    import nbformat
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.suffix == ".ipynb":
            out[path] = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells)
        elif path.suffix in (".py", ".md"):
            out[path] = path.read_text(encoding="utf-8")
    return out


def test_student_folder_holds_no_form_of_the_answer_and_solution_does(course):
    student = _texts(course / "student")
    assert {p.name for p in student} == {"README.md", *(f"{e}.py" for e in IDS), *(f"{e}.ipynb" for e in IDS)}
    for eid in IDS:
        for path, text in student.items():
            assert stubs._leaks(text, eid) == [], path
    for eid in IDS:   # the search finds the answer where it is: it cannot pass by finding nothing anywhere
        assert stubs._leaks((course / "solution" / f"{eid}.py").read_text(), eid)
    assert not any(p.name == "hidden_secret" for p in (course / "student").rglob("*"))
    secret = (course / "hidden_secret").read_text().strip()
    assert all(secret not in text for text in student.values())


def test_build_refuses_a_users_mistakes_before_writing(tmp_path, capsys):
    points = tmp_path / "points.json"
    cases = [(["nope"], None, "unknown exercise"), (["train"], None, "train"), (["gelu"], None, "variant"),
             (["relu"], {"linear": 3}, "not an exercise of this assignment"), (["relu"], {"relu": 0}, "> 0"),
             (["relu"], {"relu": True}, "> 0"), (["relu"], ["relu"], "JSON object"), (["relu"], "{", "not JSON")]
    for ids, value, words in cases:
        args = ["course", "build", *ids, "--out", str(tmp_path / "out")]
        if value is not None:
            points.write_text(value if isinstance(value, str) else json.dumps(value))
            args += ["--points", str(points)]
        assert main(args) == 2, (ids, value)
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and words in err, err
        assert not (tmp_path / "out").exists()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    assert main(["course", "build", "relu", "--out", str(tmp_path / "out")]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["course", "build", "relu", "--out", str(tmp_path / "out"), "--force", "--json"]) == 0
    done = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert done["exercises"] == ["relu"] and (tmp_path / "out" / "notes.txt").read_text() == "mine"
