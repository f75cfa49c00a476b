"""Run under ``mpiexec -n 2 python -m pytest`` by test_mpi.py (not collected on
its own): the MPI communicator's collectives, and training on real ranks."""
import numpy as np
import pytest

from npformer.train.schedule import Schedule
from npformer.runtime import workers as workers_module
from npformer.runtime.distributed.buckets import Buckets
from npformer.runtime.distributed.communicator import RanksDisagree
from npformer.verify.model_cases import TINY
from npformer.runtime.workers import Workers
from npformer.train.ranks import fingerprint
from npformer.train.tasks import SequenceTask
from npformer.train.state import init_state
from npformer.train.trainer import train


@pytest.fixture(scope="module")
def comm():
    from npformer.runtime.distributed.mpi import MPICommunicator
    c = MPICommunicator(timeout=60, wait_timeout=120)
    if c.size < 2:
        pytest.fail("run these tests with mpiexec -n 2 or more")
    yield c
    c.finish()


def test_place_and_peers(comm):
    assert 0 <= comm.rank < comm.size and comm.local_size == comm.size  # one machine
    assert sorted(comm.watchdog.peers) == [r for r in range(comm.size) if r != comm.rank]
    assert f"rank {comm.rank} pid" in comm.describe()


def test_allreduce_sums_the_buckets_in_place(comm):
    rng = np.random.default_rng(comm.rank)
    grads = {"W": rng.standard_normal((30, 20)).astype(np.float32), "b": rng.standard_normal(7).astype(np.float32)}
    b = Buckets(grads, bucket_bytes=1024)
    assert len(b.buffers) == 2
    views = b.fill([grads])
    comm.allreduce_sum(b.buffers)
    everyone = comm.allgather(grads)
    for k in grads:
        expected = everyone[0][k].copy()
        for other in everyone[1:]:
            expected += other[k]
        np.testing.assert_allclose(views[k], expected, rtol=1e-6)
    assert comm.sum_floats([comm.rank, 1.5]) == [sum(range(comm.size)), 1.5 * comm.size]
    assert comm.any(comm.rank == comm.size - 1) and not comm.any(False)
    assert comm.bcast(f"from {comm.rank}") == "from 0"
    comm.barrier()


def test_start_up_check_refuses_a_rank_that_differs(comm):
    comm.require_same({"seed": 0})
    with pytest.raises(RanksDisagree, match=r"rank 1 has seed = 1, rank 0 has 0"):
        comm.require_same({"seed": int(comm.rank == 1)})


def test_trained_parameters_are_identical_on_every_rank_bit_for_bit(comm):
    cfg = TINY.replace(p_drop=0.1)
    batches = SequenceTask("reverse", TINY.vocab_size, 2, 8).batches(0, batch_size=16)
    state = init_state(cfg, seed=0, comm=comm)
    comm.require_same(fingerprint(state, cfg))
    train(state, cfg, batches, steps=6, schedule=Schedule("noam", 4, d_model=cfg.d_model), clip=1.0,
          log_every=1, progress=False)
    digests = comm.allgather({k: v.tobytes() for k, v in state.params.items()})
    assert all(d == digests[0] for d in digests)
    if comm.size == 2 and workers_module.blas_threads_controllable():
        # 2 ranks x 1 thread = 1 process x 2 threads, dropout included: the same floats
        alone = init_state(cfg, seed=0, workers=Workers(2))
        train(alone, cfg, batches, steps=6, schedule=Schedule("noam", 4, d_model=cfg.d_model), clip=1.0,
              log_every=1, progress=False)
        assert [r["loss"] for r in alone.history] == [r["loss"] for r in state.history]
        for k in state.params:
            assert np.array_equal(alone.params[k], state.params[k]), k
        alone.workers.close()


@pytest.mark.parametrize("dtype, tol", [("float64", 1e-10), ("float32", 1e-5)])
def test_cupysim_ranks_train_as_numpy_ranks(comm, dtype, tol):
    """Five steps of ``small`` without dropout on two ranks: cupysim (the device path:
    flat gradient buffers, the fused Adam) gives NumPy's losses and parameters."""
    from npformer.backend import get_backend
    from npformer.model.config import preset
    from npformer.train.trainer import train_step
    cfg = preset("small", vocab_size=24, p_drop=0.0, max_len=32)
    batch = SequenceTask("reverse", cfg.vocab_size, 4, 12).batch(seed=0, step=1, batch_size=16)
    runs = {}
    for backend in ("numpy", "cupysim"):
        state = init_state(cfg, seed=0, backend=backend, dtype=dtype, comm=comm)
        losses = [train_step(state, cfg, batch, 1e-3)[0] for _ in range(5)]
        runs[backend] = losses, {k: get_backend(backend).to_host(v) for k, v in state.params.items()}
    (losses_np, params_np), (losses_sim, params_sim) = runs["numpy"], runs["cupysim"]
    assert losses_np[-1] < losses_np[0] - 0.3  # it learns
    np.testing.assert_allclose(losses_sim, losses_np, rtol=tol, atol=tol)
    for k in params_np:
        np.testing.assert_allclose(params_sim[k], params_np[k], rtol=tol, atol=tol, err_msg=k)
