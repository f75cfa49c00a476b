"""The grader: the reference's source passes every exercise, on each backend; the contract
catches what finite differences cannot; the verdict says pass, fail or borderline and why."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npformer.exercise import EXERCISES, ExerciseError, check, files
from npformer.exercise.guard import ReferenceCalled

GRADED = [i for i, e in EXERCISES.items() if e.kind != "train"]


def write_reference(tmp_path, exercise_id):
    path = files.path_of(exercise_id, str(tmp_path))
    with open(path, "w") as f:
        f.write(files.reference_text(exercise_id))
    return files.load(exercise_id, str(tmp_path))


@pytest.mark.parametrize("exercise_id", GRADED)
def test_the_reference_source_in_a_learner_file_passes_and_is_called_verbatim(tmp_path, exercise_id):
    report = check(exercise_id, write_reference(tmp_path, exercise_id), seed=11, quiet=True)
    assert report.passed, str(report)
    assert any("verbatim" in n for n in report.notes)
    stages = {s for s, *_ in report.rows}
    if EXERCISES[exercise_id].composed:  # it ran again inside the blocks that contain it
        assert any(s.startswith("in ") for s in stages), stages


@pytest.mark.parametrize("exercise_id", ["layernorm", "attention", "cross_entropy", "sublayer"])
def test_the_reference_passes_on_cupysim_too(tmp_path, exercise_id):
    report = check(exercise_id, write_reference(tmp_path, exercise_id), backend="cupysim", seed=5, quiet=True)
    assert report.passed and report.backend == "cupysim", str(report)


@settings(max_examples=8)
@given(seed=st.integers(0, 2**31 - 1), exercise_id=st.sampled_from(["linear", "softmax", "layernorm", "embedding",
                                                                      "attention", "cross_entropy", "dropout"]))
def test_any_draw_of_shapes_and_masks_passes_the_reference(seed, exercise_id):
    from npformer.exercise.files import reference_text
    namespace = {}
    exec(compile(reference_text(exercise_id), f"<{exercise_id}>", "exec"), namespace)
    fns = {n: namespace[n] for n in EXERCISES[exercise_id].functions}
    report = check(exercise_id, fns, seed=seed, quiet=True, composed=False)
    assert report.passed, str(report)


def test_npformers_own_function_passed_in_grades_as_the_reference():
    from npformer.ops.layernorm import layernorm_backward
    report = check("layernorm", layernorm_backward, seed=2, quiet=True, composed=False)
    assert report.passed and any("verbatim" in n for n in report.notes)


def test_calling_the_reference_from_the_learners_code_is_refused():
    """Through the namespace the ops read (npformer.ops), the reference refuses when called; from
    its defining module (npformer.ops.layernorm), which check never changes, the source is refused
    before it runs. Both are a ``reference`` finding, and nothing stays changed afterwards."""
    from npformer import ops
    from npformer.ops import layernorm as ref

    def through_the_seam(dy, cache):
        return ops.layernorm_backward(dy, cache)

    def from_its_module(dy, cache):
        return ref.layernorm_backward(dy, cache)
    for leaning, said in ((through_the_seam, "layernorm_backward is the reference answer of this exercise; it "
                           "refuses to run while check grades it"),
                          (from_its_module, "calls npformer.ops.layernorm.layernorm_backward, the reference "
                           "itself: the reference refuses to run while check grades it")):
        report = check("layernorm", leaning, seed=1, quiet=True)
        assert not report.passed and [f.tag for f in report.findings] == ["reference"], str(report)
        assert said in report.findings[0].diagnosis
    assert ops.layernorm_backward is ref.layernorm_backward  # and the seam is the reference again
    x = np.random.default_rng(0).standard_normal((2, 3, 4))
    y, cache = ops.layernorm_forward(x, np.ones(4), np.zeros(4))
    assert ops.layernorm_backward(np.ones_like(y), cache)[0].shape == x.shape


@pytest.mark.parametrize("source, refused", [
    ("from npformer.ops.layernorm import layernorm_backward as lb\n", True),
    ("import npformer.ops.layernorm\nx = npformer.ops.layernorm.layernorm_backward\n", True),
    ("import npformer.ops.layernorm as ln\nx = ln.layernorm_backward\n", True),
    ("from npformer.ops import layernorm\nx = layernorm.layernorm_backward\n", True),
    ("from npformer.ops.layernorm import LayerNormCache\nfrom npformer import ops\n\n\n"
     "def helper(dy, cache):\n    return ops.layernorm_backward(dy, cache)\n", False),  # the seam: refused when run
    ("from npformer import ops\nx = ops.layernorm_backward\n", True),  # bound at import: the reference itself
    ("from npformer.ops.linear import linear_backward\n", False),  # another exercise's reference: fine
])
def test_a_file_that_names_the_reference_in_its_defining_module_is_refused_by_reading_it(tmp_path, source,
                                                                                          refused):
    path = tmp_path / "layernorm.py"
    path.write_text(source + "\n\ndef layernorm_backward(dy, cache):\n    raise NotImplementedError\n")
    report = check("layernorm", files.load("layernorm", str(tmp_path)), seed=0, quiet=True)
    assert ([f.tag for f in report.findings] == ["reference"]) == refused, str(report)


def test_the_refusal_is_undone_even_when_grading_raises():
    from npformer import ops
    from npformer.exercise.guard import refused
    from npformer.ops import relu
    with pytest.raises(KeyError), refused(["relu_backward"]):
        with pytest.raises(ReferenceCalled):
            ops.relu_backward(np.ones(2), relu.ReluCache(np.ones(2, bool)))
        assert relu.relu_backward(np.ones(2), relu.ReluCache(np.ones(2, bool))).tolist() == [1.0, 1.0]
        raise KeyError("boom")
    assert ops.relu_backward is relu.relu_backward


def test_the_contract_in_place_change_of_dy_and_cache():
    def overwrites_dy(dy, cache):
        dy *= cache.positive
        return dy
    report = check("relu", overwrites_dy, seed=0, quiet=True)
    assert any(f.tag == "inplace" and f.gradient == "dy" for f in report.findings)

    def overwrites_cache(dy, cache):
        xhat, rstd, gamma = cache
        from npformer.exercise.mistakes import _ln
        out = _ln(dy, cache)
        rstd *= 1.0 + 1e-3
        return out
    report = check("layernorm", overwrites_cache, seed=0, quiet=True)
    assert any(f.tag == "inplace" and "rstd" in f.gradient for f in report.findings)


def test_the_contract_count_dtype_reentrancy_and_zero():
    report = check("layernorm", lambda dy, c: (dy, dy.sum(0).sum(0)), seed=0, quiet=True)
    assert [f.tag for f in report.findings] == ["count"] and "dx, dgamma, dbeta" in report.findings[0].diagnosis

    report = check("relu", lambda dy, c: (dy * c.positive).astype("float32"), seed=0, quiet=True)
    assert "dtype" in [f.tag for f in report.findings]

    calls = []

    def stateful(dy, cache):
        calls.append(1)
        return dy * cache.positive * (1 + 1e-3 * len(calls))
    assert "reentrant" in [f.tag for f in check("relu", stateful, seed=0, quiet=True).findings]


def test_a_small_real_error_is_borderline_and_says_it_does_not_move_with_h():
    from npformer.ops.relu import ReluCache  # noqa: F401

    def nearly(dy, cache):
        return dy * cache.positive * (1 + 2e-5)
    report = check("relu", nearly, seed=0, quiet=True, composed=False)
    assert report.verdict == "borderline" and not report.passed
    assert "does not move with the step h" in report.findings[0].diagnosis


def test_float32_is_refused_with_the_reason():
    with pytest.raises(ExerciseError, match="finite differences need float64"):
        check("relu", lambda dy, c: dy, dtype="float32")


def test_a_variant_is_graded_numerically():
    import math

    def gelu_backward(dy, cache):
        x, t = cache
        return dy * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * math.sqrt(2 / math.pi) * (1 + 3 * 0.044715 * x * x))
    assert check("gelu", gelu_backward, seed=4, quiet=True).passed
    wrong = check("gelu", lambda dy, c: gelu_backward(dy, c) * 2, seed=4, quiet=True)
    assert not wrong.passed and wrong.findings[0].tag.startswith("scale:") and "2" in wrong.findings[0].tag

    def rmsnorm_backward(dy, cache):
        x, r, gamma = cache
        g = dy * gamma
        dx = r * g - x * r ** 3 * (g * x).mean(axis=-1, keepdims=True)
        return dx, (dy * x * r).reshape(-1, x.shape[-1]).sum(axis=0)
    assert check("rmsnorm", rmsnorm_backward, seed=4, quiet=True).passed


def test_unknown_ids_and_missing_functions_are_refused():
    with pytest.raises(ExerciseError, match="unknown exercise"):
        check("layernrom", lambda dy, c: dy)
    with pytest.raises(ExerciseError, match="cross_attention_backward"):
        check("multihead", {"self_attention_backward": lambda dy, c: dy})


def test_the_python_entry_prints_the_report_and_returns_it(capsys):
    report = check("relu", lambda dy, c: dy * c.positive, seed=3, composed=False)
    out = capsys.readouterr().out
    assert report.passed and out.startswith("relu: PASSED  (seed 3")
    assert report.as_dict()["passed"] is True and report.as_dict()["findings"] == []
