"""Ranks and threads with one split rule: the whole batch's gradient on every
rank, identical parameters after training, the start-up check. Threads of this
process stand in for the ranks (the same runs over MPI: tests/runtime/distributed)."""
import threading

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from npformer.train.schedule import Schedule
from npformer.runtime import workers as workers_module
from npformer.runtime.distributed.communicator import AgreedError, Communicator, RanksDisagree
from npformer.verify.model_cases import TINY
from npformer.model.params import init_params
from npformer.model.transformer import loss_and_grads
from npformer.train import parallel
from npformer.train.parallel import parallel_loss_and_grads, shard_rows, worker_generators
from npformer.runtime.workers import Workers
from npformer.train.ranks import require_parameters_agree, fingerprint, workers_per_rank
from npformer.train.tasks import SequenceTask
from npformer.train.state import init_state
from npformer.train.trainer import train


class ThreadRanks:
    """What P ranks share when they are threads of one process: each collective
    waits for all P, and sums in rank order, as MPI does for two ranks."""

    def __init__(self, size: int):
        self.size = size
        self.barrier = threading.Barrier(size, timeout=60)
        self.slots = [None] * size

    def exchange(self, rank: int, value) -> list:
        self.slots[rank] = value
        self.barrier.wait()
        values = list(self.slots)
        self.barrier.wait()  # nobody overwrites a slot before everyone has read it
        return values

    def run(self, fn) -> list:
        """``[fn(rank) for rank in range(size)]``, each rank on its own thread."""
        results, errors = [None] * self.size, []

        def one(rank):
            try:
                results[rank] = fn(rank)
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)
                self.barrier.abort()
        threads = [threading.Thread(target=one, args=(r,)) for r in range(self.size)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        return results


class ThreadComm(Communicator):
    """A Communicator over ``ThreadRanks``: NumPy buffers summed in rank order."""

    name = "threads"

    def __init__(self, ranks: ThreadRanks, rank: int):
        self.ranks, self.rank, self.size, self.local_size = ranks, rank, ranks.size, ranks.size

    def allreduce_sum(self, buffers, what=""):
        everyone = self.ranks.exchange(self.rank, [b.copy() for b in buffers])
        for i, b in enumerate(buffers):
            total = everyone[0][i].copy()
            for other in everyone[1:]:
                total += other[i]
            b[...] = total

    def sum_floats(self, values, what=""):
        buffer = np.array(values, dtype=np.float64)
        self.allreduce_sum([buffer])
        return buffer.tolist()

    def allgather(self, obj, what=""):
        return self.ranks.exchange(self.rank, obj)

    def bcast(self, obj, root=0, what=""):
        return self.ranks.exchange(self.rank, obj)[root]

    def barrier(self, what=""):
        self.ranks.exchange(self.rank, None)


@settings(max_examples=30, deadline=None)
@given(counts=st.lists(st.integers(0, 9), min_size=1, max_size=12).filter(lambda c: sum(c) > 0),
       ranks=st.integers(1, 4), workers=st.integers(1, 3))
def test_each_shard_goes_to_one_rank_in_order(counts, ranks, workers):
    """Rank r computes shards rW .. rW + W - 1 of the threads' rule for P x W shards,
    each seeded with N_s / N: seen through the calls of each rank's loss_and_grads."""
    if workers > 1 and not workers_module.blas_threads_controllable():
        return
    tgt_out = np.zeros((len(counts), 10), dtype=np.int64)
    for b, c in enumerate(counts):
        tgt_out[b, :c] = 1
    shards = shard_rows(tgt_out, 0, ranks * workers)
    N = sum(n for _, n in shards)
    seen = []

    def recording_loss_and_grads(params, cfg, src, tgt_in, tgt_out_s, rng, dloss):
        seen.append((rank, int((tgt_out_s != 0).sum()), len(src), dloss))
        return np.zeros(()), {"w": np.zeros(1)}, 0
    real, parallel.loss_and_grads = parallel.loss_and_grads, recording_loss_and_grads
    pool = Workers(workers)
    try:
        for rank in range(ranks):
            comm = PassThrough(rank, ranks) if ranks > 1 else None
            parallel_loss_and_grads({"w": np.zeros(1)}, TINY, tgt_out, tgt_out, tgt_out, None, pool, comm)
    finally:
        parallel.loss_and_grads = real
        pool.close()
    expected = [(i // workers, n, s.stop - s.start, n / N) for i, (s, n) in enumerate(shards)]
    assert sorted(seen) == sorted(expected)


class PassThrough(Communicator):
    """Rank ``rank`` of ``size`` whose collectives change nothing (for the split alone)."""

    buckets = None

    def __init__(self, rank, size):
        self.rank, self.size = rank, size

    def allreduce_sum(self, buffers, what=""):
        pass

    def sum_floats(self, values, what=""):
        return list(values)


def test_two_ranks_give_the_whole_batch_gradient_on_both_ranks(padded_batch):
    params = init_params(TINY, seed=1, dtype="float64")
    batch = padded_batch(B=6)
    loss, grads, n_tokens = loss_and_grads(params, TINY, *batch)
    ranks = ThreadRanks(2)
    results = ranks.run(lambda r: parallel_loss_and_grads(params, TINY, *batch, None, Workers(1),
                                                          ThreadComm(ranks, r)))
    for rloss, rgrads, rn in results:
        assert rn == n_tokens and rloss == pytest.approx(loss, rel=1e-13)
        for k in grads:
            np.testing.assert_allclose(rgrads[k], grads[k], rtol=1e-11, atol=1e-14, err_msg=k)
    for k in grads:
        assert np.array_equal(results[0][1][k], results[1][1][k]), k


def test_a_rank_without_sentences_adds_zeros(padded_batch):
    params = init_params(TINY, seed=1, dtype="float64")
    batch = padded_batch(B=2)
    loss, grads, _ = loss_and_grads(params, TINY, *batch)
    ranks = ThreadRanks(3)  # 3 ranks, 2 sentences: rank 2 computes nothing
    results = ranks.run(lambda r: parallel_loss_and_grads(params, TINY, *batch, None, Workers(1),
                                                          ThreadComm(ranks, r)))
    assert results[2][0] == pytest.approx(loss, rel=1e-13)
    for k in grads:
        np.testing.assert_allclose(results[2][1][k], grads[k], rtol=1e-11, atol=1e-14, err_msg=k)


@pytest.mark.skipif(not workers_module.blas_threads_controllable(), reason="threadpoolctl is not installed")
def test_two_ranks_of_one_thread_are_one_process_of_two_threads_bit_for_bit(padded_batch):
    """Dropout on: the same generator per shard, the same masks, the same two-term sums."""
    from npformer.backend import get_backend
    cfg = TINY.replace(p_drop=0.3)
    params = init_params(cfg, seed=1, dtype="float32")
    batch = padded_batch(B=6)
    be = get_backend("numpy")
    threads = Workers(2)
    try:
        loss, grads, n = parallel_loss_and_grads(params, cfg, *batch, worker_generators(be, 7, 2), threads)
    finally:
        threads.close()
    ranks = ThreadRanks(2)
    results = ranks.run(lambda r: parallel_loss_and_grads(params, cfg, *batch, worker_generators(be, 7, 1, first=r),
                                                          Workers(1), ThreadComm(ranks, r)))
    for rloss, rgrads, rn in results:
        assert rn == n and rloss == loss
        for k in grads:
            assert np.array_equal(rgrads[k], grads[k]), k


def train_on_ranks(size, steps=4, minutes=None, out_dir=None, p_drop=0.2):
    """Train TINY on the reverse task on ``size`` thread ranks; their states."""
    cfg = TINY.replace(p_drop=p_drop)
    batches = SequenceTask("reverse", TINY.vocab_size, 2, 6).batches(0, batch_size=8)
    ranks = ThreadRanks(size)

    def one(rank):
        state = init_state(cfg, seed=3, comm=ThreadComm(ranks, rank))
        return train(state, cfg, batches, steps=steps, minutes=minutes,
                     schedule=Schedule("noam", 5, d_model=cfg.d_model), clip=1.0, log_every=1,
                     progress=False, out_dir=out_dir, save_every=2)
    return ranks.run(one)


def test_ranks_keep_identical_parameters_and_rank_0_alone_saves(tmp_path):
    states = train_on_ranks(2, out_dir=str(tmp_path))
    assert [s.step for s in states] == [4, 4]
    for k in states[0].params:
        assert np.array_equal(states[0].params[k], states[1].params[k]), k
        assert np.array_equal(states[0].optimizer.v[k], states[1].optimizer.v[k]), k
    assert [r["loss"] for r in states[0].history] == [r["loss"] for r in states[1].history]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.npz"]


def test_without_dropout_two_ranks_train_like_one_process():
    two, one = train_on_ranks(2, p_drop=0.0)[0], train_on_ranks(1, p_drop=0.0)[0]
    np.testing.assert_allclose([r["loss"] for r in two.history], [r["loss"] for r in one.history], rtol=1e-5)


def test_ranks_stop_together_on_a_time_budget():
    states = train_on_ranks(2, steps=None, minutes=0.002)
    assert states[0].step == states[1].step >= 1


def test_differing_parameters_are_found():
    ranks = ThreadRanks(2)

    def one(rank):
        state = init_state(TINY, seed=rank, comm=ThreadComm(ranks, rank))
        with pytest.raises(RanksDisagree, match=r"rank\(s\) \[1\] differ"):
            require_parameters_agree(state)
        return True
    assert ranks.run(one) == [True, True]


def test_start_up_check_names_the_rank_and_what_differs():
    ranks = ThreadRanks(3)

    def one(rank):
        state = init_state(TINY, seed=0, comm=ThreadComm(ranks, rank))
        mine = fingerprint(state, TINY, settings={"seed": 0, "task": "reverse" if rank < 2 else "copy"},
                           vocabulary="v")
        with pytest.raises(RanksDisagree, match="rank 2 has settings.task = 'copy', rank 0 has 'reverse'"):
            state.comm.require_same(mine)
        state.comm.require_same(fingerprint(state, TINY, settings={"seed": 0}))  # alike: passes
        return True
    assert ranks.run(one) == [True] * 3


def test_start_up_errors_stop_every_rank_with_the_ranks_errors():
    ranks = ThreadRanks(2)

    def one(rank):
        comm = ThreadComm(ranks, rank)
        with pytest.raises(AgreedError, match=r"^rank 1: --data: no such file$"):
            comm.require_same({"a": 1} if rank == 0 else ValueError("--data: no such file"))
        with pytest.raises(AgreedError, match=r"^--data: no such file$"):  # everyone's: said once
            comm.require_same(ValueError("--data: no such file"))
        return True
    assert ranks.run(one) == [True, True]


def test_a_single_process_start_up_check_reraises_its_error():
    from npformer.runtime.distributed import SingleProcess
    with pytest.raises(KeyError):
        SingleProcess().require_same(KeyError("x"))
    SingleProcess().require_same({"anything": 1})


def test_workers_per_rank_honours_an_explicit_count_and_shares_the_cores():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    ranks = ThreadRanks(2)  # two ranks on this machine, not bound to cores by a launcher
    share = max(1, workers_module.available_cores() // 2)
    with threadpoolctl.threadpool_limits(limits=None, user_api="blas"):  # restored afterwards
        assert workers_per_rank(1, "numpy", ThreadComm(ranks, 0)).n == 1
        w = workers_per_rank(None, "numpy", ThreadComm(ranks, 0))
        assert 1 <= w.n <= share
        blas = [p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]
        assert blas and all(n <= share for n in blas)  # each rank's BLAS keeps to its share too


@pytest.mark.parametrize("cores, cpu_count, local_size, share", [
    (2, 4, 2, 2),  # bound by the launcher to 2 of the machine's 4 cores: all of them
    (4, 4, 2, 2),  # not bound: the machine's cores divided between its 2 ranks
    (3, 3, 2, 1),  # a whole number of cores each
    (1, 1, 2, 1),  # at least one
])
def test_workers_per_rank_takes_this_ranks_share_of_the_cores(monkeypatch, cores, cpu_count, local_size, share):
    from npformer.train import ranks
    limits = []
    monkeypatch.setattr(ranks, "available_cores", lambda: cores)
    monkeypatch.setattr(ranks.os, "cpu_count", lambda: cpu_count)
    monkeypatch.setattr(ranks, "limit_blas_threads", limits.append)
    monkeypatch.setattr(ranks, "default_workers", lambda name: 64)

    class Comm:
        size = 2
    Comm.local_size = local_size
    w = workers_per_rank(None, "numpy", Comm())
    assert limits == [share] and w.n == share and isinstance(w.n, int)
    w.close() if hasattr(w, "close") else None


def test_a_single_process_leaves_the_blas_threads_alone(monkeypatch):
    from npformer.runtime.distributed.communicator import SingleProcess
    from npformer.train import ranks
    limits = []
    monkeypatch.setattr(ranks, "limit_blas_threads", limits.append)
    assert workers_per_rank(1, "numpy", SingleProcess()).n == 1
    assert limits == []
