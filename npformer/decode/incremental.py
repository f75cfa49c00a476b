"""Incremental decoding with a key/value cache: one new position per step. Paper §3.1, §3.2.3.

At inference the decoder runs once per output token. Run naively, step t feeds
the whole prefix y_0..y_t through every layer again, and all rows but the
last repeat work already done: position s < t can only attend to positions
<= s (look-ahead mask), so its activations do not change when y_t arrives.
Only the new position has to be computed, and it needs from the past nothing
but each layer's self-attention keys and values. We keep those in a cache:

    encode, once per sentence:
        memory = Encoder(sqrt(d_model) E_src[src] + PE)                (B, S, d_model)
        K_mem^l = memory W_K^l + b_K^l,  V_mem^l likewise, per layer l  (B, h, S, d_k)

    step t, input token y_t (B,):
        x = sqrt(d_model) E_tgt[y_t] + PE[t]                            (B, 1, d_model)
        per layer l:
            q, k, v = x W_Q + b_Q, x W_K + b_K, x W_V + b_V             (B, h, 1, d_k) each
            K_self[:, :, t] = k;  V_self[:, :, t] = v                   cache now (B, h, t+1, d_k)
            x = LayerNorm(x + Attention(q, K_self, V_self) W_O + b_O)   no mask: the cache holds only the past
            x = LayerNorm(x + Attention(x W_Q + b_Q, K_mem, V_mem, src_mask) W_O + b_O)
            x = LayerNorm(x + FFN(x))
        logits = x E_out^T                                              (B, V)

(post-LN, the paper's; with ``cfg.norm == "pre"`` each sublayer is
x = x + Sublayer(LayerNorm(x)) and x = LayerNorm(x) follows the last layer,
model/sublayer.py. The cached keys and values are those of the sublayer's input.)

The self-attention needs no mask: the cache holds only the past (look-ahead is
automatic) and the searches never feed PAD (the reference's target padding mask
would be all True). Q, K and V of the one new row use three linear_forward
calls with W_Q, W_K, W_V, as in the paper's equations (multihead.py fuses
them into one (d_model, 3 d_model) product over all T rows; here there is one).

Step t costs O(t) (attention over t+1 cached keys) instead of the O(t^2)
attention and O(t) projections of re-running the prefix, and the cross-attention
keys and values of the memory are projected once per sentence instead of once
per step. Inference means no dropout (§5.4 applies it in training only).

The cache is preallocated to a capacity (the longest output allowed) and each
step writes its column in place: K_self[:, :, t] = k. Growing it by
concatenation instead would copy the whole cache every step, O(t) extra per
step and O(T^2) in all, a cost that grows with the output length. A step
writes into the state's buffers and returns the same state object, one
position longer.

Beam search reorders the batch rows every step (``reorder``): a gather along
the batch axis, into fresh buffers, of only the t filled positions.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from npformer.backend import backend_of
from npformer.model.config import TransformerConfig
from npformer.model.encoder import encoder_forward
from npformer.model.masks import padding_mask
from npformer.model.params import validate_params, embedding_keys
from npformer.model.sublayer import final_norm_forward, sublayer_in_forward, sublayer_out_forward, subdict
from npformer.model.transformer import validate_ids, embed_forward, positional_table
from npformer.ops.attention import attention_forward
from npformer.ops.feedforward import feedforward_forward
from npformer.ops.linear import linear_forward
from npformer.ops.multihead import merge_heads, split_heads


def encode(params, cfg: TransformerConfig, src):
    """The encoder in inference mode (no dropout).

    src (B, S) ids -> (memory (B, S, d_model), src_mask (B, 1, 1, S)).
    """
    validate_params(params, cfg)
    E_src = params[embedding_keys(cfg)["src"]]
    be = backend_of(src, E_src)
    validate_ids(src, "src", cfg.vocab_size, cfg.max_len)
    src_mask = padding_mask(src, cfg.pad_id)  # (B, 1, 1, S)
    table = positional_table(cfg, be.xp, E_src.dtype)
    x, _ = embed_forward(src, E_src, cfg, table)  # (B, S, d_model)
    memory, _ = encoder_forward(x, params, cfg.n_layers, cfg.h, src_mask, norm=cfg.norm)  # (B, S, d_model)
    return memory, src_mask


class LayerKV(NamedTuple):
    """The cache of one decoder layer."""
    K_self: object  # (B, h, capacity, d_k): self-attention keys, positions [0, length) filled
    V_self: object  # (B, h, capacity, d_k): self-attention values
    K_mem: object   # (B, h, S, d_k): cross-attention keys of the memory, computed once
    V_mem: object   # (B, h, S, d_k): cross-attention values of the memory


@dataclass
class DecoderState:
    """Everything the decoder needs from the past: one LayerKV per layer, the source mask."""
    layers: list        # n_layers x LayerKV
    src_mask: object    # (B, 1, 1, S): True where the source token is real (not padding)
    length: int         # positions decoded so far, t
    capacity: int       # positions the buffers can hold

    @property
    def batch_size(self) -> int:
        return self.src_mask.shape[0]

    def self_attention_kv(self, i):
        """Layer i's cached self-attention keys and values so far: two (B, h, length, d_k) views."""
        kv = self.layers[i]
        return kv.K_self[:, :, :self.length], kv.V_self[:, :, :self.length]


def _heads(x, p, name, h):
    """x W_name + b_name, split into heads: (B, T, d_model) -> (B, h, T, d_k)."""
    y, _ = linear_forward(x, p["W_" + name], p["b_" + name])  # (B, T, d_model)
    return split_heads(y, 1, h)[0]  # (B, h, T, d_k)


def _attend(Q, K, V, mask, p):
    """MultiHead output for precomputed Q, K, V: Concat(heads) W_O + b_O -> (B, T_q, d_model)."""
    heads, _ = attention_forward(Q, K, V, mask)  # (B, h, T_q, d_k)
    y, _ = linear_forward(merge_heads(heads[None]), p["W_o"], p["b_o"])  # (B, T_q, d_model)
    return y


def init_decoder_state(params, cfg: TransformerConfig, memory, src_mask, capacity: int) -> DecoderState:
    """An empty cache for up to ``capacity`` positions, with each layer's K_mem, V_mem projected once."""
    if not isinstance(capacity, (int, np.integer)) or not 1 <= capacity <= cfg.max_len:
        raise ValueError(f"capacity: expected an integer in [1, max_len={cfg.max_len}], got {capacity!r}")
    xp = backend_of(memory, src_mask).xp
    B = memory.shape[0]
    layers = []
    for i in range(cfg.n_layers):
        p = subdict(params, f"decoder.{i}.cross_attn.")
        K_self = xp.empty((B, cfg.h, int(capacity), cfg.d_k), dtype=memory.dtype)  # (B, h, capacity, d_k)
        layers.append(LayerKV(K_self, xp.empty_like(K_self),
                              _heads(memory, p, "k", cfg.h), _heads(memory, p, "v", cfg.h)))  # (B, h, S, d_k)
    return DecoderState(layers, src_mask, 0, int(capacity))


def _layer_step(x, p, h, kv: LayerKV, src_mask, t, norm):
    """One decoder layer for the new position t only. x (B, 1, d_model)."""
    sa, ca = subdict(p, "self_attn."), subdict(p, "cross_attn.")
    u, _ = sublayer_in_forward(x, p["ln1.gamma"], p["ln1.beta"], norm)  # (B, 1, d_model)
    kv.K_self[:, :, t:t + 1] = _heads(u, sa, "k", h)  # (B, h, 1, d_k) into the cache
    kv.V_self[:, :, t:t + 1] = _heads(u, sa, "v", h)
    a = _attend(_heads(u, sa, "q", h), kv.K_self[:, :, :t + 1], kv.V_self[:, :, :t + 1], None, sa)
    x, _ = sublayer_out_forward(x, a, p["ln1.gamma"], p["ln1.beta"], norm, 0.0, None)  # (B, 1, d_model)
    u, _ = sublayer_in_forward(x, p["ln2.gamma"], p["ln2.beta"], norm)
    c = _attend(_heads(u, ca, "q", h), kv.K_mem, kv.V_mem, src_mask, ca)  # (B, 1, d_model)
    x, _ = sublayer_out_forward(x, c, p["ln2.gamma"], p["ln2.beta"], norm, 0.0, None)
    u, _ = sublayer_in_forward(x, p["ln3.gamma"], p["ln3.beta"], norm)
    f, _ = feedforward_forward(u, subdict(p, "ffn."))  # (B, 1, d_model)
    x, _ = sublayer_out_forward(x, f, p["ln3.gamma"], p["ln3.beta"], norm, 0.0, None)
    return x


def decode_step(params, cfg: TransformerConfig, state: DecoderState, tokens, position: int):
    """Logits for the position after ``tokens``: tokens (B,) ids at ``position`` -> (logits (B, V), state).

    ``position`` must equal ``state.length`` (0 for the first token, BOS).
    """
    keys = embedding_keys(cfg)
    E_tgt = params[keys["tgt"]]
    be = backend_of(tokens, E_tgt)
    if position != state.length:
        raise ValueError(f"position: the cache holds {state.length} positions, so the next is "
                         f"{state.length}; got {position}")
    if position >= state.capacity:
        raise ValueError(f"position: {position} is past the cache's capacity of {state.capacity} positions")
    if tokens.dtype.kind not in "iu":
        raise TypeError(f"tokens: expected integer token ids, got dtype {tokens.dtype}")
    if tokens.shape != (state.batch_size,):
        raise ValueError(f"tokens: expected shape ({state.batch_size},), got {tokens.shape}")
    table = positional_table(cfg, be.xp, E_tgt.dtype)
    x, _ = embed_forward(tokens[:, None], E_tgt, cfg, table, offset=position)  # (B, 1, d_model)
    for i, kv in enumerate(state.layers):
        x = _layer_step(x, subdict(params, f"decoder.{i}."), cfg.h, kv, state.src_mask, position, cfg.norm)
    x, _ = final_norm_forward(x, params, "decoder", cfg.norm)  # (B, 1, d_model)
    state.length = position + 1
    logits = x[:, 0] @ params[keys["out"]].T  # (B, V)
    return logits, state


def reorder(state: DecoderState, index) -> DecoderState:
    """A new state whose row r is row ``index[r]`` of ``state`` (index (B',) ints; B' may differ from B).

    Only the ``length`` filled positions are copied; ``state`` itself is left unchanged.
    """
    xp = backend_of(state.src_mask).xp
    if isinstance(index, (list, tuple)):
        index = np.asarray(index, dtype=np.int64)
    B = state.batch_size
    if index.ndim != 1 or index.dtype.kind not in "iu":
        raise ValueError(f"index: expected a 1-D integer array, got dtype {index.dtype} and shape {index.shape}")
    # the range is checked where the index lives on the host (the decoders' case):
    # on a device the check would read it back
    if not backend_of(index).on_device and index.size and (int(index.min()) < 0 or int(index.max()) >= B):
        raise ValueError(f"index: rows must be in [0, {B}), "
                         f"got values in [{int(index.min())}, {int(index.max())}]")
    index = xp.asarray(index)
    t = state.length
    layers = []
    for kv in state.layers:
        K_self = xp.empty((len(index),) + kv.K_self.shape[1:], dtype=kv.K_self.dtype)  # (B', h, capacity, d_k)
        V_self = xp.empty_like(K_self)
        K_self[:, :, :t] = kv.K_self[index, :, :t]  # (B', h, t, d_k)
        V_self[:, :, :t] = kv.V_self[index, :, :t]
        layers.append(LayerKV(K_self, V_self, kv.K_mem[index], kv.V_mem[index]))  # (B', h, S, d_k)
    return DecoderState(layers, state.src_mask[index], t, state.capacity)


def teacher_forced_logits(params, cfg: TransformerConfig, src, tgt_in):
    """Logits (B, T, V) for a given decoder input tgt_in (B, T), one cached step per position.

    Equals ``transformer_forward(params, cfg, src, tgt_in)[0]`` (inference mode) wherever
    tgt_in holds no padding; used to test the cache.
    """
    validate_ids(tgt_in, "tgt_in", cfg.target_vocab, cfg.max_len)
    memory, src_mask = encode(params, cfg, src)
    if tgt_in.shape[0] != memory.shape[0]:
        raise ValueError(f"src and tgt_in: batch sizes differ, {memory.shape[0]} vs {tgt_in.shape[0]}")
    xp = backend_of(memory).xp
    state = init_decoder_state(params, cfg, memory, src_mask, tgt_in.shape[1])
    steps = []
    for t in range(tgt_in.shape[1]):
        logits, state = decode_step(params, cfg, state, tgt_in[:, t], t)  # (B, V)
        steps.append(logits)
    return xp.stack(steps, axis=1)  # (B, T, V)
