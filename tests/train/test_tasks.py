"""Synthetic copy / reverse tasks: targets, padding, determinism, held-out scoring."""
import numpy as np
import pytest

from npformer.data.bpe import BOS_ID, EOS_ID, PAD_ID
from npformer.model.config import preset
from npformer.model.params import init_params
from npformer.train.tasks import SequenceTask, evaluate_exact_match


def rows(batch):
    """(x, tgt_in, tgt_out) of every row as lists, padding removed."""
    for s, ti, to in zip(batch.src, batch.tgt_in, batch.tgt_out):
        yield s[s != PAD_ID].tolist(), ti[ti != PAD_ID].tolist(), to[to != PAD_ID].tolist()


@pytest.mark.parametrize("name,target", [("reverse", lambda x: x[::-1]), ("copy", lambda x: x)])
def test_batches_hold_the_right_targets(name, target):
    task = SequenceTask(name, vocab_size=20, min_len=3, max_len=9)
    batch = task.batch(seed=5, step=1, batch_size=32)
    assert batch.src.shape[0] == 32
    for a in (batch.src, batch.tgt_in, batch.tgt_out):
        assert a.dtype == np.int64
    lengths = set()
    for x, tgt_in, tgt_out in rows(batch):
        lengths.add(len(x))
        assert 3 <= len(x) <= 9
        assert all(4 <= t < 20 for t in x)
        assert tgt_in == [BOS_ID] + target(x)
        assert tgt_out == target(x) + [EOS_ID]
    assert len(lengths) > 1  # variable lengths, so padding really happens
    assert (batch.src == PAD_ID).any()
    assert batch.n_tokens == int((batch.tgt_out != PAD_ID).sum())


def test_same_seed_and_step_give_the_same_batch():
    task = SequenceTask("reverse", vocab_size=16)
    a, b = task.batch(0, 7, batch_size=8), task.batch(0, 7, batch_size=8)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    c, d = task.batch(0, 8, batch_size=8), task.batch(1, 7, batch_size=8)
    assert not np.array_equal(a.src, c.src) or a.src.shape != c.src.shape
    assert not np.array_equal(a.src, d.src) or a.src.shape != d.src.shape
    assert task.batches(0, batch_size=8)(7).src.tolist() == a.src.tolist()


def test_max_tokens_bounds_the_padded_size():
    task = SequenceTask("copy", vocab_size=16, min_len=2, max_len=10)
    for step in range(1, 20):
        batch = task.batch(3, step, max_tokens=60)
        B, T = batch.tgt_in.shape
        assert B * T <= 60 and B >= 1
    with pytest.raises(ValueError, match="exactly one"):
        task.batch(3, 1)


def test_heldout_is_deterministic_and_not_the_training_stream():
    task = SequenceTask("reverse", vocab_size=30, min_len=8, max_len=12)
    xs, ys = task.heldout(seed=0, n=50)
    assert (xs, ys) == task.heldout(seed=0, n=50)
    assert ys == [x[::-1] for x in xs]
    train = {tuple(x) for step in range(1, 11) for x, _, _ in rows(task.batch(0, step, batch_size=64))}
    assert not train & {tuple(x) for x in xs}  # 30-token alphabet, length >= 8: no chance overlap


def test_invalid_tasks_are_refused():
    with pytest.raises(ValueError, match="unknown task"):
        SequenceTask("sort", vocab_size=20)
    with pytest.raises(ValueError, match="vocab_size"):
        SequenceTask("copy", vocab_size=4)
    with pytest.raises(ValueError, match="min_len"):
        SequenceTask("copy", vocab_size=20, min_len=5, max_len=3)


def test_exact_match_scores_whole_sequences():
    cfg = preset("tiny", vocab_size=12, d_model=16, d_ff=32, n_layers=1, h=2)
    params = init_params(cfg, seed=0)
    xs = [[4, 5, 6], [7, 8], [9, 10, 11, 4]]
    ys = [x[::-1] for x in xs]
    seen = {}

    def oracle(params, cfg, src, max_len=None):
        seen["max_len"], seen["shape"] = max_len, src.shape
        return [row[row != cfg.pad_id].tolist()[::-1] for row in src]

    assert evaluate_exact_match(params, cfg, (xs, ys), oracle) == 1.0
    assert seen["shape"] == (3, 4) and seen["max_len"] >= 4 + 1  # room for EOS after the longest

    def one_wrong(params, cfg, src, max_len=None):
        # the right tokens for [7, 8], but no EOS where it belongs
        return [h + [5] if h == [8, 7] else h for h in oracle(params, cfg, src, max_len)]

    assert evaluate_exact_match(params, cfg, (xs, ys), one_wrong, batch_size=2) == pytest.approx(2 / 3)
