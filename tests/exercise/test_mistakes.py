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
