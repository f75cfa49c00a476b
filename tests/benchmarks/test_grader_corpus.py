"""benchmarks/grader_corpus.py: the bug corpus's table in docs/exercises.md is the one the script
prints (so it cannot drift from the grader), the script ends with one JSON object, and it
refuses what it cannot grade."""
import json
import os
import subprocess
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from benchmarks import grader_corpus  # noqa: E402

SCRIPT = os.path.join(_ROOT, "benchmarks", "grader_corpus.py")


def run(*args, env=None):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, cwd=_ROOT, env=env)


def test_the_docs_table_is_the_scripts():
    """Remake it with `python benchmarks/grader_corpus.py --write-doc` when the grader changes."""
    corpus = grader_corpus.load_corpus()
    shown = grader_corpus.doc_text()
    assert shown is not None, f"docs/exercises.md lacks the markers {grader_corpus.BEGIN} ... {grader_corpus.END}"
    assert shown == grader_corpus.doc_block(corpus.grade_all()), \
        "docs/exercises.md's bug-corpus table is stale: run python benchmarks/grader_corpus.py --write-doc"


def test_a_few_bugs_give_a_table_and_one_json_object(cli_env):
    out = run("--only", "linear_db_mean", "embedding_assign", "--seeds", "4", "--json", env=cli_env)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("| bug | exercise |")
    result = json.loads(lines[-1])
    assert [r["bug"] for r in result["rows"]] == ["linear_db_mean", "embedding_assign"]
    assert result["bugs"] == 2 and result["seeds"] == [4] and result["harmful"] == 0 and result["passing"] == []
    assert 0.0 <= result["hit_rate"] <= 1.0 and result["advice_given"] >= 1   # db = N / M: "multiply by M"


def test_what_cannot_be_graded_is_refused(cli_env):
    out = run("--only", "no_such_bug", env=cli_env)
    assert out.returncode == 2 and "no_such_bug" in out.stderr
    out = run("--only", "linear", "--write-doc", env=cli_env)
    assert out.returncode == 2 and "--write-doc" in out.stderr


def test_write_doc_replaces_only_the_block_between_the_markers(tmp_path):
    doc = tmp_path / "doc.md"
    begin, end = grader_corpus.BEGIN, grader_corpus.END
    doc.write_text(f"# head\n\ntext\n{begin}\nold table\n{end}\n\nafter\n")
    grader_corpus.write_doc("| new |\n\nsummary", str(doc))
    assert doc.read_text() == f"# head\n\ntext\n{begin}\n| new |\n\nsummary\n{end}\n\nafter\n"
    assert grader_corpus.doc_text(str(doc)) == "| new |\n\nsummary"
