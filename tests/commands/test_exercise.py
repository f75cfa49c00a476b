"""``npformer exercise``: exit codes 0/1/2, --json's one object, and the same verdict as Python."""
import json

from npformer.exercise import check, files


def test_list_start_check_hint_and_the_exit_codes(run_npformer, tmp_path):
    d = str(tmp_path)
    out = run_npformer("exercise", "list", "--dir", d, "--json")
    assert out.returncode == 0
    rows = json.loads(out.stdout.splitlines()[-1])["exercises"]
    assert [r["id"] for r in rows][:3] == ["linear", "relu", "residual"] and {r["status"] for r in rows} == {
        "not started"}

    assert run_npformer("exercise", "start", "relu", "--dir", d).returncode == 0
    again = run_npformer("exercise", "start", "relu", "--dir", d)
    assert again.returncode == 2 and "exists" in again.stderr and len(again.stderr.splitlines()) == 1

    assert run_npformer("exercise", "check", "relu", "--dir", d).returncode == 1  # NotImplementedError

    with open(files.path_of("relu", d), "w") as f:
        f.write("def relu_backward(dy, cache):\n    return dy * cache.positive\n")
    ok = run_npformer("exercise", "check", "relu", "--dir", d, "--json", "--seed", "3")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    obj = json.loads(ok.stdout.strip().splitlines()[-1])
    assert obj["passed"] is True and obj["findings"] == [] and obj["seed"] == 3

    with open(files.path_of("relu", d), "w") as f:
        f.write("def relu_backward(dy, cache):\n    return dy\n")
    bad = run_npformer("exercise", "check", "relu", "--dir", d, "--json", "--seed", "3")
    assert bad.returncode == 1
    obj = json.loads(bad.stdout.strip().splitlines()[-1])
    assert obj["passed"] is False and obj["findings"][0]["gradient"] == "dx"
    assert obj["findings"][0]["tag"] == "region:the inputs <= 0"
    # the same verdict from Python, on the same draw
    namespace = {}
    exec("def relu_backward(dy, cache):\n    return dy\n", namespace)
    same = check("relu", namespace["relu_backward"], seed=3, quiet=True)
    assert [f["tag"] for f in obj["findings"]] == [f.tag for f in same.findings]

    rows = json.loads(run_npformer("exercise", "list", "--dir", d, "--json").stdout.splitlines()[-1])["exercises"]
    assert {r["id"]: r["status"] for r in rows}["relu"] == "failing"

    for args in (("check", "nope"), ("check", "softmax", "--dir", d), ("check", "relu", "--dir", d, "--dtype",
                                                                        "float32")):
        r = run_npformer("exercise", *args)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)
    assert "float64" in r.stderr

    with open(files.path_of("softmax", d), "w") as f:
        f.write("def softmax_backward(dp, cache:\n")
    r = run_npformer("exercise", "check", "softmax", "--dir", d)
    assert r.returncode == 2 and "syntax error" in r.stderr

    hint = run_npformer("exercise", "hint", "positional", "--level", "1")
    assert hint.returncode == 0 and "no parameters" in hint.stdout


def test_check_on_cupysim(run_npformer, tmp_path):
    d = str(tmp_path)
    with open(files.path_of("dropout", d), "w") as f:
        f.write(files.reference_text("dropout"))
    r = run_npformer("exercise", "check", "dropout", "--dir", d, "--backend", "cupysim", "--json")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["backend"] == "cupysim"


def test_check_report_options_and_their_errors(run_npformer, tmp_path):
    from npformer.course import platforms
    help_text = " ".join(run_npformer("exercise", "check", "--help").stdout.split())
    assert "--report {" + ",".join(platforms.PLATFORMS) + "}" in help_text
    for platform, path in platforms.DEFAULT_PATHS.items():   # the parser writes them out: the same
        assert f"{platform} {path}" in help_text
    d = str(tmp_path)
    for args in (("--report-file", "x.json"), ("--hidden-seeds", "1"), ("--report", "moodle"),
                 ("--report", "junit", "--hidden-seeds", "-1")):
        r = run_npformer("exercise", "check", "relu", "--dir", d, *args)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)
    r = run_npformer("exercise", "check", "train", "--dir", d, "--report", "junit", "--hidden-seeds", "1")
    assert r.returncode == 2 and "train" in r.stderr
    assert run_npformer("exercise", "start", "relu", "--dir", d).returncode == 0
    (tmp_path / "a_file").write_text("")
    blocked = tmp_path / "a_file" / "results.json"   # its folder is a file
    r = run_npformer("exercise", "check", "relu", "--dir", d, "--report", "prairielearn", "--report-file", blocked)
    assert r.returncode == 2 and str(blocked) in r.stderr and len(r.stderr.strip().splitlines()) == 1
    out = tmp_path / "results" / "results.json"   # the folder is made, as PrairieLearn's must be
    r = run_npformer("exercise", "check", "relu", "--dir", d, "--report", "prairielearn", "--report-file", out)
    assert r.returncode == 1 and json.loads(out.read_text())["score"] == 0.0   # not started: no part passes
