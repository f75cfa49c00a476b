"""Data parallelism over CPU threads: the same gradients as the whole batch, the
same Adam step, reproducible runs, and BLAS pinned to one thread per worker."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from npformer.train.schedule import Schedule
from npformer.backend import get_backend
from npformer.verify.model_cases import TINY
from npformer.model.params import init_params
from npformer.model.transformer import loss_and_grads
from npformer.train.optim import Adam, clip_grad_norm, global_norm
from npformer.train.parallel import parallel_loss_and_grads, shard_rows, worker_generators
from npformer.train.tasks import SequenceTask
from npformer.train.state import init_state, load_state, save_state
from npformer.train.trainer import evaluate_loss, train
from npformer.runtime.workers import Workers, blas_threads_controllable

BE = get_backend("numpy")
@pytest.fixture(scope="module")
def workers():
    if not blas_threads_controllable():
        pytest.skip("threadpoolctl is not installed")
    w = {n: Workers(n) for n in (2, 3)}
    yield w
    for x in w.values():
        x.close()


@settings(max_examples=60, deadline=None)
@given(counts=st.lists(st.integers(0, 9), min_size=1, max_size=12).filter(lambda c: sum(c) > 0),
       n=st.integers(1, 5))
def test_shards_cover_the_batch_in_order_with_balanced_nonempty_parts(counts, n):
    tgt_out = np.zeros((len(counts), 10), dtype=np.int64)
    for b, c in enumerate(counts):
        tgt_out[b, :c] = 1
    shards = shard_rows(tgt_out, 0, n)
    assert 1 <= len(shards) <= n
    rows = [r for s, _ in shards for r in range(len(counts))[s]]
    tokens = [sum(counts[s]) for s, _ in shards]
    assert tokens == [n_s for _, n_s in shards]
    # Every row with targets is in exactly one shard, in order; no shard is empty.
    assert [r for r in rows if counts[r]] == [r for r in range(len(counts)) if counts[r]]
    assert rows == sorted(set(rows)) and min(tokens) > 0
    # Balanced: no shard exceeds the ideal share by more than one sentence.
    assert max(tokens) <= sum(counts) / len(shards) + max(counts)


@pytest.mark.parametrize("n", [2, 3])
def test_sharded_gradients_equal_the_whole_batch_gradients(workers, n, padded_batch):
    params = init_params(TINY, seed=1, dtype="float64")
    batch = padded_batch()
    loss, grads, n_tokens = loss_and_grads(params, TINY, *batch)  # no rng: no dropout
    ploss, pgrads, pn = parallel_loss_and_grads(params, TINY, *batch, workers=workers[n])
    assert pn == n_tokens and len(shard_rows(batch[2], 0, n)) == n
    assert ploss == pytest.approx(loss, rel=1e-13)
    assert set(pgrads) == set(grads)
    for k in grads:
        np.testing.assert_allclose(pgrads[k], grads[k], rtol=1e-11, atol=1e-14, err_msg=k)


def test_one_worker_is_loss_and_grads_itself(padded_batch):
    params = init_params(TINY, seed=1, dtype="float32")
    batch = padded_batch()
    a = loss_and_grads(params, TINY, *batch, BE.rng(5))
    b = parallel_loss_and_grads(params, TINY, *batch, [BE.rng(5)], Workers(1))
    assert a[0] == b[0] and a[2] == b[2]
    assert all(np.array_equal(a[1][k], b[1][k]) for k in a[1])


def test_held_out_loss_is_the_same_with_workers(workers, padded_batch):
    from npformer.data.batching import make_batches
    params = init_params(TINY, seed=2, dtype="float64")
    pairs = [padded_batch(B=1, seed=i) for i in range(9)]
    srcs = [p[0][0][p[0][0] > 0].tolist() or [1] for p in pairs]
    tgts = [p[2][0][p[2][0] > 0].tolist() or [1] for p in pairs]
    batches = make_batches(srcs, tgts, max_tokens=16)
    assert len(batches) > 2
    assert evaluate_loss(params, TINY, batches, workers[3]) == pytest.approx(
        evaluate_loss(params, TINY, batches), rel=1e-12)


def test_shards_draw_different_dropout_masks_reproducibly(workers, padded_batch):
    params = init_params(TINY.replace(p_drop=0.5), seed=1, dtype="float32")
    cfg = TINY.replace(p_drop=0.5)
    batch = padded_batch()
    a = parallel_loss_and_grads(params, cfg, *batch, worker_generators(BE, 3, 2), workers[2])
    b = parallel_loss_and_grads(params, cfg, *batch, worker_generators(BE, 3, 2), workers[2])
    c = parallel_loss_and_grads(params, cfg, *batch, worker_generators(BE, 4, 2), workers[2])
    assert a[0] == b[0] and all(np.array_equal(a[1][k], b[1][k]) for k in a[1])
    assert a[0] != c[0]


def test_adam_norm_and_clipping_are_the_same_with_workers(workers):
    rng = np.random.default_rng(0)
    params = init_params(TINY, seed=0, dtype="float32")
    grads = {k: rng.standard_normal(p.shape).astype(np.float32) for k, p in params.items()}
    serial, threaded = ({k: p.copy() for k, p in params.items()} for _ in range(2))
    opt_s, opt_t = Adam(serial), Adam(threaded)
    for _ in range(3):
        opt_s.update(serial, grads, 1e-3)
        opt_t.update(threaded, grads, 1e-3, workers[3])
    assert all(np.array_equal(serial[k], threaded[k]) for k in params)
    assert global_norm(grads, workers[2]) == pytest.approx(global_norm(grads), rel=1e-12)
    g1, g2 = ({k: g.copy() for k, g in grads.items()} for _ in range(2))
    assert clip_grad_norm(g1, 1.0) == pytest.approx(clip_grad_norm(g2, 1.0, workers[2]), rel=1e-12)
    assert all(np.allclose(g1[k], g2[k], rtol=1e-6) for k in grads)
    assert global_norm(g2, workers[3]) == pytest.approx(1.0, rel=1e-5)


TASK = SequenceTask("reverse", vocab_size=12, min_len=2, max_len=6)
CFG = TINY.replace(vocab_size=12, max_len=16)


def run(workers, steps, state=None, seed=0):
    state = state or init_state(CFG, seed=seed, workers=workers)
    train(state, CFG, TASK.batches(seed, batch_size=8), steps=steps,
          schedule=Schedule("noam", 5, d_model=CFG.d_model), log_every=1,
          progress=False)
    return state


def losses(state):
    return [r["loss"] for r in state.history if r["kind"] == "train"]


@pytest.mark.skipif(not blas_threads_controllable(), reason="threadpoolctl is not installed")
def test_training_with_workers_learns_is_reproducible_and_resumes_exactly(tmp_path):
    a, b = run(2, 40), run(2, 40)
    assert losses(a) == losses(b)
    assert np.mean(losses(a)[-5:]) < np.mean(losses(a)[:5])
    half = run(2, 20)
    save_state(tmp_path / "half.npz", half, CFG)
    resumed, _ = load_state(tmp_path / "half.npz", workers=2)
    run(None, 40, state=resumed)
    assert losses(resumed) == losses(a)
    assert all(np.array_equal(resumed.params[k], a.params[k]) for k in a.params)


def test_worker_generators_seed_shard_0_with_the_seed_itself_and_others_by_their_index():
    """One worker draws exactly as backend.rng(seed); shard i from SeedSequence((seed, i)), so a
    rank that builds only shards first .. first + n - 1 gets the very generators of those shards."""
    def draws(gens):
        return [g.random((4,), dtype="float64") for g in gens]
    every = draws(worker_generators(BE, 7, 3))
    np.testing.assert_array_equal(every[0], BE.rng(7).random((4,), dtype="float64"))
    for i in (1, 2):
        seed_i = int(np.random.SeedSequence([7, i]).generate_state(1)[0])
        np.testing.assert_array_equal(every[i], BE.rng(seed_i).random((4,), dtype="float64"))
    np.testing.assert_array_equal(draws(worker_generators(BE, 7, 2, first=1)), every[1:])
    assert not np.array_equal(every[0], every[1]) and not np.array_equal(every[1], every[2])


def test_shard_rows_balance_the_targets_and_drop_shards_of_padding_only():
    """Cuts fall where the running target count reaches k/n of the total; a shard whose rows hold
    no target is not returned (its loss would be a mean over nothing)."""
    def rows(counts, n):
        tgt_out = np.array([[5] * c + [0] * (10 - c) for c in counts])
        return [(s.start, s.stop, n_s) for s, n_s in shard_rows(tgt_out, 0, n)]
    assert rows([1, 1, 1, 1, 4], 2) == [(0, 4, 4), (4, 5, 4)]
    assert rows([2, 2, 2, 2], 2) == [(0, 2, 4), (2, 4, 4)]
    assert rows([3, 3, 0, 0], 3) == [(0, 1, 3), (1, 2, 3)]  # rows 2-3 are padding only: no third shard
    assert rows([0, 0, 3, 3], 2) == [(0, 3, 3), (3, 4, 3)]  # leading padding rows join the first shard
    assert rows([4, 1], 5) == [(0, 1, 4), (1, 2, 1)]  # at most one shard per sentence
