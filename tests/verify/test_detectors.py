"""Each detector of diagnose.py and each rule of verdict.py on small, constructed G and N: fast,
exact and one behaviour per test, so that a change to any comparison, constant or branch of
the grader's explanation fails here first (the grader's mutation score runs these first)."""
import math

import numpy as np
import pytest

from npformer.verify import diagnose as D
from npformer.verify import verdict as V

N = np.array([[1.0, -2.0, 0.5], [0.25, 3.0, -1.0]])   # (2, 3), no zero, no symmetry


def find(G, N=N, ctx=None, axes=("row", "column"), floor=0.0):
    return D.diagnose("dx", "case", np.asarray(G, dtype=float), np.asarray(N, dtype=float), ctx or {}, axes, floor)


# --- the measure ---------------------------------------------------------------------------
def test_rel_error_is_the_largest_difference_over_the_largest_value_or_the_floor():
    assert D.rel_error(np.array([1.0, 2.0]), np.array([1.0, 2.5])) == pytest.approx(0.5 / 2.5)
    assert D.rel_error(np.array([1.0, 4.0]), np.array([1.0, 2.5])) == pytest.approx(1.5 / 4.0)
    assert D.rel_error(np.array([0.0]), np.array([1e-9]), floor=1e-3) == pytest.approx(1e-6)
    assert D.rel_error(np.zeros(3), np.zeros(3)) == 0.0
    assert D.rel_error(np.array([np.nan]), np.array([1.0])) == math.inf
    assert D.rel_error(np.array([1.0]), np.array([np.nan])) == math.inf
    assert D.rel_error(np.array([-3.0]), np.array([-1.0])) == pytest.approx(2 / 3)


def test_the_suspects_of_each_named_size():
    values = dict((name, v) for v, name in D.scale_suspects(dict(d_model=9, d_k=4, p=0.2, n_valid=3, n_all=5,
                                                                   n_mean=6, dloss=0.5, tau=2.0, M=10)))
    assert values["sqrt(d_model) = sqrt(9)"] == 3.0 and values["1/sqrt(d_model) = 1/sqrt(9)"] == pytest.approx(1 / 3)
    assert values["sqrt(d_k) = sqrt(4)"] == 2.0 and values["1/sqrt(d_k) = 1/sqrt(4)"] == 0.5
    assert values["d_k = 4"] == 4.0 and values["1/d_k = 1/4"] == 0.25
    assert values["1/(1-p) = 1/(1-0.2)"] == pytest.approx(1.25) and values["1-p = 0.8"] == pytest.approx(0.8)
    assert values["(1-p)^2 = 0.64"] == pytest.approx(0.64)
    assert values["N_valid/N_all = 3/5"] == 0.6 and values["N_all/N_valid = 5/3"] == pytest.approx(5 / 3)
    assert values["N_valid = 3"] == 3.0 and values["1/N_valid = 1/3"] == pytest.approx(1 / 3)
    assert values["n = 6 (the count a mean over the last axis divides by)"] == 6.0 and values["1/n = 1/6"] == 1 / 6
    assert values["dloss = 0.5 (the upstream gradient)"] == 0.5 and values["1/dloss = 1/0.5"] == 2.0
    assert values["1/tau = 1/2.0"] == 0.5 and values["tau = 2.0"] == 2.0
    assert values["M = B*T = 10 (positions)"] == 10.0 and values["1/M = 1/10"] == 0.1
    assert values["-1"] == -1.0 and values["2"] == 2.0 and values["1/2"] == 0.5
    assert [n for _, n in D.scale_suspects({})] == ["-1", "2", "1/2"]
    equal = dict((name, v) for v, name in D.scale_suspects(dict(n_valid=4, n_all=4)))
    assert "N_valid/N_all = 4/4" not in equal and equal["N_valid = 4"] == 4.0


def test_close_is_relative_to_the_scale_at_one_in_a_million():
    assert D._close(np.array([1.0]), np.array([1.0 + 0.9e-6]), 1.0)
    assert not D._close(np.array([1.0]), np.array([1.0 + 1.1e-6]), 1.0)
    assert D._close(np.zeros(2), np.zeros(2), 0.0)
    assert not D._close(np.array([1e-300]), np.zeros(1), 0.0)


def test_where_names_the_wrong_indices_along_each_axis():
    E = np.zeros((2, 3, 8))
    E[1, 2, :7] = 1.0
    E[1, 2, 3] = 5.0
    assert D._where(E, 5.0, ("batch row b", "position t", "feature")) == (
        "7 of 48 entries wrong, the largest at index (1, 2, 3); batch row b 1 only; position t 2 only; "
        "feature 0, 1, 2, 3, 4, 5, ... only")
    assert D._where(np.array([0.0, 2.0]), 2.0, ()) == "1 of 2 entries wrong, the largest at index (1,); axis 0 1 only"
    assert D._where(np.ones(2), 1.0, ()) == "2 of 2 entries wrong, the largest at index (0,)"
    assert D._count(np.array([True, False, True]), 3) == "2 of 3 entries"


# --- the detectors, in the order they are tried ------------------------------------------------
def test_a_right_gradient_has_no_finding_up_to_the_pass_tolerance():
    assert find(N) is None
    assert find(N * (1 + 0.9e-7)) is None
    assert find(N * (1 + 2e-7)) is not None


def test_a_transposed_shape_and_another_shape():
    f = find(N.T)
    assert f.tag == "transpose" and f.where == "its shape" and "(3, 2)" in f.diagnosis and f.fix == ("transpose",)
    f = find(np.ones((2, 4)))
    assert f.tag == "shape" and "(2, 4)" in f.diagnosis and "(2, 3)" in f.diagnosis and f.fix is None
    assert find(np.ones(6)).tag == "shape"


def test_nan_or_inf_in_the_gradient():
    G = N.copy()
    G[0, 1] = np.inf
    f = find(G)
    assert f.tag == "nonfinite" and f.where == "1 of 6 entries"
    G[1, 1] = np.nan
    assert find(G).where == "2 of 6 entries"


def test_all_zero_and_should_be_zero():
    assert find(np.zeros_like(N)).tag == "zeros"
    f = find(np.eye(2, 3), N=np.zeros((2, 3)))
    assert f.tag == "nonzero" and f.where.startswith("2 of 6 entries wrong")


def test_a_scale_is_found_named_or_not_and_carries_its_fix():
    f = find(2 * N, ctx=dict(M=6))
    assert f.tag == "scale:2" and f.fix == ("scale", 0.5) and f.rel_error == pytest.approx(0.5)
    assert f.where == "every entry, by one factor"
    f = find(6 * N, ctx=dict(M=6))
    assert f.tag == "scale:M" and f.fix == ("scale", 1 / 6)
    f = find(N / 6 * (1 + 1e-8), ctx=dict(M=6))   # measured r differs in the 8th digit: the named value is used
    assert f.tag == "scale:1/M" and f.fix == ("scale", 6.0)
    f = find(1.7 * N)
    assert f.tag == "scale:other" and f.fix[1] == pytest.approx(1 / 1.7) and "usual suspects" in f.diagnosis
    f = find(-N)
    assert f.tag == "scale:-1" and f.fix == ("scale", -1.0) and "sign is flipped" in f.diagnosis
    assert "-1 is -1" not in f.diagnosis
    two = find(2 * N, ctx=dict(d_k=4))
    assert two.tag == "scale:sqrt(d_k)|2" and "2 is sqrt(d_k) = sqrt(4) or 2" in two.diagnosis
    assert find(N * (1 + 1e-5) + 1e-3 * np.eye(2, 3)).tag != "scale:other"   # not a pure scale


def test_a_transpose_of_a_square_gradient_and_the_products_advice():
    S = np.array([[1.0, 2.0], [-3.0, 0.5]])
    f = D.diagnose("dW", "case", S.T, S, {"products": {"dW": "dW = x^T dy, not dy^T x"}})
    assert f.tag == "transpose" and f.diagnosis.endswith("dW = x^T dy, not dy^T x") and f.where == "every entry"
    assert "transpose it" in D.diagnose("dW", "case", S.T, S, {}).diagnosis
    batched = np.stack([S, 2 * S])
    assert D.diagnose("dW", "case", batched.swapaxes(-1, -2), batched, {}).tag == "transpose"


def test_a_wrong_operand_order_is_named_from_the_cases_candidates():
    G = N + np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    ops = {"dx": [("dy W^T", "dy W", G)]}
    f = find(G, ctx={"operands": ops})
    assert f.tag == "operands" and "is dy W, but the gradient is dy W^T" in f.diagnosis
    assert find(G, ctx={"operands": {"dx": [("a", "b", G[:, :2])]}}).tag != "operands"   # shape differs
    assert find(G, ctx={"operands": {"dx": [("a", "b", G + 1)]}}).tag != "operands"
    assert find(G, ctx={"operands": {"dW": [("a", "b", G)]}}).tag != "operands"       # another gradient's


def test_an_error_confined_to_a_named_region():
    region = np.array([[False, True, False], [False, False, False]])
    G = N + 3.0 * region
    f = find(G, ctx={"regions": {"dx": [("everywhere", np.ones((2, 3), bool)), ("the pads", region)],
                                 "dW": [("the pads", ~region)]}, "region_hints": {"the pads": "mask them"}})
    assert f.tag == "region:the pads" and f.diagnosis.endswith("mask them")
    assert f.where == "only the pads (1 of 6 entries); right everywhere else"
    f = find(G, ctx={"regions": {"dx": [("the pads", region)]}})
    assert f.diagnosis.endswith(D._REGION_HINT)
    assert find(G, ctx={"regions": {"dx": [("elsewhere", ~region)]}}).tag != "region:elsewhere"
    assert find(G, ctx={"regions": {"dx": [("none", np.zeros((2, 3), bool))]}}).tag != "region:none"


def test_an_error_in_proportion_to_a_named_weight_one_number_per_row():
    w = np.array([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]])
    G = N + w * np.array([[2.0], [-1.0]])
    f = find(G, ctx={"weights": {"dx": [("p", w)]}})
    assert f.tag == "weights:p" and f.where == "every row, in proportion to p" and "p * sum(...)" in f.diagnosis
    f = find(G, ctx={"weights": {"dx": [("p", w)]}, "weight_hints": {"p": "the sum term is missing"}})
    assert f.diagnosis.endswith("the sum term is missing")
    zero_row = np.array([[0.0, 0.0, 0.0], [0.6, 0.1, 0.3]])   # a fully masked row: its weight is 0
    assert find(N + zero_row * 2.0, ctx={"weights": {"dx": [("p", zero_row)]}}).tag == "weights:p"
    assert find(N + w * np.array([[2.0, 1.0, 2.0]]), ctx={"weights": {"dx": [("p", w)]}}).tag != "weights:p"


def test_an_error_constant_along_an_axis_names_the_last_such_axis():
    f = find(N + np.array([[1.0], [2.0]]))
    assert f.tag == "axis:column" and f.where == "every entry, the same error along column"
    assert find(N + np.array([[1.0, 2.0, 3.0]])).tag == "axis:row"
    assert find(N + np.array([[1.0, 2.0, 3.0]]), axes=()).tag == "axis:row"   # the default names of 2-D
    five = np.arange(1.0, 33.0).reshape(2, 2, 2, 2, 2)
    assert D.diagnose("dx", "c", five + np.arange(2.0).reshape(2, 1, 1, 1, 1), five, {}).tag == "axis:axis 4"
    assert D.diagnose("dx", "c", five + np.arange(2.0), five, {}).tag == "axis:axis 3"
    one = np.array([[1.0, 2.0, 3.0]])
    assert D.diagnose("dx", "c", one + np.array([[0.0, 1.0, 2.0]]), one, {}, ("row", "column")).tag == "other"


def test_no_pattern_says_so_and_points_to_staged_mode_only_where_the_case_says_it_exists():
    G = N + np.array([[0.0, 1.0, 0.0], [2.0, 0.0, 0.0]])
    f = find(G)
    assert f.tag == "other" and "--staged" not in f.diagnosis and f.fix is None
    assert f.where.startswith("2 of 6 entries wrong")
    assert find(G, ctx={"staged_hint": "`start X --staged`"}).diagnosis.endswith("(`start X --staged`)")


def test_the_summary_names_right_and_wrong_gradients():
    F = [D.Finding("dx", "c", "w", "d", "t"), D.Finding("dx", "c", "w", "d", "t"), D.Finding("db", "c", "w", "d", "t")]
    assert D.summary(F[:1], ["dx", "dW", "db"]) == "dW and db are right; dx is wrong"
    assert D.summary(F, ["dx", "dW", "db"]) == "dW is right; dx and db are wrong"
    assert D.summary(F, ["dx", "db"]) is None                       # all wrong: nothing to add
    assert D.summary([], ["dx", "db"]) is None
    many = [f"d{i}" for i in range(8)]
    assert D.summary([D.Finding("d3", "c", "w", "d", "t")], many) == "7 of 8 gradients are right; d3 is wrong"
    assert D.summary([D.Finding("d1", "c", "w", "d", "t")], many[:7]) == \
        "d0, d2, d3, d4, d5 and d6 are right; d1 is wrong"
    assert D._join(["a"]) == "a" and D._join(["a", "b", "c"]) == "a, b and c"


def test_a_finding_prints_and_serialises():
    f = D.Finding("dx", "T = 1", "every entry", "is wrong", "other", 0.25)
    assert str(f) == "dx [T = 1]: every entry (relative error 2.5e-01)\n    is wrong"
    assert str(D.Finding("dx", "c", "w", "d", "t")) == "dx [c]: w\n    d"
    assert f.as_dict() == dict(gradient="dx", case="T = 1", where="every entry", diagnosis="is wrong", tag="other",
                               rel_error=0.25, fix=None)


# --- the verdict ----------------------------------------------------------------------------
def test_settle_passes_a_right_gradient_and_keeps_a_bug_without_measuring_again():
    def never(h):
        raise AssertionError("measured again")
    bug = D.Finding("dx", "c", "w", "wrong", "scale:2")
    assert V.settle(1e-8, None, never, 1e-6) == (1e-8, None, None)
    assert V.settle(D.TOL_BUG, bug, never, 1e-6) == (D.TOL_BUG, bug, None)
    assert V.settle(D.TOL_PASS, bug, never, 1e-6) == (D.TOL_PASS, bug, None)


def test_settle_calls_an_error_that_moves_with_the_step_noise():
    seen = []

    def err_at(h):
        seen.append(h)
        return {1e-5: 5e-8, 1e-7: 3e-7}[h]
    err, f, note = V.settle(5e-6, D.Finding("dx", "c", "w", "close", "axis:row"), err_at, 1e-6)
    assert seen == [1e-5, 1e-7] and err == 5e-8 and f is None
    assert note == "5.0e-06 at h = 1e-06, 5.0e-08 at h = 1e-05: finite-difference noise, not an error"
    assert V.settle(5e-6, D.Finding("dx", "c", "w", "d", "t"), lambda h: D.TOL_PASS, 1e-6)[1] is None


def test_settle_calls_an_error_that_does_not_move_borderline():
    f0 = D.Finding("dx", "case", "where", "the pattern", "axis:row")
    err, f, note = V.settle(5e-6, f0, lambda h: {1e-5: 4e-6, 1e-7: 6e-6}[h], 1e-6)
    assert err == 5e-6 and note is None and f.tag == "borderline" and f.rel_error == 5e-6
    assert (f.gradient, f.case, f.where) == ("dx", "case", "where")
    assert f.diagnosis == ("a small error (5.0e-06) that does not move with the step h (4.0e-06 at h = 1e-05, "
                           "6.0e-06 at h = 1e-07): small but real, like an eps in the wrong place or a term of "
                           "second order; the closest pattern: the pattern")
    assert V.settle(5e-6, f0, lambda h: 1.01 * D.TOL_PASS, 1e-6)[1].tag == "borderline"


def test_closest_per_entry_takes_each_entrys_best_step():
    mine = np.array([1.0, 2.0, 3.0])
    got = V.closest_per_entry(mine, [np.array([1.5, 2.0, 0.0]), np.array([1.1, 9.0, 2.0]), np.array([0.0, 2.5, 3.1])])
    np.testing.assert_array_equal(got, [1.1, 2.0, 3.1])
    np.testing.assert_array_equal(V.closest_per_entry(mine, [np.array([1.0, 1.0, 1.0])]), [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(V.closest_per_entry(mine, [np.array([0.0, 0, 0]), np.array([2.0, 4, 6])]),
                                  [0.0, 0.0, 0.0])   # a tie keeps the first


def test_the_reports_verdict():
    bug, small = D.Finding("dx", "c", "w", "d", "scale:2"), D.Finding("dx", "c", "w", "d", "borderline")
    assert V.verdict([]) == (True, "passed")
    assert V.verdict([small]) == (False, "borderline")
    assert V.verdict([small, bug]) == (False, "failed")
    assert V.verdict([bug]) == (False, "failed")


def test_same_is_equality_to_rounding_with_nan_where_nan():
    a = np.array([1.0, np.nan, -2.0])
    assert V.same(a, a.copy())
    assert V.same(a * (1 + 5e-10), a)
    assert not V.same(a * (1 + 5e-9), a)
    assert not V.same(np.array([1.0, 0.0, -2.0]), a)
    assert not V.same(a[:2], a)
    assert V.same(np.zeros(2), np.zeros(2))
    assert not V.same(np.array([1e-300]), np.zeros(1))


# --- the boundaries: each constant and comparison above, at the value where it decides -----------
def test_rel_error_at_small_values_and_on_empty_arrays():
    assert D.rel_error(np.array([1e-3]), np.array([2e-3])) == pytest.approx(0.5)   # no floor of 1 by default
    assert D.rel_error(np.zeros(0), np.zeros(0), floor=1.0) == 0.0


def test_close_at_its_tolerance_and_below_the_smallest_normal_scale():
    t = 1e-6 * 3.0
    assert D._close(np.array([t]), np.zeros(1), 3.0)            # at the tolerance: close
    assert D._close(np.array([1e-310]), np.zeros(1), 0.0)       # a zero scale still allows 1e-306
    assert not D._close(np.array([2e-306]), np.zeros(1), 0.0)


def test_where_counts_only_errors_above_its_tolerance():
    E = np.array([[0.0, 1e-6, 5.0], [1e-6 * 5.0, 0.0, 0.0]])   # the second at the tolerance exactly
    assert D._where(E, 5.0, ("row", "column")).startswith("1 of 6 entries wrong")   # 1e-6 and 5e-6 <= 5e-6
    assert D._where(np.zeros((2, 2)), 1.0, ()) == "0 of 4 entries wrong, the largest at index (0, 0)"
    six = np.zeros((2, 8))
    six[1, :6] = 1.0
    assert D._where(six, 1.0, ("row", "column")).endswith("row 1 only; column 0, 1, 2, 3, 4, 5 only")


def test_the_default_axis_names_of_a_1_d_gradient():
    n1 = np.array([1.0, -2.0, 0.5])
    assert D.diagnose("db", "c", n1 + 1.0, n1, {}).tag == "axis:feature"


def test_a_transposed_shape_in_3_d_is_the_last_two_axes_swapped():
    N3 = np.ones((2, 3, 4))
    assert find(np.ones((2, 4, 3)), N=N3, axes=()).tag == "transpose"
    assert find(np.ones((3, 2, 4)), N=N3, axes=()).tag == "shape"


def test_the_pass_line_is_inclusive():
    assert D.diagnose("dx", "c", np.array([1e-7]), np.array([0.0]), {}, floor=1.0) is None   # exactly 1e-7
    assert D.diagnose("dx", "c", np.array([1.1e-7]), np.array([0.0]), {}, floor=1.0) is not None


def test_small_gradients_are_judged_at_their_own_scale():
    rng = np.random.default_rng(0)
    n = rng.standard_normal((3, 4)) * 1e-3
    noisy = 2 * n * (1 + 1e-5 * rng.standard_normal((3, 4)))   # 2x, but not exactly: no scale finding
    assert not find(noisy, N=n).tag.startswith("scale")
    assert find(2 * n, N=n).tag == "scale:2"


def test_a_region_error_of_exactly_one_and_minus_one():
    region = np.array([[False, True, False], [False, False, False]])
    for step in (1.0, -1.0):
        assert find(N + step * region, ctx={"regions": {"dx": [("the pads", region)]}}).tag == "region:the pads"


def test_a_weights_error_of_exactly_one_and_minus_one():
    for step in (1.0, -1.0):
        f = find(N + step, ctx={"weights": {"dx": [("p", np.ones((2, 3)))]}})
        assert f.tag == "weights:p", f


def test_the_weights_detector_never_divides_by_zero_on_a_fully_masked_row():
    zero_row = np.array([[0.0, 0.0, 0.0], [0.6, 0.1, 0.3]])
    with np.errstate(all="raise"):
        assert find(N + zero_row * 2.0, ctx={"weights": {"dx": [("p", zero_row)]}}).tag == "weights:p"


def test_an_axis_past_the_named_ones_is_numbered():
    five = np.arange(1.0, 33.0).reshape(2, 2, 2, 2, 2)
    E = np.broadcast_to(np.arange(16.0).reshape(1, 2, 2, 2, 2) ** 2, five.shape)   # constant along axis 0 only
    assert D.diagnose("dx", "c", five + E, five, {}).tag == "axis:axis 0"


def test_a_suspect_matches_within_one_in_a_million_of_its_size():
    ctx = dict(M=4)
    assert [n for _, n in D._suspects_at(4 * (1 + 5e-7), ctx)] == ["M = B*T = 4 (positions)"]   # 2e-6 <= 4e-6
    assert [n for _, n in D._suspects_at(0.5 + 8e-7, {})] == ["1/2"]                           # |v| < 1: 1e-6
    assert D._suspects_at(0.5 + 1.5e-6, {}) == []
    tau = {"tau": 1e-7}
    assert any(n == "tau = 1e-07" for _, n in D._suspects_at(1e-7 - 1e-6, tau))               # exactly 1e-6 away


def test_the_first_suspect_named_decides_the_factor():
    f = D.scale_finding("dx", "c", 2.0000005, {"tau": 2.000001})   # tau and the generic 2 both match
    assert f.fix == ("scale", 1 / 2.000001) and f.tag == "scale:tau|2"


def test_the_text_names_the_first_name_of_each_side():
    f = find(2 * N, ctx=dict(d_k=4))
    assert "either sqrt(d_k) = sqrt(4) is applied" in f.diagnosis
    assert "or 1/sqrt(d_k) = 1/sqrt(4) is missing" in f.diagnosis
    assert "or a factor 0.588235 is missing" in find(1.7 * N).diagnosis


def test_same_at_its_tolerance_and_on_an_all_zero_reference():
    b = np.array([0.0, 1024.0])
    assert V.same(np.array([1e-9 * 1024.0, 1024.0]), b)   # exactly at 1e-9 of the largest value
    assert V.same(np.array([1e-310]), np.zeros(1))         # an all-zero reference still allows 1e-309


def test_apply_fix_does_what_the_advice_says_on_any_number_of_axes():
    G3 = np.arange(24.0).reshape(2, 3, 4)
    np.testing.assert_array_equal(D.apply_fix(("transpose",), G3), G3.swapaxes(-1, -2))   # the last two, in 3-D
    np.testing.assert_array_equal(D.apply_fix(("scale", -0.5), G3), -0.5 * G3)
    with pytest.raises(ValueError, match="unknown advice"):
        D.apply_fix(("shift", 1.0), G3)
