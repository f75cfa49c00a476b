"""Label-smoothed cross-entropy (npformer/ops/cross_entropy.py) against explicit target distributions."""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from npformer import ops
from npformer.verify.gradcheck import check_gradients

HYP = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
PAD = 0


@st.composite
def ce_shapes(draw):
    """B, T, V and an eps_ls; targets get at least one pad and one real token."""
    return (draw(st.integers(2, 3)), draw(st.integers(2, 4)), draw(st.integers(2, 7)),
            draw(st.sampled_from([0.0, 0.1, 0.3])))


def make_targets(rng, B, T, V):
    targets = rng.integers(0, V, (B, T))  # 0 = PAD appears at random too
    targets[0, 0] = rng.integers(1, V)  # one real token at least
    targets[-1, -1] = PAD  # one padding target at least
    return targets


def log_softmax_rows(z):
    """log p for each row, with math.fsum: an independent, slow reference."""
    out = np.empty_like(z)
    for idx in np.ndindex(z.shape[:-1]):
        m = max(z[idx])
        lse = m + math.log(math.fsum(math.exp(v - m) for v in z[idx]))
        out[idx] = z[idx] - lse
    return out


def smoothed_targets(targets, V, eps_ls):
    """q = (1 - eps_ls) onehot(target) + eps_ls / V, written out as a (..., V) array."""
    return (1 - eps_ls) * np.eye(V)[targets] + eps_ls / V


@HYP
@given(shapes=ce_shapes(), seed=st.integers(0, 2**32 - 1))
def test_cross_entropy_gradients_match_finite_differences(be, shapes, seed):
    B, T, V, eps_ls = shapes
    rng = np.random.default_rng(seed)
    inputs = dict(logits=be.asarray(rng.standard_normal((B, T, V)) * 2.0),
                  targets=be.asarray(make_targets(rng, B, T, V)), pad_id=PAD, eps_ls=eps_ls)
    result = check_gradients(ops.cross_entropy_forward, ops.cross_entropy_backward, inputs, "cross_entropy",
                             seed=seed)
    assert result.passed, f"max_rel_error={result.max_rel_error:.2e} errors={result.errors} problems={result.problems}"


@HYP
@given(shapes=ce_shapes(), seed=st.integers(0, 2**32 - 1))
def test_cross_entropy_equals_the_explicit_smoothed_distribution(be, shapes, seed):
    # loss = (1/N) sum_{n not pad} -sum_v q_nv log p_nv;   dz = dloss * valid * (p - q) / N
    B, T, V, eps_ls = shapes
    rng = np.random.default_rng(seed)
    z, targets = rng.standard_normal((B, T, V)) * 2.0, make_targets(rng, B, T, V)
    valid = targets != PAD
    N = valid.sum()
    q = smoothed_targets(targets, V, eps_ls)
    logp = log_softmax_rows(z)
    expected = -(q * logp).sum(axis=-1)[valid].sum() / N
    loss, cache = ops.cross_entropy_forward(be.asarray(z), be.asarray(targets), pad_id=PAD, eps_ls=eps_ls)
    assert loss.shape == ()
    np.testing.assert_allclose(float(loss), expected, rtol=1e-12)
    dz = ops.cross_entropy_backward(be.asarray(np.array(1.7)), cache)
    np.testing.assert_allclose(be.to_host(dz), 1.7 * valid[..., None] * (np.exp(logp) - q) / N, rtol=1e-10, atol=1e-14)


@HYP
@given(shapes=ce_shapes(), seed=st.integers(0, 2**32 - 1))
def test_cross_entropy_without_smoothing_is_the_nll(be, shapes, seed):
    B, T, V, _ = shapes
    rng = np.random.default_rng(seed)
    z, targets = rng.standard_normal((B, T, V)) * 2.0, make_targets(rng, B, T, V)
    logp = log_softmax_rows(z)
    nll = [-logp[b, t, targets[b, t]] for b in range(B) for t in range(T) if targets[b, t] != PAD]
    loss, _ = ops.cross_entropy_forward(be.asarray(z), be.asarray(targets), pad_id=PAD, eps_ls=0.0)
    np.testing.assert_allclose(float(loss), math.fsum(nll) / len(nll), rtol=1e-12)


def test_padding_positions_get_no_gradient_and_do_not_count(be):
    rng = np.random.default_rng(0)
    z = rng.standard_normal((2, 3, 5))
    targets = np.array([[1, 2, 0], [4, 0, 0]])
    loss, cache = ops.cross_entropy_forward(be.asarray(z), be.asarray(targets), eps_ls=0.1)
    dz = be.to_host(ops.cross_entropy_backward(be.asarray(np.array(1.0)), cache))
    assert (dz[targets == PAD] == 0).all()
    np.testing.assert_allclose(dz.sum(axis=-1), 0.0, atol=1e-15)  # q and p both sum to 1
    z2 = z.copy()
    z2[targets == PAD] = 50.0  # logits at padding positions do not matter
    loss2, _ = ops.cross_entropy_forward(be.asarray(z2), be.asarray(targets), eps_ls=0.1)
    assert float(loss2) == pytest.approx(float(loss), rel=1e-14)


def test_loss_is_a_mean_over_tokens(be):
    # Two copies of a batch: the same loss, and half the gradient per logit (averaged once, by N).
    rng = np.random.default_rng(1)
    z, targets = rng.standard_normal((2, 3, 5)), np.array([[1, 2, 0], [4, 3, 0]])
    loss1, c1 = ops.cross_entropy_forward(be.asarray(z), be.asarray(targets))
    loss2, c2 = ops.cross_entropy_forward(be.asarray(np.concatenate([z, z])), be.asarray(np.concatenate([targets] * 2)))
    dz1 = be.to_host(ops.cross_entropy_backward(be.asarray(np.array(1.0)), c1))
    dz2 = be.to_host(ops.cross_entropy_backward(be.asarray(np.array(1.0)), c2))
    assert float(loss2) == pytest.approx(float(loss1), rel=1e-13)
    np.testing.assert_allclose(dz2[:2], dz1 / 2, rtol=1e-12, atol=1e-16)


def test_cross_entropy_is_stable_for_huge_logits_in_float32(be):
    z = np.zeros((2, 1, 4), dtype=np.float32)
    z[0, 0] = [1e4, -1e4, 0.0, 1e4 - 1.0]
    z[1, 0] = [-1e4, -1e4, -1e4, -1e4]
    targets = np.array([[3], [2]])
    loss, cache = ops.cross_entropy_forward(be.asarray(z), be.asarray(targets), eps_ls=0.0)
    dz = be.to_host(ops.cross_entropy_backward(be.asarray(np.array(1.0, dtype=np.float32)), cache))
    assert loss.dtype == np.float32 and dz.dtype == np.float32
    assert np.isfinite(float(loss)) and np.isfinite(dz).all()
    expected = (math.log1p(math.exp(-1.0)) + 1.0 + math.log(4.0)) / 2  # -log p: (1 + log(1 + e^-1)), log 4
    # the loss is computed relative to the row max, so no two numbers near 1e4 are subtracted
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    p_true = 1 / (1 + math.exp(1.0))  # p of the target logit 1e4 - 1 in row 0
    np.testing.assert_allclose(dz[0, 0], np.array([1 - p_true, 0, 0, p_true - 1]) / 2, atol=1e-6)


def test_cross_entropy_rejects_bad_targets(be):
    z = be.xp.zeros((2, 3, 5))
    with pytest.raises(ValueError, match="does not match"):
        ops.cross_entropy_forward(z, be.xp.ones((2, 4), dtype=int))
    if be.on_device:  # checking values would read them back: the caller checks its host batch
        return
    with pytest.raises(ValueError, match="every target is padding"):
        ops.cross_entropy_forward(z, be.xp.zeros((2, 3), dtype=int))
    with pytest.raises(ValueError, match=r"targets must be in \[0, 5\).*\[-1, 1\]"):
        ops.cross_entropy_forward(z, be.asarray([[1, 1, -1], [0, 0, 1]]))


def test_cross_entropy_reads_nothing_back_on_a_device():
    from npformer.backend import get_backend
    from npformer.cupysim import host_reads
    be = get_backend("cupysim")
    z = be.asarray(np.random.default_rng(0).standard_normal((2, 3, 5)))
    with host_reads() as reads:
        loss, cache = ops.cross_entropy_forward(z, be.asarray([[1, 2, 0], [3, 4, 4]]))
        ops.cross_entropy_backward(1.0, cache)
    assert len(reads) == 0, reads


@pytest.mark.parametrize("eps_ls", [0.0, 0.1])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cross_entropy_contract_keeps_dtype_and_shapes(be, op_contract, dtype, eps_ls):
    rng = np.random.default_rng(2)
    inputs = dict(logits=be.asarray(rng.standard_normal((2, 3, 6)), dtype=dtype),
                  targets=be.asarray(make_targets(rng, 2, 3, 6)), pad_id=PAD, eps_ls=eps_ls)
    loss, grads = op_contract(ops.cross_entropy_forward, ops.cross_entropy_backward, inputs)
    assert loss.shape == ()
    assert set(grads) == {"logits"}


def test_the_default_label_smoothing_is_the_papers(be):
    # eps_ls = 0.1 (paper §5.4) when the caller names none: the loss and its gradient are eps_ls = 0.1's
    rng = np.random.default_rng(3)
    z, targets = rng.standard_normal((2, 3, 5)), np.array([[1, 2, 0], [4, 3, 0]])
    default, c_default = ops.cross_entropy_forward(be.asarray(z), be.asarray(targets))
    paper, c_paper = ops.cross_entropy_forward(be.asarray(z), be.asarray(targets), eps_ls=0.1)
    nll, _ = ops.cross_entropy_forward(be.asarray(z), be.asarray(targets), eps_ls=0.0)
    assert float(default) == float(paper) != float(nll)
    np.testing.assert_array_equal(be.to_host(ops.cross_entropy_backward(1.0, c_default)),
                                  be.to_host(ops.cross_entropy_backward(1.0, c_paper)))
