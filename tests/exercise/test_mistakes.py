"""The grader is strong enough: every known mistake fails check, the report names it, and the
generic detectors (which know nothing of the library) find the pattern the mistake leaves."""
import pytest

from npformer.exercise import check
from npformer.exercise.mistakes import MISTAKES

CASES = [(ex, m) for ex, ms in MISTAKES.items() for m in ms]


def test_every_exercise_with_a_backward_has_at_least_three_known_mistakes():
    from npformer.exercise import EXERCISES
    for ex in EXERCISES.values():
        if ex.kind != "train":
            assert len(MISTAKES.get(ex.id, [])) >= 3, ex.id


def tag_matches(tag: str, expect: str) -> bool:
    if expect.startswith("scale:") and tag.startswith("scale:"):
        return expect[len("scale:"):] in tag[len("scale:"):].split("|")
    return tag == expect


@pytest.mark.parametrize("exercise_id,mistake", CASES, ids=[f"{e}-{m.name}" for e, m in CASES])
def test_a_known_mistake_fails_and_is_named(exercise_id, mistake):
    report = check(exercise_id, mistake.functions, seed=17, quiet=True, composed=False)
    assert not report.passed
    tags = [f.tag for f in report.findings]
    assert f"known:{mistake.name}" in tags, tags
    if mistake.expect:
        generic = check(exercise_id, mistake.functions, seed=17, quiet=True, composed=False, known=False)
        assert any(tag_matches(f.tag, mistake.expect) for f in generic.findings), [f.tag for f in generic.findings]


def test_every_softmax_mistake_is_a_derivative_error_not_a_masked_row_convention():
    # a fully masked row has p = 0 and any finite dz there is a convention: each known mistake
    # must already be wrong on the unmasked logits
    for m in MISTAKES["softmax"]:
        report = check("softmax", m.functions, seed=17, quiet=True, composed=False)
        assert any(f.case == "random logits" for f in report.findings), (m.name, str(report))


def test_out_transposed_is_one_mistake_the_output_projection_alone():
    import numpy as np

    from npformer.backend import get_backend
    from npformer.exercise import EXERCISES
    from npformer.exercise.grader import Fns, all_references, case_grads
    be, refs = get_backend("numpy"), all_references()
    m = next(m for m in MISTAKES["model"] if m.name == "out_transposed")
    for case in EXERCISES["model"].cases(np.random.default_rng(3), be):
        y, cache = case.forward(**case.inputs)
        dy = np.ones(np.shape(y)) * 0.7
        mine, true = case_grads(case, Fns(m.functions, refs), dy, cache), case_grads(case, Fns({}, refs), dy, cache)
        wrong = [g for g in true if np.shape(mine[g]) != np.shape(true[g]) or not np.allclose(mine[g], true[g])]
        assert wrong == ([] if "three-way tie" in case.name else ["dout_proj"]), (case.name, wrong)
        if wrong:
            np.testing.assert_array_equal(mine["dout_proj"].T, true["dout_proj"])
