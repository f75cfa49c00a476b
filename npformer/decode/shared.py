"""What greedy decoding and beam search share: input checks, output limits, next-token scores,
and two interchangeable ways to get the next position's logits.

Output length. §6.1: "we set the maximum output length during inference to input
length + 50". Each sentence gets its own limit, (its number of non-pad source
tokens) + 50, so padding a sentence inside a batch never changes its result;
it is capped at the positional table's ``cfg.max_len``. Output lengths count
tokens without BOS and EOS; a sentence that reaches its limit stops there.
Callers may instead give one limit for all sentences or one per sentence
(``translate`` turns a rule a * source length + b into per-sentence limits).

Next-token scores. log p(v | y_<t, x) = z_v - log sum_u exp(z_u) over the full
vocabulary, then two tokens are ruled out (log-probability set to -inf, the rest
NOT renormalised): PAD and BOS are never outputs. An untrained model may rank
them first, and a PAD inside the prefix would even be masked out by the
reference's target padding mask. ``min_len`` also rules out EOS before that
many tokens, so a benchmark can force full-length outputs.

The two decoders have the same interface, ``step(tokens (R,)) -> logits (R, V)``
and ``reorder(index)`` (row r becomes old row index[r]; rows may be dropped):
    CachedDecoder   incremental.py: one position per step, O(t) work at step t;
    FullDecoder     the reference: transformer_forward over the source and the
                    whole prefix at every step (re-encoding the source each time).
"""
from __future__ import annotations

import numpy as np

from npformer.backend import backend_of
from npformer.decode.incremental import decode_step, encode, init_decoder_state, reorder
from npformer.model.config import TransformerConfig
from npformer.model.params import validate_params, embedding_keys
from npformer.model.transformer import validate_ids, transformer_forward

EXTRA_OUTPUT_LENGTH = 50  # §6.1: maximum output length = input length + 50


def validate_int(value, name, lo, hi=None):
    """``value`` as an int in [lo, hi]; a ValueError/TypeError naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__} {value!r}")
    if value < lo or (hi is not None and value > hi):
        bounds = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"{name}: expected an integer {bounds}, got {value}")
    return int(value)


def validate_src(params, cfg: TransformerConfig, src):
    """``(backend, src on the parameters' device)`` for a (B, S) integer array with ids
    in [0, V). A host (NumPy) ``src`` is checked there and then sent to the device:
    the way to have the ids' values checked when the model lives on a GPU."""
    if not hasattr(src, "dtype") or not hasattr(src, "ndim"):
        raise TypeError(f"src: expected a (batch, length) integer array of token ids, got {type(src).__name__}")
    validate_ids(src, "src", cfg.vocab_size, cfg.max_len)
    validate_params(params, cfg)
    E = params[embedding_keys(cfg)["src"]]
    if backend_of(src).on_device:
        return backend_of(src, E), src  # one device, or a clear error
    be = backend_of(E)
    return be, be.asarray(src)


def output_limits(cfg: TransformerConfig, src, max_len=None) -> np.ndarray:
    """Host (B,) ints: the limits of a batch from the searches' ``max_len`` argument:
    None (``output_length_rule`` with the paper's a = 1, b = 50), one int for every
    sentence, or a sequence of B ints (checked against the positional table)."""
    B = src.shape[0]
    if max_len is not None and np.ndim(max_len) == 1:
        if len(max_len) != B:
            raise ValueError(f"max_len: expected one limit per sentence ({B}), got {len(max_len)}")
        return np.array([validate_int(m, f"max_len[{i}]", 1, cfg.max_len) for i, m in enumerate(max_len)],
                        dtype=np.int64)
    if max_len is not None:
        limit = validate_int(max_len, "max_len", 1, cfg.max_len)
        return np.full(B, limit, dtype=np.int64)
    n_src = backend_of(src).to_host((src != cfg.pad_id).sum(axis=1))  # (B,)
    return np.array(output_length_rule(n_src, 1.0, EXTRA_OUTPUT_LENGTH, cfg.max_len), dtype=np.int64)


def output_length_rule(src_lengths, max_len_a: float, max_len_b: int, cap: int) -> list[int]:
    """The one rule for the most output tokens of each sentence: floor(a * source
    length) + b, within [1, cap]. The paper's (§6.1, ``output_limits``' default) is
    a = 1, b = 50; ``translate`` and the demo pass their own a and b."""
    return [max(1, min(int(max_len_a * int(n)) + max_len_b, cap)) for n in src_lengths]


def next_log_probs(logits, cfg: TransformerConfig, n_out: int, min_len: int = 0):
    """log softmax(logits) (R, V) with PAD, BOS (and EOS while n_out < min_len) set to -inf."""
    xp = backend_of(logits).xp
    m = logits.max(axis=-1, keepdims=True)  # (R, 1)
    logp = logits - (m + xp.log(xp.exp(logits - m).sum(axis=-1, keepdims=True)))  # (R, V)
    banned = {cfg.pad_id, cfg.bos_id} - {cfg.eos_id}
    if n_out < min_len:
        banned.add(cfg.eos_id)
    logp[:, sorted(banned)] = -xp.inf
    return logp


class CachedDecoder:
    """Next-position logits from the key/value cache. ``copies`` repeats each sentence (beam search)."""

    def __init__(self, params, cfg, src, capacity, copies=1):
        self.params, self.cfg = params, cfg
        xp = backend_of(src).xp
        memory, src_mask = encode(params, cfg, src)  # (B, S, d_model), (B, 1, 1, S)
        if copies > 1:
            memory = xp.repeat(memory, copies, axis=0)  # (B*copies, S, d_model)
            src_mask = xp.repeat(src_mask, copies, axis=0)
        self.state = init_decoder_state(params, cfg, memory, src_mask, capacity)

    def step(self, tokens):
        logits, self.state = decode_step(self.params, self.cfg, self.state, tokens, self.state.length)
        return logits  # (R, V)

    def reorder(self, index):
        self.state = reorder(self.state, index)


class FullDecoder:
    """The uncached reference: the whole prefix through ``transformer_forward`` at every step."""

    def __init__(self, params, cfg, src, capacity, copies=1):
        self.params, self.cfg = params, cfg
        xp = backend_of(src).xp
        self.src = xp.repeat(src, copies, axis=0) if copies > 1 else src  # (R, S)
        self.prefix = xp.zeros((self.src.shape[0], 0), dtype=xp.int64)  # (R, t) decoder input so far

    def step(self, tokens):
        xp = backend_of(tokens).xp
        self.prefix = xp.concatenate([self.prefix, tokens[:, None].astype(xp.int64)], axis=1)  # (R, t+1)
        logits, _ = transformer_forward(self.params, self.cfg, self.src, self.prefix)  # (R, t+1, V)
        return logits[:, -1]  # (R, V)

    def reorder(self, index):
        index = backend_of(self.src).xp.asarray(index)
        self.src, self.prefix = self.src[index], self.prefix[index]


def make_decoder(params, cfg, src, capacity, use_cache=True, copies=1):
    if not isinstance(use_cache, bool):
        raise TypeError(f"use_cache: expected True or False, got {use_cache!r}")
    return (CachedDecoder if use_cache else FullDecoder)(params, cfg, src, capacity, copies)
