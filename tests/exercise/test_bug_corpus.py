"""The grader against a corpus of learners' bugs it has never seen (tests/exercise/bug_corpus.py,
written apart from npformer/exercise/mistakes.py):

1. every bug fails ``check`` on every seed, without the library of known mistakes (``known=False``)
   and with it;
2. at least 90% of the bugs are named as a teacher names them (the gradient and the class of the
   finding), on every seed; the misses are printed;
3. no finding gives advice that makes the gradient worse: each ``Finding.fix``, applied to the
   learner's gradient of its case (rebuilt from the seed), shrinks the error, removes it where
   the bug's whole error is of that kind, and agrees with the words of the finding.

Every bug is graded once per seed (``bug_corpus.grade_all``, cached), so the file runs in well
under a minute on one core; benchmarks/grader_corpus.py prints the same figures as a table.
"""
import os
import sys

import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from benchmarks.grader_corpus import load_corpus, misses  # noqa: E402

corpus = load_corpus()
IDS = [b.id for b in corpus.BUGS]


@pytest.fixture(scope="module")
def results():
    return {r.bug.id: r for r in corpus.grade_all()}


def test_the_corpus_is_large_and_independent_of_the_known_mistakes():
    assert len(corpus.BUGS) >= 45
    assert sum(b.staged for b in corpus.BUGS) >= 8
    for exercise in ("softmax", "layernorm", "attention", "cross_entropy"):
        assert any(b.staged and b.exercise == exercise for b in corpus.BUGS), exercise
    with open(corpus.__file__, encoding="utf-8") as f:
        assert "mistakes" not in "".join(line for line in f if line.lstrip().startswith(("import", "from")))
    for b in corpus.BUGS:
        assert b.gradients and b.expect and b.fix in (None, "scale", "transpose"), b.id


@pytest.mark.parametrize("bug_id", IDS)
def test_every_bug_fails_on_every_seed(results, bug_id):
    r = results[bug_id]
    passing = {seed: rep.verdict for seed, rep in r.reports.items() if rep.passed or rep.verdict == "passed"}
    assert not passing, f"{bug_id} passes check on seed(s) {sorted(passing)}: {r.bug.what}"


@pytest.mark.parametrize("bug_id", IDS[::6])
def test_the_known_mistakes_and_the_composed_stage_change_no_verdict(bug_id):
    """With the library and the composed stage on (check's defaults), a failing bug still fails."""
    bug = corpus.BY_ID[bug_id]
    report = corpus.run(bug, corpus.SEEDS[0], known=True, composed=True)
    assert not report.passed and report.verdict != "passed", str(report)


def test_at_least_nine_in_ten_bugs_are_named(results):
    rs = list(results.values())
    rate = sum(r.named for r in rs) / len(rs)
    for m in misses(rs):
        print(f"miss: {m['bug']} (seed {m['seed']}): a teacher names {m['teacher']}; the grader: "
              + "; ".join(f"{f['gradient']} {f['tag']}" for f in m["findings"]))
    print(f"named {sum(r.named for r in rs)} of {len(rs)} bugs ({100 * rate:.1f}%)")
    assert rate >= 0.9, f"{100 * rate:.1f}% of the bugs named; misses: {sorted({m['bug'] for m in misses(rs)})}"


@pytest.mark.parametrize("bug_id", IDS)
def test_no_advice_makes_the_gradient_worse(results, bug_id):
    problems = [f"seed {seed}, {a.finding.gradient} [{a.finding.case}] fix {a.finding.fix}: " + "; ".join(a.problems)
                for seed, lst in results[bug_id].advice.items() for a in lst if a.harmful]
    assert not problems, "\n".join(problems)


def test_advice_is_applied_where_it_is_given(results):
    """The check above is not vacuous: scale and transpose advice is given and applied, and where
    the bug's whole error is of that kind it removes the error."""
    given = [a for r in results.values() for lst in r.advice.values() for a in lst]
    assert len(given) >= 20
    assert {a.finding.fix[0] for a in given} == {"scale", "transpose"}
    exact = [a for a in given if a.must_fix]
    assert len(exact) >= 15 and all(a.after <= 1e-6 for a in exact)


def test_advice_helpers_see_a_wrong_fix():
    """A made-up finding advising the inverse factor on a bug that is G = r N is caught."""
    from npformer.verify.diagnose import Finding
    bug = corpus.BY_ID["linear_db_mean"]
    report = corpus.run(bug, corpus.SEEDS[0])
    (f,) = [f for f in report.findings if f.gradient == "db" and f.tag.startswith("scale")]
    M = f.fix[1]  # the learner's db is N / M: the right advice multiplies by M, this one divides
    report.findings = [Finding("db", f.case, f.where, "too small", f.tag, f.rel_error, fix=("scale", 1 / M))]
    (a,) = corpus.advice(bug, corpus.SEEDS[0], report)
    assert a.harmful and any("worse" in p for p in a.problems) and any("too small" in p for p in a.problems)
