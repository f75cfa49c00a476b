"""Training trajectories agree across backends: five steps of the ``small`` preset on
NumPy and on cupysim (CuPy's rules on the CPU, which take the device path: flat
buffers and the fused Adam kernel) from the same weights and batch give the same
losses and the same parameters. A test on one backend proves nothing about
another; these compare them. (Two MPI ranks: tests/runtime/distributed/test_mpi.py.)"""
import numpy as np
import pytest

from npformer.data.batching import Batch
from npformer.model.config import preset
from npformer.train.state import init_state
from npformer.train.trainer import train_step

VOCAB, STEPS, LR = 96, 5, 1e-3
# dtype -> the tolerance on losses and parameters
TOLERANCE = {"float64": 1e-10, "float32": 1e-5}


def fixed_batch(cfg, seed: int = 0, B: int = 8, S: int = 11, T: int = 9) -> Batch:
    """Random ids on the host with ragged padding (some rows shorter than others)."""
    rng = np.random.default_rng(seed)
    src = rng.integers(3, cfg.vocab_size, size=(B, S))
    tgt = rng.integers(3, cfg.vocab_size, size=(B, T + 1))
    for b in range(B):
        src[b, S - b % 4:] = cfg.pad_id
        tgt[b, T + 1 - b % 3:] = cfg.pad_id
    tgt_out = tgt[:, 1:]
    return Batch(src, tgt[:, :-1], tgt_out, int((tgt_out != cfg.pad_id).sum()), np.arange(B))


def trajectory(backend: str, dtype: str, workers: int = 1, p_drop: float = 0.0, steps: int = STEPS):
    """The losses of ``steps`` updates on one batch, and the parameters after them, on the host."""
    cfg = preset("small", vocab_size=VOCAB, p_drop=p_drop, max_len=64)
    state = init_state(cfg, seed=0, backend=backend, dtype=dtype, workers=workers)
    batch = fixed_batch(cfg)
    losses = [train_step(state, cfg, batch, LR)[0] for _ in range(steps)]
    from npformer.backend import get_backend
    host = {k: get_backend(backend).to_host(v) for k, v in state.params.items()}
    return np.array(losses), host


def assert_same_run(a, b, tol: float):
    (losses_a, params_a), (losses_b, params_b) = a, b
    np.testing.assert_allclose(losses_b, losses_a, rtol=tol, atol=tol)
    assert list(params_a) == sorted(params_a, key=list(params_a).index) and set(params_a) == set(params_b)
    for k in params_a:
        assert params_b[k].dtype == params_a[k].dtype, k
        np.testing.assert_allclose(params_b[k], params_a[k], rtol=tol, atol=tol, err_msg=k)


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_numpy_and_cupysim_train_alike(dtype, workers):
    numpy_run = trajectory("numpy", dtype, workers)
    assert numpy_run[0][-1] < numpy_run[0][0] - 0.5  # it learns: the batch is memorised quickly
    assert_same_run(numpy_run, trajectory("cupysim", dtype, workers), TOLERANCE[dtype])


def test_with_dropout_the_same_generators_give_the_same_losses():
    """cupysim's generators draw NumPy's streams, so the (seed, shard) generators give
    both backends the same masks: the losses track to float32 rounding."""
    a, _ = trajectory("numpy", "float32", workers=2, p_drop=0.1)
    b, _ = trajectory("cupysim", "float32", workers=2, p_drop=0.1)
    np.testing.assert_allclose(b, a, rtol=1e-5)
    assert a[-1] < a[0]


def test_every_gradient_moves_its_own_parameter():
    """One step at a tiny rate from zero moments: Adam moves each element by about
    lr * sign(g). On the device path, a gradient buffer laid out in another order
    would move parameters by other parameters' signs."""
    cfg = preset("small", vocab_size=VOCAB, p_drop=0.0, max_len=64)
    batch = fixed_batch(cfg)
    from npformer.model.transformer import loss_and_grads
    from npformer.backend import get_backend
    for backend in ("numpy", "cupysim"):
        be = get_backend(backend)
        state = init_state(cfg, seed=0, backend=backend, dtype="float64")
        before = {k: be.to_host(v).copy() for k, v in state.params.items()}
        _, grads, _ = loss_and_grads(state.params, cfg, be.asarray(batch.src), be.asarray(batch.tgt_in),
                                  be.asarray(batch.tgt_out))
        signs = {k: np.sign(be.to_host(g)) for k, g in grads.items()}
        train_step(state, cfg, batch, 1e-6)
        for k, p in state.params.items():
            moved = before[k] - be.to_host(p)
            big = np.abs(moved) > 1e-7  # entries whose gradient is not ~0
            np.testing.assert_array_equal(np.sign(moved[big]), signs[k][big], err_msg=f"{backend}: {k}")
