"""Smoke test of benchmarks/mutation_score.py on one small op: its few mutants are all
killed by that op's tests, and the same mutants survive a mapping that points them at
another op's tests (so the score can fail). The full run is documented in benchmarks/README.md."""
import json
import os
import subprocess
import sys

import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from benchmarks import mutation_score  # noqa: E402

SCRIPT = os.path.join(_ROOT, "benchmarks", "mutation_score.py")
SCOPE = ("npformer/ops/", "npformer/model/", "npformer/decode/incremental.py", "npformer/train/optim.py",
         "npformer/train/schedule.py", "npformer/train/parallel.py", "npformer/train/ranks.py",
         "npformer/verify/diagnose.py", "npformer/verify/verdict.py")   # the math, and the grader's explanation


def _run(*args, timeout=110):
    proc = subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=_ROOT, env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
    return proc


def test_the_mapping_covers_the_scope_and_every_equivalent_has_a_reason():
    mapping = mutation_score.load_mapping()
    in_scope = sorted(f for f in mapping["files"] if f.startswith(SCOPE))
    assert in_scope == sorted(mapping["files"])
    for pkg in ("ops", "model"):
        for name in os.listdir(os.path.join(_ROOT, "npformer", pkg)):
            if name.endswith(".py") and name != "__init__.py":
                assert f"npformer/{pkg}/{name}" in mapping["files"], f"npformer/{pkg}/{name} is not mutated"
    assert all(reason.strip() for reason in mapping["exclude_operators"].values())
    for e in mutation_score.load_equivalents():  # it refuses an entry without a reason
        assert e["file"] in mapping["files"]


def test_a_mutant_is_described_by_its_line_before_and_after():
    d = mutation_score.describe("f.py", "a = 1\nb = x * y\n", "a = 1\nb = x / y\n")
    assert (d["line"], d["before"], d["after"]) == (2, "b = x * y", "b = x / y")
    assert "-b = x * y" in d["diff"] and "+b = x / y" in d["diff"]
    assert mutation_score.equivalent_key("f.py", "b  = x*y ", "b = x/y") == ("f.py", "b = x*y", "b = x/y")


@pytest.mark.parametrize("argv, message", [
    (["--shard", "0/2"], "--shard must be I/N"),
    (["--shard", "3/2"], "--shard must be I/N"),
    (["--files", "npformer/cli.py"], "not in mutation_tests.json"),
    (["--limit", "0"], "--limit must be at least 1"),
])
def test_bad_input_is_refused_before_any_mutant_runs(argv, message):
    proc = _run(*argv, timeout=60)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr


def test_smoke_relu_mutants_are_killed_by_its_tests_and_survive_unrelated_ones(tmp_path):
    pytest.importorskip("cosmic_ray", reason="Cosmic Ray is not installed (pip install -e '.[mutation]')")
    proc = _run("--files", "npformer/ops/relu.py", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["generated"] >= 4 and out["killed"] + out["timed_out"] == out["generated"]
    assert out["score"] == 1.0 and out["survivors"] == []
    assert out["per_file"]["npformer/ops/relu.py"]["generated"] == out["generated"]

    # the same mutants against the residual's tests: they survive, and one listed equivalent is not scored
    mapping = tmp_path / "mapping.json"
    mapping.write_text(json.dumps({"files": {"npformer/ops/relu.py": ["tests/ops/test_residual.py"]},
                                   "exclude_operators": mutation_score.load_mapping()["exclude_operators"]}))
    relu = out["results"][0]
    equivalents = tmp_path / "equivalents.json"
    equivalents.write_text(json.dumps({"equivalents": [dict(file=relu["file"], before=relu["before"],
                                                            after=relu["after"], reason="planted")]}))
    proc = _run("--files", "npformer/ops/relu.py", "--mapping", str(mapping), "--equivalents", str(equivalents),
                "--limit", "3", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    blind = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (blind["generated"], blind["equivalent"], blind["survived"], blind["score"]) == (3, 1, 2, 0.0)
    assert {(s["file"], s["line"]) for s in blind["survivors"]} <= {(r["file"], r["line"]) for r in out["results"]}
    assert all(s["diff"].count("\n-") == 1 for s in blind["survivors"])
