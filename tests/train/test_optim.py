"""Adam against a scalar reference, dtype preservation, state round trip, clipping."""
import math

import numpy as np
import pytest

from npformer.train.optim import Adam, clip_grad_norm, global_norm
from npformer.train.state import trainable


def adam_reference(theta, grads, lrs, beta1=0.9, beta2=0.98, eps=1e-9):
    """Kingma & Ba, Algorithm 1, one Python float at a time."""
    m = v = 0.0
    for t, (g, lr) in enumerate(zip(grads, lrs), start=1):
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        m_hat, v_hat = m / (1 - beta1 ** t), v / (1 - beta2 ** t)
        theta = theta - lr * m_hat / (math.sqrt(v_hat) + eps)
    return theta, m, v


def test_adam_matches_scalar_reference(be):
    rng = np.random.default_rng(0)
    theta0 = rng.normal(size=(3, 4))
    grad_seq = [rng.normal(size=(3, 4)) for _ in range(5)]
    lrs = [1e-3, 2e-3, 3e-3, 2e-3, 1e-3]
    params = trainable({"w": be.asarray(theta0.copy())})  # a FlatDict on a device: the fused update
    opt = Adam(params)
    for g, lr in zip(grad_seq, lrs):
        opt.update(params, {"w": be.asarray(g)}, lr)
    assert opt.t == 5
    got, m, v = (be.to_host(a) for a in (params["w"], opt.m["w"], opt.v["w"]))
    for i in np.ndindex(theta0.shape):
        ref_theta, ref_m, ref_v = adam_reference(theta0[i], [g[i] for g in grad_seq], lrs)
        assert got[i] == pytest.approx(ref_theta, rel=1e-12, abs=1e-15)
        assert m[i] == pytest.approx(ref_m, rel=1e-12)
        assert v[i] == pytest.approx(ref_v, rel=1e-12)


def test_adam_blocks_cover_large_parameters_exactly(monkeypatch):
    """A parameter of several blocks (and a partial last one) is updated in every
    element exactly as one whole-array update would."""
    from npformer.train import optim
    rng = np.random.default_rng(1)
    theta0 = rng.normal(size=(7, 11))  # 77 elements: blocks of 16 leave 13 at the end
    grad_seq = [rng.normal(size=theta0.shape) for _ in range(3)]
    results = []
    for block in (16, 1 << 20):
        monkeypatch.setattr(optim, "ADAM_BLOCK", block)
        params = {"w": theta0.copy()}
        opt = Adam(params)
        for g in grad_seq:
            opt.update(params, {"w": g}, 1e-2)
        results.append((params["w"], opt.m["w"], opt.v["w"]))
    for blocked, whole in zip(*results):
        assert np.array_equal(blocked, whole)
    assert not np.array_equal(results[0][0], theta0)


def test_adam_updates_non_contiguous_parameters_in_place(monkeypatch):
    """A Fortran-ordered parameter (np.load keeps the order it was saved in) has
    no flat view; it must still be updated in place, like a C-ordered one."""
    from npformer.train import optim
    monkeypatch.setattr(optim, "ADAM_BLOCK", 8)
    rng = np.random.default_rng(2)
    theta0, g = rng.normal(size=(6, 5)), rng.normal(size=(6, 5))
    c_params, f_params = {"w": theta0.copy()}, {"w": np.asfortranarray(theta0)}
    for params in (c_params, f_params):
        Adam(params).update(params, {"w": g}, 1e-2)
    assert f_params["w"].flags.f_contiguous
    np.testing.assert_array_equal(f_params["w"], c_params["w"])
    assert not np.array_equal(c_params["w"], theta0)
    assert global_norm({"w": np.asfortranarray(g)}) == pytest.approx(np.linalg.norm(g), rel=1e-12)


def test_adam_defaults_are_the_papers():
    opt = Adam({"w": np.zeros(2)})
    assert (opt.beta1, opt.beta2, opt.eps) == (0.9, 0.98, 1e-9)


def test_adam_keeps_float32(be):
    params = trainable({"w": be.xp.ones((4, 4), dtype="float32"), "b": be.xp.zeros(4, dtype="float32")})
    opt = Adam(params)
    grads = {k: be.xp.full(p.shape, 0.5, dtype="float32") for k, p in params.items()}
    w_before = params["w"]
    for _ in range(3):
        opt.update(params, grads, 1e-3)
    assert params["w"] is w_before  # updated in place
    for d in (params, opt.m, opt.v):
        assert all(a.dtype == np.float32 for a in d.values())
    # with a constant gradient m_hat / sqrt(v_hat) = 1, so each step moves by lr (up to eps)
    np.testing.assert_allclose(be.to_host(params["w"]), 1 - 3e-3, rtol=1e-6)


def test_adam_rejects_mismatched_grads():
    params = {"w": np.ones(3, dtype="float32")}
    opt = Adam(params)
    with pytest.raises(ValueError, match="keys"):
        opt.update(params, {"x": np.ones(3, dtype="float32")}, 1e-3)
    with pytest.raises(TypeError, match="float64"):
        opt.update(params, {"w": np.ones(3)}, 1e-3)


def test_adam_names_exactly_the_keys_that_differ():
    """The error lists the keys in one of params, grads and the optimizer state but not in all three."""
    params = {k: np.ones(2) for k in "abcdef"}
    opt = Adam(params)
    grads = {k: np.ones(2) for k in "abdefz"}  # c missing, z unexpected
    with pytest.raises(ValueError, match=r"differing keys: \['c', 'z'\]$"):
        opt.update(params, grads, 1e-3)
    with pytest.raises(ValueError, match=r"differing keys: \['g', 'h', 'i', 'j', 'k'\]$"):  # the first five
        opt.update(params, {**params, **{k: np.ones(2) for k in "ghijkl"}}, 1e-3)
    opt.m.pop("f")  # the state lost one key: it differs from params (and grads)
    with pytest.raises(ValueError, match=r"differing keys: \['f'\]$"):
        opt.update(params, {k: np.ones(2) for k in "abcdef"}, 1e-3)


def test_adam_state_round_trip_continues_identically():
    rng = np.random.default_rng(1)
    p1 = {"w": rng.normal(size=5)}
    p2 = {"w": p1["w"].copy()}
    grads = [{"w": rng.normal(size=5)} for _ in range(4)]
    a = Adam(p1)
    b = Adam(p2)
    for g in grads[:2]:
        a.update(p1, g, 1e-2)
        b.update(p2, g, 1e-2)
    c = Adam(p2)
    c.load_state_dict(b.state_dict())
    for g in grads[2:]:
        a.update(p1, g, 1e-2)
        c.update(p2, g, 1e-2)
    assert c.t == 4
    np.testing.assert_array_equal(p1["w"], p2["w"])


def test_load_state_dict_checks_shapes():
    opt = Adam({"w": np.zeros(3)})
    bad = Adam({"w": np.zeros(4)}).state_dict()
    with pytest.raises(ValueError, match="shape"):
        opt.load_state_dict(bad)


def test_load_state_dict_names_exactly_the_keys_that_differ():
    opt = Adam({k: np.zeros(2) for k in "abc"})
    other = Adam({k: np.zeros(2) for k in "abdz"}).state_dict()  # c missing, d and z unexpected
    with pytest.raises(ValueError, match=r"adam: state 'm' keys differ from the parameters': \['c', 'd', 'z'\]$"):
        opt.load_state_dict(other)
    many = Adam({k: np.zeros(2) for k in "abcdefghi"}).state_dict()
    with pytest.raises(ValueError, match=r"differ from the parameters': \['d', 'e', 'f', 'g', 'h'\]$"):
        opt.load_state_dict(many)  # the first five


def test_the_norm_of_float32_gradients_is_summed_in_float64():
    """Ten float32 gradients of 1e19 each: every square fits float32 (1e38 < 3.4e38), their sum does
    not; it is added in float64, so the norm is finite and right instead of inf (a refused step)."""
    from npformer.train.optim import squared_norm
    grads = {f"g{i}": np.full(1, 1e19, dtype="float32") for i in range(10)}
    total = squared_norm(grads)
    assert total.dtype == np.float64
    assert float(total) == pytest.approx(10 * float(np.float32(1e19)) ** 2, rel=1e-6)
    assert global_norm(grads) == pytest.approx(math.sqrt(10) * float(np.float32(1e19)), rel=1e-6)


def test_clip_scale_is_1_without_a_limit_or_under_it():
    from npformer.train.optim import clip_scale
    assert clip_scale(5.0, None) == 1.0 and clip_scale(1e30, None) == 1.0  # no clipping asked for
    assert clip_scale(5.0, 10.0) == 1.0 and clip_scale(20.0, 10.0) == 0.5
    assert clip_scale(float("inf"), 1.0) == 1.0 and clip_scale(float("nan"), 1.0) == 1.0
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="max_norm must be positive"):
            clip_scale(5.0, bad)


def test_global_norm_and_clipping(be):
    grads = {"a": be.asarray(np.array([3.0, 0.0], dtype="float32")),
             "b": be.asarray(np.array([[0.0], [4.0]], dtype="float32"))}
    assert global_norm(grads) == pytest.approx(5.0)
    assert clip_grad_norm(grads, 10.0) == pytest.approx(5.0)  # under the limit: untouched
    np.testing.assert_array_equal(be.to_host(grads["a"]), [3.0, 0.0])
    assert clip_grad_norm(grads, 1.0) == pytest.approx(5.0)  # returns the norm before clipping
    assert global_norm(grads) == pytest.approx(1.0, rel=1e-6)
    np.testing.assert_allclose(be.to_host(grads["a"]), [0.6, 0.0], rtol=1e-6)
    np.testing.assert_allclose(be.to_host(grads["b"]), [[0.0], [0.8]], rtol=1e-6)
    assert grads["a"].dtype == np.float32


def test_clipping_leaves_non_finite_gradients_for_the_caller():
    grads = {"a": np.array([np.inf, 1.0])}
    assert clip_grad_norm(grads, 1.0) == math.inf
    with pytest.raises(ValueError, match="positive"):
        clip_grad_norm(grads, 0.0)


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-13), ("float32", 2e-6)])
def test_fused_device_update_equals_the_host_reference(dtype, rtol):
    """The one-kernel form of Adam (cupy.fuse over flat buffers) and the readable
    per-array form give the same parameters and moments, clipping factor included."""
    from npformer.backend import get_backend
    from npformer.runtime.flat import FlatDict
    from npformer.train.optim import squared_norm
    sim = get_backend("cupysim")
    rng = np.random.default_rng(3)
    shapes = {"W": (5, 7), "b": (7,), "gamma": (3, 2, 2)}
    start = {k: rng.normal(size=s).astype(dtype) for k, s in shapes.items()}
    grad_seq = [{k: rng.normal(size=s).astype(dtype) for k, s in shapes.items()} for _ in range(4)]
    host = {k: a.copy() for k, a in start.items()}
    device = FlatDict({k: sim.asarray(a) for k, a in start.items()})
    opt_h, opt_d = Adam(host), Adam(device)
    assert not opt_h.fused and opt_d.fused
    for t, grads in enumerate(grad_seq):
        scale = 0.5 if t % 2 else 1.0
        g_dev = {k: sim.asarray(g) for k, g in reversed(grads.items())}  # as the backward orders them
        assert float(squared_norm(g_dev)) == pytest.approx(float(squared_norm(grads)), rel=rtol)
        opt_h.update(host, grads, 1e-2, grad_scale=scale)
        opt_d.update(device, g_dev if t % 2 else FlatDict(g_dev, layout=device), 1e-2, grad_scale=scale)
    for mine, theirs in ((host, device), (opt_h.m, opt_d.m), (opt_h.v, opt_d.v)):
        for k in shapes:
            assert theirs[k].dtype == dtype
            np.testing.assert_allclose(sim.to_host(theirs[k]), mine[k], rtol=rtol, atol=1e-12, err_msg=k)


def test_grad_scale_is_the_same_as_clipping_first():
    rng = np.random.default_rng(4)
    theta, g = rng.normal(size=(4, 3)), rng.normal(size=(4, 3)) * 10
    a, b = {"w": theta.copy()}, {"w": theta.copy()}
    opt_a, opt_b = Adam(a), Adam(b)
    for _ in range(3):
        grads = {"w": g.copy()}
        norm = clip_grad_norm(grads, 1.0)
        opt_a.update(a, grads, 1e-2)
        opt_b.update(b, {"w": g}, 1e-2, grad_scale=1.0 / norm)
    np.testing.assert_allclose(a["w"], b["w"], rtol=1e-12)


def test_a_device_optimizer_needs_flat_parameters():
    from npformer.backend import get_backend
    sim = get_backend("cupysim")
    with pytest.raises(TypeError, match="FlatDict"):
        Adam({"w": sim.xp.zeros(3)})
    params = trainable({"w": sim.xp.zeros(3)})
    opt = Adam(params)
    with pytest.raises(ValueError, match="not the FlatDict this optimizer was built with"):
        opt.update(trainable({"w": sim.xp.zeros(3)}), {"w": sim.xp.ones(3)}, 1e-3)


def test_the_fused_update_refuses_gradients_laid_out_in_another_order():
    """The kernel pairs params.flat[i] with grads.flat[i]: a gradient buffer in another
    order would update every parameter with pieces of the others' gradients."""
    from npformer.backend import get_backend
    from npformer.runtime.flat import FlatDict
    sim = get_backend("cupysim")
    params = trainable({"W": sim.xp.zeros((2, 3)), "b": sim.xp.zeros(3)})
    opt = Adam(params)
    backwards = FlatDict({"b": sim.xp.ones(3), "W": sim.xp.ones((2, 3))})
    with pytest.raises(ValueError, match=r"another order than the parameters' \(entry 0 is 'b', expected 'W'\)"):
        opt.update(params, backwards, 1e-3)
    assert opt.t == 0 and float(sim.xp.abs(params.flat).sum()) == 0.0  # refused before any change
    with pytest.raises(ValueError, match="expected a FlatDict"):
        params.require_same_layout({"W": sim.xp.ones((2, 3)), "b": sim.xp.ones(3)}, "adam: the gradients")
