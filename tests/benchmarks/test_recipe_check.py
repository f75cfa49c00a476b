"""benchmarks/recipe_check.py end to end on a tiny corpus: one table row with the test
scores and the recipe's settings, one JSON object last; bad corpora refused before any run."""
import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from npformer.data.corpus import DEFAULT_CORPUS

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "recipe_check.py"


def run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=ROOT)


def test_a_corpus_is_trained_evaluated_and_reported(tmp_path):
    pytest.importorskip("sacrebleu")
    with gzip.open(DEFAULT_CORPUS, "rt", encoding="utf-8") as f:
        lines = [next(f) for _ in range(300)]
    tsv = tmp_path / "mine.tsv"
    tsv.write_text("".join(lines), encoding="utf-8")
    out = run("--minutes", "0.03", "--only", "mine", "--corpus", f"mine={tsv}", "--workers", "1",
              "--out", str(tmp_path / "runs"), "--json", "--train-args", "--p-drop 0.25 --layers 1")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    (row,) = result["rows"]
    assert row["corpus"] == "mine" and row["steps"] >= 1 and row["test_sentences"] == 15
    assert 0 <= row["test_bleu"] <= 100 and row["dev_loss"] > 0
    assert set(row["settings"]) >= {"merges", "p_drop", "max_tokens", "norm", "schedule"}
    # the extra options reached train: the run's settings carry them
    assert row["settings"]["p_drop"] == 0.25 and row["settings"]["n_layers"] == 1
    assert row["train_args"] == ["--p-drop", "0.25", "--layers", "1"]
    assert (tmp_path / "runs" / "mine" / "best.npz").is_file()


@pytest.mark.parametrize("args, message", [
    (["--corpus", "nopath"], "expected NAME=PATH"),
    (["--corpus", "x=/no/such.tsv"], "no such file"),
    (["--only", "nothing"], "unknown corpora"),
    (["--minutes", "0"], "expected a number > 0"),
    (["--train-args", "--out elsewhere"], "set by recipe_check itself"),
    (["--train-args", "'unclosed"], "--train-args"),
])
def test_bad_arguments_are_refused_before_any_run(args, message):
    out = run(*args)
    assert out.returncode == 2 and message in out.stderr
