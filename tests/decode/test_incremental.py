"""The key/value-cached decoder (npformer/decode/incremental.py) against the full model."""
import numpy as np
import pytest

from npformer.decode import incremental
from npformer.decode.incremental import (decode_step, encode, init_decoder_state, reorder,
                                         teacher_forced_logits)
from npformer.model.transformer import transformer_forward
from npformer import ops

TOL = 1e-10  # float64: the cache changes only the order of a few sums


def random_prefix(be, cfg, B, T, seed=0):
    """(B, T) decoder input: BOS then random non-special tokens (no padding)."""
    tgt_in = np.random.default_rng(seed).integers(3, cfg.vocab_size, (B, T))
    tgt_in[:, 0] = cfg.bos_id
    return be.asarray(tgt_in)


def test_cached_steps_equal_full_forward(be, tiny):
    cfg, params, src = tiny
    tgt_in = random_prefix(be, cfg, src.shape[0], 9)
    cached = teacher_forced_logits(params, cfg, src, tgt_in)  # (B, T, V)
    full, _ = transformer_forward(params, cfg, src, tgt_in)  # (B, T, V)
    assert cached.shape == full.shape == (src.shape[0], 9, cfg.vocab_size)
    assert np.abs(be.to_host(cached) - be.to_host(full)).max() <= TOL


def test_float32_keeps_dtype(be, tiny):
    cfg, params, src = tiny
    params32 = {k: v.astype("float32") for k, v in params.items()}
    tgt_in = random_prefix(be, cfg, src.shape[0], 5)
    cached = teacher_forced_logits(params32, cfg, src, tgt_in)
    full, _ = transformer_forward(params32, cfg, src, tgt_in)
    assert cached.dtype == full.dtype == np.float32
    assert np.abs(be.to_host(cached) - be.to_host(full)).max() <= 1e-4


def test_encode_ignores_padding(be, tiny):
    """Each sentence's memory is the same alone as padded inside a batch."""
    cfg, params, src = tiny
    memory, src_mask = encode(params, cfg, src)
    assert memory.shape == src.shape + (cfg.d_model,) and src_mask.shape == (src.shape[0], 1, 1, src.shape[1])
    lengths = be.to_host((src != cfg.pad_id).sum(axis=1))
    for b, n in enumerate(lengths):
        alone, _ = encode(params, cfg, src[b:b + 1, :n])
        assert np.abs(be.to_host(memory[b, :n]) - be.to_host(alone[0])).max() <= TOL


def test_each_step_projects_one_position(be, tiny, monkeypatch):
    """After init_decoder_state, every linear map in a step sees one position, not the prefix."""
    cfg, params, src = tiny
    memory, src_mask = encode(params, cfg, src)
    state = init_decoder_state(params, cfg, memory, src_mask, 6)
    rows = []
    real = incremental.linear_forward

    def recording(x, W, b):
        rows.append(x.shape[-2])
        return real(x, W, b)

    monkeypatch.setattr(incremental, "linear_forward", recording)
    monkeypatch.setattr(ops, "linear_forward", recording)  # where the feed-forward network reads it
    tokens = be.asarray(np.full(src.shape[0], cfg.bos_id))
    for t in range(6):
        logits, state = decode_step(params, cfg, state, tokens, t)
        tokens = logits.argmax(axis=-1)
    assert state.length == 6
    K, V = state.self_attention_kv(1)
    assert K.shape == V.shape == (src.shape[0], cfg.h, 6, cfg.d_k)
    assert rows and set(rows) == {1}
    assert len(rows) == 6 * cfg.n_layers * 8  # Q, K, V, W_O; cross Q, W_O; FFN W_1, W_2


def test_reorder_gathers_rows(be, tiny):
    """Stepping a reordered (and shrunk) cache = stepping the permuted batch from scratch."""
    cfg, params, src = tiny
    tgt_in = random_prefix(be, cfg, src.shape[0], 6, seed=1)
    memory, src_mask = encode(params, cfg, src)
    state = init_decoder_state(params, cfg, memory, src_mask, 6)
    for t in range(3):
        _, state = decode_step(params, cfg, state, tgt_in[:, t], t)
    index = be.asarray(np.array([4, 0, 0, 2]))  # rows repeat, some are dropped
    moved = reorder(state, index)
    assert moved.batch_size == 4 and moved.length == 3 and state.batch_size == src.shape[0]
    got = []
    for t in range(3, 6):
        logits, moved = decode_step(params, cfg, moved, tgt_in[index, t], t)
        got.append(be.to_host(logits))
    want = be.to_host(teacher_forced_logits(params, cfg, src[index], tgt_in[index]))[:, 3:]
    assert np.abs(np.stack(got, axis=1) - want).max() <= TOL
    # the original state is untouched and can still be stepped
    logits, _ = decode_step(params, cfg, state, tgt_in[:, 3], 3)
    full = be.to_host(teacher_forced_logits(params, cfg, src, tgt_in))[:, 3]
    assert np.abs(be.to_host(logits) - full).max() <= TOL


def test_step_errors(be, tiny):
    cfg, params, src = tiny
    memory, src_mask = encode(params, cfg, src)
    state = init_decoder_state(params, cfg, memory, src_mask, 2)
    bos = be.asarray(np.full(src.shape[0], cfg.bos_id))
    with pytest.raises(ValueError, match="position: .* next is 0; got 1"):
        decode_step(params, cfg, state, bos, 1)
    with pytest.raises(TypeError, match="tokens: expected integer token ids, got dtype float64"):
        decode_step(params, cfg, state, bos.astype("float64"), 0)
    with pytest.raises(ValueError, match=r"tokens: expected shape \(6,\)"):
        decode_step(params, cfg, state, bos[:3], 0)
    for t in range(2):
        _, state = decode_step(params, cfg, state, bos, t)
    with pytest.raises(ValueError, match="capacity of 2"):
        decode_step(params, cfg, state, bos, 2)
    with pytest.raises(ValueError, match="capacity: expected an integer in"):
        init_decoder_state(params, cfg, memory, src_mask, cfg.max_len + 1)
    with pytest.raises(ValueError, match=r"index: rows must be in \[0, 6\)"):
        reorder(state, np.array([0, 6]))
    with pytest.raises(ValueError, match="index: expected a 1-D integer array"):
        reorder(state, np.array([0.0, 1.0]))


def test_capacity_bounds_are_one_and_max_len(be, tiny):
    """A cache holds 1 to max_len positions: 0 and max_len + 1 are refused, both ends accepted."""
    cfg, params, src = tiny
    memory, src_mask = encode(params, cfg, src)
    for capacity in (0, -1, cfg.max_len + 1):
        with pytest.raises(ValueError, match="capacity: expected an integer in"):
            init_decoder_state(params, cfg, memory, src_mask, capacity)
    for capacity in (1, cfg.max_len):
        assert init_decoder_state(params, cfg, memory, src_mask, capacity).capacity == capacity


def test_reorder_refuses_negative_rows_and_batch_mismatches_name_both_sizes(be, tiny):
    """-1 would silently gather the last row; a batch-size error names the two sizes (6 vs 3)."""
    cfg, params, src = tiny
    memory, src_mask = encode(params, cfg, src)
    state = init_decoder_state(params, cfg, memory, src_mask, 2)
    with pytest.raises(ValueError, match=r"index: rows must be in \[0, 6\), got values in \[-1, 0\]"):
        reorder(state, np.array([-1, 0]))
    tgt_in = be.asarray(np.full((3, 2), cfg.bos_id))
    with pytest.raises(ValueError, match="src and tgt_in: batch sizes differ, 6 vs 3"):
        teacher_forced_logits(params, cfg, src, tgt_in)
