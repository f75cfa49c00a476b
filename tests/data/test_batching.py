"""Tests for npformer.data.batching: token-budget batches, shifting, padding."""
import logging

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from npformer.data.batching import Batch, filter_by_length, make_batches, pad_sequences
from npformer.data.bpe import BOS_ID, EOS_ID, PAD_ID


def _pairs(src_lens, tgt_lens):
    """Distinct non-zero ids so every row can be traced back to its pair."""
    src = [[10 + (7 * i + j) % 50 for j in range(n)] for i, n in enumerate(src_lens)]
    tgt = [[10 + (11 * i + j) % 50 for j in range(n)] for i, n in enumerate(tgt_lens)]
    return src, tgt


def _check_batches(batches, src, tgt, max_tokens, expected_indices):
    seen = []
    for b in batches:
        assert isinstance(b, Batch)
        B = len(b.index)
        for arr in (b.src, b.tgt_in, b.tgt_out, b.index):
            assert arr.dtype == np.int64
        assert b.src.shape[0] == b.tgt_in.shape[0] == b.tgt_out.shape[0] == B >= 1
        assert b.tgt_in.shape == b.tgt_out.shape
        # token budget: padded size B * max(S, T), unless a lone pair
        assert B == 1 or B * max(b.src.shape[1], b.tgt_in.shape[1]) <= max_tokens
        # arrays are exactly as wide as the longest row
        assert b.src.shape[1] == max(len(src[i]) for i in b.index)
        assert b.tgt_in.shape[1] == max(len(tgt[i]) for i in b.index) + 1
        n_tokens = 0
        for row, i in enumerate(b.index):
            s, t = src[i], tgt[i]
            np.testing.assert_array_equal(b.src[row, :len(s)], s)
            assert (b.src[row, len(s):] == PAD_ID).all()
            T = len(t) + 1
            np.testing.assert_array_equal(b.tgt_in[row, :T], [BOS_ID] + t)
            np.testing.assert_array_equal(b.tgt_out[row, :T], t + [EOS_ID])
            assert (b.tgt_in[row, T:] == PAD_ID).all()
            assert (b.tgt_out[row, T:] == PAD_ID).all()
            # teacher forcing: the input is the output shifted right by one
            np.testing.assert_array_equal(b.tgt_in[row, 1:T], b.tgt_out[row, :T - 1])
            n_tokens += T
        assert b.n_tokens == n_tokens == int((b.tgt_out != PAD_ID).sum())
        seen.extend(int(i) for i in b.index)
    assert sorted(seen) == sorted(expected_indices)  # each pair exactly once


def test_pad_sequences():
    out = pad_sequences([[1, 2, 3], [4], []], pad_id=0)
    np.testing.assert_array_equal(out, [[1, 2, 3], [4, 0, 0], [0, 0, 0]])
    assert out.dtype == np.int64
    assert pad_sequences([[5]], pad_id=9, length=3).tolist() == [[5, 9, 9]]
    assert pad_sequences([]).shape == (0, 0)
    with pytest.raises(ValueError):
        pad_sequences([[1, 2, 3]], length=2)


def test_small_example():
    src = [[5, 6, 7], [8], [9, 10]]
    tgt = [[11], [12, 13], [14, 15, 16, 17]]
    batches = make_batches(src, tgt, max_tokens=6)
    # lengths max(S, T): 3, 3, 5 -> [0, 1] (2 x 3 = 6) and [2] (1 x 5)
    assert [b.index.tolist() for b in batches] == [[1, 0], [2]]
    b = batches[0]
    assert b.src.tolist() == [[8, 0, 0], [5, 6, 7]]
    assert b.tgt_in.tolist() == [[BOS_ID, 12, 13], [BOS_ID, 11, 0]]
    assert b.tgt_out.tolist() == [[12, 13, EOS_ID], [11, EOS_ID, 0]]
    assert b.n_tokens == 5
    _check_batches(batches, src, tgt, 6, range(3))


def test_long_pair_gets_its_own_batch():
    src, tgt = _pairs([50, 2, 2], [3, 2, 2])
    batches = make_batches(src, tgt, max_tokens=10)
    sizes = {len(b.index): b.index.tolist() for b in batches}
    assert sizes[1] == [0]
    _check_batches(batches, src, tgt, 10, range(3))


def test_similar_lengths_are_grouped():
    lens = [1, 30, 2, 29, 3, 28, 1, 30]
    src, tgt = _pairs(lens, lens)
    batches = make_batches(src, tgt, max_tokens=64)
    for b in batches:
        got = [lens[i] for i in b.index]
        assert max(got) - min(got) <= 2


def test_shuffle_is_deterministic_and_only_reorders():
    rng = np.random.default_rng(0)
    src, tgt = _pairs(rng.integers(1, 40, 300).tolist(), rng.integers(1, 40, 300).tolist())
    plain = make_batches(src, tgt, max_tokens=200)
    a = make_batches(src, tgt, max_tokens=200, shuffle_seed=1)
    b = make_batches(src, tgt, max_tokens=200, shuffle_seed=1)
    c = make_batches(src, tgt, max_tokens=200, shuffle_seed=2)
    key = [tuple(x.index.tolist()) for x in a]
    assert key == [tuple(x.index.tolist()) for x in b]
    assert key != [tuple(x.index.tolist()) for x in c]
    assert sorted(key) == sorted(tuple(x.index.tolist()) for x in plain)
    # without a seed: shortest batches first
    widths = [max(x.src.shape[1], x.tgt_in.shape[1]) for x in plain]
    assert widths == sorted(widths)


def test_max_len_filters_and_keeps_original_indices(caplog):
    src, tgt = _pairs([3, 12, 4, 5], [3, 4, 10, 4])
    with caplog.at_level(logging.INFO, logger="npformer.data.batching"):
        batches = make_batches(src, tgt, max_tokens=100, max_len=10)
    # pair 1: src 12 > 10; pair 2: tgt 10 + 1 > 10; pair 3: 5 and 4 + 1 fit
    _check_batches(batches, src, tgt, 100, [0, 3])
    assert "dropped 2 of 4" in caplog.text
    kept_src, kept_tgt, n_dropped = filter_by_length(src, tgt, max_len=10)
    assert n_dropped == 2
    assert kept_src == [src[0], src[3]] and kept_tgt == [tgt[0], tgt[3]]


def test_bad_arguments():
    with pytest.raises(ValueError):
        make_batches([[1]], [[1], [2]], max_tokens=10)
    with pytest.raises(ValueError):
        make_batches([[1]], [[1]], max_tokens=0)
    assert make_batches([], [], max_tokens=10) == []


def test_accepts_numpy_rows():
    src = [np.array([4, 5]), np.array([6])]
    tgt = [np.array([7]), np.array([8, 9])]
    batches = make_batches(src, tgt, max_tokens=100)
    _check_batches(batches, [s.tolist() for s in src], [t.tolist() for t in tgt],
                   100, range(2))


@settings(max_examples=60)
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(0, 40)), max_size=120),
       st.integers(1, 300), st.one_of(st.none(), st.integers(0, 1000)),
       st.one_of(st.none(), st.integers(1, 45)))
def test_batching_properties(lens, max_tokens, seed, max_len):
    src, tgt = _pairs([s for s, _ in lens], [t for _, t in lens])
    batches = make_batches(src, tgt, max_tokens, shuffle_seed=seed, max_len=max_len)
    expected = [i for i, (s, t) in enumerate(lens)
                if max_len is None or (s <= max_len and t + 1 <= max_len)]
    _check_batches(batches, src, tgt, max_tokens, expected)
    again = make_batches(src, tgt, max_tokens, shuffle_seed=seed, max_len=max_len)
    assert [b.index.tolist() for b in again] == [b.index.tolist() for b in batches]
