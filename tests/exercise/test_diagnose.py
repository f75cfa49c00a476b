"""The detectors' advice is right by construction: a scale finding says which way to fix it from
the measured ratio, a transpose finding names the op's own product, and for every known mistake
whose advice is an operation on the gradient, doing what it says makes the gradient right."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npformer.exercise import EXERCISES, check
from npformer.verify.diagnose import apply_fix, diagnose, scale_suspects
from npformer.exercise.grader import Fns, all_references, case_grads
from npformer.exercise.mistakes import MISTAKES
from npformer.verify.gradcheck import numerical_gradient

CTX = dict(d_model=6, d_k=3, p=0.3, n_valid=7, n_all=12, M=8)


@settings(max_examples=60, deadline=None)
@given(r=st.one_of(st.sampled_from([v for v, _ in scale_suspects(CTX)]),
                   st.floats(0.05, 20.0).filter(lambda x: abs(x - 1) > 1e-3),
                   st.floats(-20.0, -0.05)),
       seed=st.integers(0, 2**31 - 1))
def test_a_scale_finding_says_the_direction_the_ratio_says_and_its_fix_restores_the_gradient(r, seed):
    N = np.random.default_rng(seed).standard_normal((3, 4)) + 0.1
    f = diagnose("dx", "case", r * N, N, CTX)
    assert f.tag.startswith("scale:")
    np.testing.assert_allclose(apply_fix(f.fix, r * N), N, rtol=1e-12, atol=1e-12)
    text = f.diagnosis
    if r < 0 and abs(r + 1) < 1e-9:
        assert "sign is flipped" in text
    elif abs(r) > 1:
        assert "too large" in text and "too small" not in text
    else:
        assert "too small" in text and "too large" not in text
    # the number to multiply by is the inverse of the ratio, printed as such
    assert f"multiply by {1 / r:.6g}" in text


@pytest.mark.parametrize("r,applied,missing", [
    (0.125, "1/M = 1/8", "M = B*T = 8"),           # a mean over positions where a sum belongs
    (0.7, "1-p = 0.7", "1/(1-p) = 1/(1-0.3)"),      # inverted dropout's 1/(1-p) forgotten
    (1 / 0.7, "1/(1-p) = 1/(1-0.3)", "1-p = 0.7"),  # the 1/(1-p) applied twice
    (7 / 12, "N_valid/N_all = 7/12", "N_all/N_valid = 12/7"),  # divided by all tokens
])
def test_a_named_factor_is_said_to_be_applied_and_its_inverse_missing(r, applied, missing):
    text = diagnose("dx", "case", r * np.arange(1.0, 9.0), np.arange(1.0, 9.0), {**CTX, "M": 8}).diagnosis
    assert f"either {applied}" in text and f"or {missing}" in text, text


def test_the_transpose_advice_names_the_ops_own_product():
    N = np.random.default_rng(0).standard_normal((4, 4))
    products = {"dW": "for y = x W: dW = x^T dy, not dy^T x",
                "dE_out": "for logits = H E_out^T: dE_out = dlogits^T H, not H^T dlogits"}
    for grad in products:
        f = diagnose(grad, "case", N.T, N, {"products": products})
        assert f.tag == "transpose" and products[grad] in f.diagnosis and f.fix == ("transpose",)
    shaped = diagnose("dE_out", "case", N[:3].T, N[:3], {"products": products})
    assert shaped.tag == "transpose" and "dlogits^T H" in shaped.diagnosis
    assert "x^T dy" not in diagnose("dE", "case", N.T, N, {}).diagnosis  # no product: no made-up one


def _learner_and_true(exercise_id, functions, seed):
    """Per case: the learner's gradients and the numerical ones, as the grader draws them."""
    from npformer.backend import get_backend
    be = get_backend("numpy")
    refs = all_references()
    out = []
    for case in EXERCISES[exercise_id].cases(np.random.default_rng(seed), be):
        y, cache = case.forward(**case.inputs)
        dy = np.random.default_rng(seed).standard_normal(np.shape(y)) + 0.5
        try:
            grads = case_grads(case, Fns(functions, refs), dy, cache)
        except Exception:  # noqa: BLE001 -- a mistake that cannot run on this case's shapes
            continue
        true = case_grads(case, Fns({}, refs), dy, cache)
        out.append((case.name, grads, true))
    return out


KNOWN = [(e, m) for e, ms in MISTAKES.items() for m in ms if e not in ("positional", "model")]


@pytest.mark.parametrize("exercise_id,mistake", KNOWN, ids=[f"{e}-{m.name}" for e, m in KNOWN])
def test_the_advice_on_a_known_mistake_fixes_it_where_it_is_a_scale_or_a_transpose(exercise_id, mistake):
    report = check(exercise_id, mistake.functions, seed=17, quiet=True, composed=False, known=False)
    fixes = [f for f in report.findings if f.fix is not None]
    if not fixes:
        pytest.skip("no scale or transpose advice for this mistake")
    by_case = {name: (g, t) for name, g, t in _learner_and_true(exercise_id, mistake.functions, 17)}
    for f in fixes:
        grads, true = by_case[f.case]
        fixed = apply_fix(f.fix, grads[f.gradient])
        np.testing.assert_allclose(fixed, true[f.gradient], rtol=1e-12, atol=1e-14,
                                   err_msg=f"{mistake.name}: {f.diagnosis}")


def test_the_softmax_sum_term_forgotten_inside_attention_is_named():
    def attention_backward(dout, cache):  # the learner's: dS = P * dP, the Jacobian's diagonal only
        Q, K, V, P, scale = cache
        dP = dout @ V.swapaxes(-1, -2)
        dS = P * dP * scale
        return dS @ K, dS.swapaxes(-1, -2) @ Q, P.swapaxes(-1, -2) @ dout
    report = check("attention", attention_backward, seed=3, quiet=True, composed=False, known=False)
    tags = {f.gradient: f.tag for f in report.findings}
    assert tags["dQ"] == "weights:P K / sqrt(d_k)", report
    assert "-sum(dP * P)" in next(f.diagnosis for f in report.findings if f.gradient == "dQ")


def test_a_linear_dx_with_W_not_transposed_is_named_on_a_square_W():
    def linear_backward(dy, cache):
        x, W = cache
        rows = x.reshape(-1, x.shape[-1]), dy.reshape(-1, dy.shape[-1])
        return dy @ W, rows[0].T @ rows[1], rows[1].sum(axis=0)
    report = check("linear", linear_backward, seed=5, quiet=True, composed=False, known=False)
    f = report.findings[0]
    assert f.gradient == "dx" and f.tag == "operands" and "dy W^T" in f.diagnosis, report


def test_the_other_finding_points_to_staged_mode_only_where_it_exists_and_never_inside_it():
    def wrong(dy, cache):
        x, W = cache
        rng = np.random.default_rng(0)
        rows = x.reshape(-1, x.shape[-1]), dy.reshape(-1, dy.shape[-1])
        return dy @ W.T + rng.standard_normal(x.shape) * 0.1, rows[0].T @ rows[1], rows[1].sum(axis=0)
    linear = check("linear", wrong, seed=1, quiet=True, composed=False, known=False)
    assert any(f.tag == "other" for f in linear.findings)
    assert not any("--staged" in f.diagnosis for f in linear.findings)

    def ln_wrong(dy, cache):
        xhat, rstd, gamma = cache
        return dy * gamma * rstd * 1.1 + xhat, (dy * xhat).reshape(-1, xhat.shape[-1]).sum(0), \
            dy.reshape(-1, xhat.shape[-1]).sum(0)
    ln = check("layernorm", ln_wrong, seed=1, quiet=True, composed=False, known=False)
    assert any("--staged" in f.diagnosis for f in ln.findings if f.tag == "other"), ln


def test_staged_attention_names_the_missing_sum_term_at_the_scores():
    from types import SimpleNamespace

    def d_out(g, f):
        return g["out"]

    node = dict(
        d_P=lambda g, f: g["out"] @ f["V"].swapaxes(-1, -2),
        d_Ss=lambda g, f: f["P"] * g["P"],  # the -sum(dP * P) term forgotten
        d_S=lambda g, f: g["Ss"] * f["scale"],
        d_Q=lambda g, f: g["S"] @ f["K"],
        d_K=lambda g, f: g["S"].swapaxes(-1, -2) @ f["Q"],
        d_V=lambda g, f: f["P"].swapaxes(-1, -2) @ g["out"])
    learner = SimpleNamespace(STAGED=True, **node)
    report = check("attention", learner, seed=4, quiet=True)
    first = report.findings[0]
    assert first.gradient == "dSs" and first.tag == "weights:P", report
    assert not any("--staged" in f.diagnosis for f in report.findings)


def test_a_draw_never_makes_sqrt_d_k_or_the_dropout_factor_equal_to_the_generic_two():
    from npformer.backend import get_backend
    be = get_backend("numpy")
    for seed in range(40):
        for eid in ("attention", "multihead", "dropout", "encoder_layer", "model"):
            for case in EXERCISES[eid].cases(np.random.default_rng(seed), be):
                ctx = case.context
                if "d_k" in ctx:
                    assert ctx["d_k"] not in (2, 4), (eid, ctx["d_k"])
                if "p" in ctx:
                    assert ctx["p"] != 0.5, (eid, ctx["p"])


def test_the_cross_attention_case_always_has_T_q_different_from_T_k():
    from npformer.backend import get_backend
    be = get_backend("numpy")
    for seed in range(60):
        case = EXERCISES["attention"].cases(np.random.default_rng(seed), be)[1]
        assert "T_q != T_k" in case.name
        assert case.inputs["Q"].shape[-2] != case.inputs["K"].shape[-2], seed


def test_numerical_gradient_is_the_one_the_advice_is_checked_against():
    # the property tests above compare with the reference's analytic gradients; on one case, those
    # equal the central differences the grader uses (so "fixes it" means what the grader sees)
    from npformer.backend import get_backend
    be = get_backend("numpy")
    case = EXERCISES["linear"].cases(np.random.default_rng(2), be)[0]
    y, cache = case.forward(**case.inputs)
    dy = np.random.default_rng(2).standard_normal(y.shape) + 0.5
    true = case_grads(case, Fns({}, all_references()), dy, cache)
    _, num = numerical_gradient(case.forward, case.inputs, "W", dy, 1e-6, None, 2)
    np.testing.assert_allclose(true["dW"].reshape(-1), num.reshape(-1), rtol=1e-7, atol=1e-9)
