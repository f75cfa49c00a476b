"""The results files of ``npformer exercise check --report`` (npformer/course/platforms.py).

Every file a test here writes is checked against its platform's documented format: the two
results.json against tests/course/schemas/ (JSON Schema, draft 2020-12), JUnit XML with
xml.etree (and with junitparser, where it is installed)."""
import hashlib
import json
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest

from npformer.cli import main
from npformer.course import platforms
from npformer.exercise import EXERCISES, Report, check, files

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = Path(__file__).parent / "schemas"
N_LAYERNORM = 10   # the contract, dx, dgamma and dbeta of two cases, and three compositions


def validated(platform: str, text: str):
    """The file's content, parsed, once it is shown to follow the platform's format."""
    if platform == "junit":
        return junit_checked(text)
    obj = json.loads(text)
    schema = json.loads((SCHEMAS / f"{platform}_results.schema.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(obj, schema, cls=jsonschema.Draft202012Validator)
    if platform == "prairielearn":
        assert len(text.encode()) < 1 << 20   # PrairieLearn reads at most 1 MB
    for test in obj.get("tests", []):
        assert 0 <= test.get("score", test.get("points", 0)) <= test.get("max_score", test.get("max_points", 0))
    return obj


def junit_checked(text: str) -> ET.Element:
    root = ET.fromstring(text)
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert suites and all(child.tag == "testsuite" for child in root)
    for suite in suites:
        cases = suite.findall("testcase")
        assert {"name", "tests", "failures", "errors"} <= set(suite.attrib)
        assert int(suite.get("tests")) == len(cases)
        assert int(suite.get("failures")) == sum(c.find("failure") is not None for c in cases)
        assert int(suite.get("errors")) == sum(c.find("error") is not None for c in cases)
        float(suite.get("time"))
        for prop in suite.iterfind("properties/property"):
            assert set(prop.attrib) == {"name", "value"}
        for case in cases:
            assert {"classname", "name", "time"} <= set(case.attrib)
            float(case.get("time"))
            assert {c.tag for c in case} <= {"failure", "error", "skipped", "system-out", "system-err"}
            for bad in case.findall("failure") + case.findall("error"):
                assert bad.get("message") and bad.text
    for total in ("tests", "failures", "errors"):
        assert int(root.get(total)) == sum(int(s.get(total)) for s in suites)
    try:
        from junitparser import JUnitXml
    except ImportError:
        return root
    parsed = JUnitXml.fromstring(text.encode("utf-8"))
    assert sum(1 for suite in parsed for _ in suite) == int(root.get("tests"))
    assert sum(1 for suite in parsed for case in suite if not case.is_passed) == \
        int(root.get("failures")) + int(root.get("errors"))
    return root


def properties(suite) -> dict:
    return {p.get("name"): p.get("value") for p in suite.iterfind("properties/property")}


def write(folder: Path, eid: str, text: str) -> str:
    (folder / f"{eid}.py").write_text(text, encoding="utf-8")
    return str(folder)


def gamma_left_out() -> str:
    """layernorm with dx missing gamma: dgamma and dbeta right, dx wrong."""
    right = files.reference_text("layernorm")
    wrong = right.replace("g = dy * gamma", "g = dy * 1.0")   # g, the gradient reaching xhat, feeds dx only
    assert wrong != right
    return wrong


@pytest.fixture(scope="module")
def passed(tmp_path_factory):
    """The reference layernorm, written to a folder, checked in full (the compositions too)."""
    folder = write(tmp_path_factory.mktemp("right"), "layernorm", files.reference_text("layernorm"))
    report = check("layernorm", files.load("layernorm", folder), seed=5, quiet=True)
    assert report.passed
    return platforms.Draw(report, expected=platforms.plan(report), seconds=1.5)


@pytest.fixture(scope="module")
def dx_wrong(tmp_path_factory):
    folder = write(tmp_path_factory.mktemp("wrong"), "layernorm", gamma_left_out())
    report = check("layernorm", files.load("layernorm", folder), seed=5, quiet=True)
    assert not report.passed
    return report


def test_a_correct_answer_gets_full_score_on_each_platform(passed):
    gs = validated("gradescope", platforms.results("gradescope", passed))
    assert len(gs["tests"]) == N_LAYERNORM and gs["score"] == N_LAYERNORM
    assert {t["status"] for t in gs["tests"]} == {"passed"} and all(t["score"] == t["max_score"] == 1
                                                                    for t in gs["tests"])
    assert [t["name"] for t in gs["tests"]][:2] == ["layernorm: the contract", "layernorm: dx [random shapes]"]
    assert [t["name"] for t in gs["tests"]][-3:] == [f"layernorm: in {b}" for b in ("encoder_layer", "decoder_layer",
                                                                                   "model")]
    assert gs["output"] == str(passed.report) and gs["output_format"] == "text" and gs["execution_time"] == 1.5
    pl = validated("prairielearn", platforms.results("prairielearn", passed))
    assert pl["gradable"] is True and pl["score"] == 1.0 and len(pl["tests"]) == N_LAYERNORM
    assert all(t["points"] == t["max_points"] == 1 and t["message"] == "passed" for t in pl["tests"])
    xml = validated("junit", platforms.results("junit", passed))
    suite, = xml.findall("testsuite")
    assert xml.get("tests") == str(N_LAYERNORM) and xml.get("failures") == xml.get("errors") == "0"
    assert properties(suite) == {"exercise": "layernorm", "hidden": "false", "verdict": "passed", "backend": "numpy",
                                 "score": str(N_LAYERNORM), "max_score": str(N_LAYERNORM), "seed": "5"}


def test_the_plan_is_the_parts_a_full_check_grades(passed, tmp_path):
    """plan() lists, from the catalog, exactly the parts of a full check's rows: here for layernorm
    with its compositions, and for every exercise's alone stage."""
    graded = {(s, c, g) if s == "alone" else (s, None, None) for s, c, g, _ in passed.report.rows}
    assert platforms.plan(passed.report) == list(dict.fromkeys(
        (s, c, g) if s == "alone" else (s, None, None) for s, c, g, _ in passed.report.rows))
    assert len(graded) == N_LAYERNORM - 1
    for eid, ex in EXERCISES.items():
        if ex.kind == "train":
            continue
        report = check(eid, files.load(eid, write(tmp_path, eid, files.reference_text(eid))), seed=3, quiet=True,
                       composed=False)
        assert report.passed, eid
        rows = list(dict.fromkeys((s, c, g) if s == "alone" else (s, None, None) for s, c, g, _ in report.rows))
        assert platforms.plan(report, composed=False) == rows, eid
    assert platforms.plan(Report("train", False, "failed", 0, "numpy")) is None


def test_dgamma_and_dbeta_earn_their_points_when_dx_is_wrong(dx_wrong):
    draw = platforms.Draw(dx_wrong, expected=platforms.plan(dx_wrong))
    gs = validated("gradescope", platforms.results("gradescope", draw))
    tests = {t["name"].split(": ", 1)[1]: t for t in gs["tests"]}
    assert len(tests) == N_LAYERNORM
    right = ["the contract"] + [f"{g} [{c}]" for c in ("random shapes", "T = 1") for g in ("dgamma", "dbeta")]
    assert all(tests[n]["status"] == "passed" and tests[n]["score"] == 1 for n in right)
    assert gs["score"] == len(right) == 5
    # dx fails in each case: the first with its finding as the text report prints it, the second, which
    # the text report only notes ("also wrong in case 'T = 1'"), by its relative error and that note
    first = tests["dx [random shapes]"]
    assert first["status"] == "failed" and first["score"] == 0 and first["max_score"] == 1
    own = [f for f in dx_wrong.findings if f.gradient == "dx"]
    assert own and first["output"].startswith(str(own[0])) and "dx is wrong" in first["output"]
    assert first["extra_data"]["tags"] == sorted({f.tag for f in own})
    second = tests["dx [T = 1]"]
    assert second["status"] == "failed" and second["output"].startswith("dx [T = 1]: relative error ")
    assert "note: also wrong in case 'T = 1' (alone)" in second["output"]
    for block in ("encoder_layer", "decoder_layer", "model"):   # never run: the alone stage has findings
        assert tests[f"in {block}"]["status"] == "failed"
        assert tests[f"in {block}"]["output"].startswith("not graded: ")
    pl = validated("prairielearn", platforms.results("prairielearn", draw))
    assert pl["score"] == 0.5 and pl["message"] == "layernorm: failed, 5 of 10 points"
    assert [t["message"] for t in pl["tests"] if t["name"] == "layernorm: dx [random shapes]"] == [
        str(own[0]).splitlines()[0]]
    xml = validated("junit", platforms.results("junit", draw))
    assert xml.get("failures") == "5"
    failure = xml.find("testsuite/testcase[@name='dx [random shapes]']/failure")
    assert failure.text.startswith(str(own[0])) and failure.get("type") == own[0].tag


def test_without_a_plan_the_parts_are_the_reports(dx_wrong):
    parts = platforms.grade(dx_wrong)
    assert [p.name for p in parts] == ["the contract"] + [f"{g} [{c}]" for c in ("random shapes", "T = 1")
                                                          for g in ("dx", "dgamma", "dbeta")]
    assert [p.passed for p in parts] == [True, False, True, True, False, True, True]


def test_a_contract_finding_fails_the_contract_part_and_stops_nothing_else(tmp_path):
    float32 = ("import numpy as np\n\n\ndef relu_backward(dy, cache):\n"
               "    return (dy * cache.positive).astype(np.float32)\n")
    report = check("relu", files.load("relu", write(tmp_path, "relu", float32)), seed=2, quiet=True)
    parts = {p.name: p for p in platforms.grade(report, expected=platforms.plan(report))}
    assert not parts["the contract"].passed and parts["the contract"].output().startswith(
        str(report.findings[0])) and report.findings[0].tag == "dtype"
    assert parts["dx [inputs near the kink]"].passed   # the values are right
    raised = "def relu_backward(dy, cache):\n    raise ValueError('no')\n"
    report = check("relu", files.load("relu", write(tmp_path, "relu", raised)), seed=2, quiet=True)
    parts = platforms.grade(report, expected=platforms.plan(report))
    assert [p.passed for p in parts] == [False] * 5 and "raised ValueError: no" in parts[0].output()
    assert [p.output().split(":")[0] for p in parts[1:]] == ["not graded"] * 4


def test_points_per_part_and_per_stage(passed):
    points = {"the contract": 0.5, "alone": 2, "in model": 3}
    gs = platforms.gradescope(passed, points=points)
    by_name = {t["name"].split(": ", 1)[1]: t["max_score"] for t in gs["tests"]}
    assert by_name["the contract"] == 0.5 and by_name["dx [T = 1]"] == 2 and by_name["in model"] == 3
    assert by_name["in encoder_layer"] == 1 and gs["score"] == 0.5 + 6 * 2 + 3 + 2
    assert platforms.gradescope(passed, points={"*": 4})["score"] == 4 * N_LAYERNORM
    assert platforms.prairielearn(passed, points=points)["score"] == 1.0
    with pytest.raises(ValueError, match="points"):
        platforms.grade(passed.report, points={"alone": -1})


def test_staged_mode_a_part_per_step():
    folder = ROOT / "docs" / "sessions" / "staged"
    report = check("layernorm", files.load("layernorm", str(folder)), seed=3, quiet=True)
    parts = {p.name: p for p in platforms.grade(report, expected=platforms.plan(report))}
    assert platforms.plan(report) is None and report.exercise == "layernorm (staged)"
    assert parts["dvar [staged]"].passed is False and "sign is flipped" in parts["dvar [staged]"].output()
    assert "inherits the error from dvar" in parts["dxc [staged]"].output()
    assert parts["dxhat [staged]"].passed and parts["dgamma [staged]"].passed and parts["the contract"].passed


def test_cannot_grade_writes_the_reason_then_exits_2(tmp_path, capsys):
    folder = write(tmp_path, "softmax", "def softmax_backward(dp, cache:\n")
    for platform in platforms.PLATFORMS:
        out = tmp_path / f"{platform}.out"
        code = main(["exercise", "check", "softmax", "--dir", folder, "--report", platform, "--report-file", str(out)])
        assert code == 2 and "syntax error" in capsys.readouterr().err
        content = validated(platform, out.read_text(encoding="utf-8"))
        if platform == "gradescope":
            assert content["score"] == 0 and content["tests"] == [] and "syntax error" in content["output"]
        elif platform == "prairielearn":
            assert content["gradable"] is False and "syntax error" in content["message"]
            assert "syntax error" in content["format_errors"][0]
        else:
            error = content.find("testsuite/testcase/error")
            assert content.get("errors") == "1" and "syntax error" in error.get("message")
            assert error.get("type") == "ExerciseError"
    gs = platforms.cannot_grade("gradescope", "relu", "a\x00b")   # nothing but text, whatever the learner raised
    assert gs["output"] == "relu: cannot grade: ab"


def test_hidden_draws_are_flagged_hidden(tmp_path, capsys):
    folder = write(tmp_path, "layernorm", gamma_left_out())
    out = tmp_path / "results.json"
    code = main(["exercise", "check", "layernorm", "--dir", folder, "--seed", "5", "--report", "gradescope",
                 "--report-file", str(out), "--hidden-seeds", "2", "--hidden-secret", "s3cret"])
    printed = capsys.readouterr().out
    assert code == 1 and "hidden" not in printed.replace(f"results for gradescope: {out}", "")
    gs = validated("gradescope", out.read_text(encoding="utf-8"))
    shown = [t for t in gs["tests"] if t["visibility"] == "visible"]
    hidden = [t for t in gs["tests"] if t["visibility"] == "hidden"]
    assert len(shown) == N_LAYERNORM and len(hidden) == 2 * N_LAYERNORM
    assert {t["name"].split(": ", 1)[0] for t in hidden} == {"layernorm, hidden draw 1", "layernorm, hidden draw 2"}
    assert all("seed" not in t["extra_data"] for t in hidden) and all(t["extra_data"]["seed"] == 5 for t in shown)
    assert gs["score"] == 3 * 5   # the same parts pass on every draw
    seeds = platforms.hidden_seeds("layernorm", 2, 5, "s3cret")
    assert all(str(s) not in json.dumps(gs) for s in seeds)   # a hidden seed is written nowhere
    # PrairieLearn has no hidden test: a hidden draw is one test, its points and no finding
    draws = [platforms.Draw(check("layernorm", files.load("layernorm", folder), seed=s, quiet=True), hidden=k)
             for k, s in enumerate([5] + seeds)]
    pl = validated("prairielearn", platforms.results("prairielearn", draws))
    last = pl["tests"][-2:]
    assert [t["name"] for t in last] == ["layernorm, hidden draw 1", "layernorm, hidden draw 2"]
    assert all(t["output"] == "" and t["points"] == 5 and t["max_points"] == 7 for t in last)
    assert all("dx" not in t["message"] for t in last) and pl["score"] == 15 / 21
    xml = validated("junit", platforms.results("junit", draws))
    assert [properties(s)["hidden"] for s in xml.findall("testsuite")] == ["false", "true", "true"]
    assert ["seed" in properties(s) for s in xml.findall("testsuite")] == [True, False, False]
    assert platforms.gradescope(draws, hidden_visibility="after_due_date")["tests"][-1]["visibility"] == \
        "after_due_date"


def test_hidden_seeds_follow_the_documented_rule():
    digest = hashlib.sha256(b"npformer hidden draw|relu|s3cret|1").digest()
    assert platforms.hidden_seeds("relu", 1, 7, "s3cret") == [int.from_bytes(digest[:4], "big") % (1 << 31)]
    with_secret = platforms.hidden_seeds("relu", 3, 7, "s3cret")
    assert with_secret == platforms.hidden_seeds("relu", 3, 8, "s3cret")   # the same for every submission
    assert with_secret != platforms.hidden_seeds("relu", 3, 7, "other")
    assert platforms.hidden_seeds("relu", 3, 7) != platforms.hidden_seeds("relu", 3, 8)  # no secret: from the seed
    assert len(set(with_secret)) == 3 and all(0 <= s < 1 << 31 for s in with_secret)
    visible = platforms.hidden_seeds("relu", 1, 0, "s3cret")[0]
    assert visible not in platforms.hidden_seeds("relu", 3, visible, "s3cret")   # never the visible seed


def test_the_command_writes_the_default_file_and_keeps_its_exit_code_and_json(tmp_path, monkeypatch, capsys):
    folder = write(tmp_path, "layernorm", files.reference_text("layernorm"))
    monkeypatch.chdir(tmp_path)
    code = main(["exercise", "check", "layernorm", "--dir", folder, "--seed", "5", "--json", "--report", "junit"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 0 and json.loads(lines[-1])["passed"] is True and lines[-2] == "results for junit: junit.xml"
    xml = validated("junit", (tmp_path / "junit.xml").read_text(encoding="utf-8"))
    assert xml.get("tests") == str(N_LAYERNORM) and xml.get("failures") == "0"


def test_the_docs_excerpt_is_what_the_command_writes(tmp_path, capsys):
    doc = (ROOT / "docs" / "exercises.md").read_text(encoding="utf-8")
    section = doc.split("## In a course", 1)[1].split("\n## ", 1)[0]
    command, = re.search(r"```sh\n(npformer exercise check [^\n]+ --report gradescope [^\n]+)\n```", section).groups()
    excerpt, = re.search(r"```json\n(.*?)```", section, re.S).groups()
    args = command.split()[1:]
    shutil.copytree(ROOT / args[args.index("--dir") + 1], tmp_path / "learner")   # not into docs/
    args[args.index("--dir") + 1] = str(tmp_path / "learner")
    args[args.index("--report-file") + 1] = str(tmp_path / "results.json")
    assert main(args) == 1
    capsys.readouterr()
    written = validated("gradescope", (tmp_path / "results.json").read_text(encoding="utf-8"))
    assert f"writes {len(written['tests'])} tests and a score of {written['score']}" in " ".join(section.split())
    shown = json.loads(excerpt)
    assert shown["tests"] == written["tests"][:len(shown["tests"])]
    assert {k: v for k, v in shown.items() if k != "tests"} == {k: written[k] for k in shown if k != "tests"}
