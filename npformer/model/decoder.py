"""The decoder: a stack of N identical layers. Paper §3.1, Figure 1 (right).

DecoderLayer (y: (B, T, d_model), memory: encoder output (B, S, d_model)):
    y = LayerNorm(y + Dropout(SelfAttention(y, tgt_mask)))           ln1, masked: no future, no padding
    y = LayerNorm(y + Dropout(CrossAttention(y, memory, src_mask)))  ln2, "encoder-decoder attention"
    y = LayerNorm(y + Dropout(FFN(y)))                               ln3

Backward: the three sublayers in reverse. The memory is used by every
layer's cross-attention, so its gradient is the SUM over the N layers:
    dmemory = sum_i dmemory_i
"""
from typing import NamedTuple

from npformer.model.sublayer import add_norm_backward, add_norm_forward, prefixed, subdict
from npformer.ops.feedforward import feedforward_backward, feedforward_forward
from npformer.ops.multihead import (cross_attention_backward, cross_attention_forward,
                                    self_attention_backward, self_attention_forward)


class DecoderLayerCache(NamedTuple):
    self_attn: object
    norm1: object
    cross_attn: object
    norm2: object
    ffn: object
    norm3: object


def decoder_layer_forward(y, memory, p, h, tgt_mask, src_mask, p_drop=0.0, rng=None):
    """One decoder layer; ``p`` holds self_attn.*, ln1.*, cross_attn.*, ln2.*, ffn.*, ln3.*."""
    a, self_attn = self_attention_forward(y, subdict(p, "self_attn."), h, tgt_mask)  # (B, T, d_model)
    y, norm1 = add_norm_forward(y, a, p["ln1.gamma"], p["ln1.beta"], p_drop, rng)
    c, cross_attn = cross_attention_forward(y, memory, subdict(p, "cross_attn."), h, src_mask)  # (B, T, d_model)
    y, norm2 = add_norm_forward(y, c, p["ln2.gamma"], p["ln2.beta"], p_drop, rng)
    f, ffn = feedforward_forward(y, subdict(p, "ffn."))  # (B, T, d_model)
    y, norm3 = add_norm_forward(y, f, p["ln3.gamma"], p["ln3.beta"], p_drop, rng)
    return y, DecoderLayerCache(self_attn, norm1, cross_attn, norm2, ffn, norm3)


def decoder_layer_backward(dy, cache: DecoderLayerCache):
    """Returns ``(dy_in, dmemory, grads)``."""
    grads = {}
    dy, df, grads["ln3.gamma"], grads["ln3.beta"] = add_norm_backward(dy, cache.norm3)
    dy_f, g = feedforward_backward(df, cache.ffn)
    grads.update(prefixed(g, "ffn."))
    dy, dc, grads["ln2.gamma"], grads["ln2.beta"] = add_norm_backward(dy + dy_f, cache.norm2)
    dy_c, dmemory, g = cross_attention_backward(dc, cache.cross_attn)
    grads.update(prefixed(g, "cross_attn."))
    dy, da, grads["ln1.gamma"], grads["ln1.beta"] = add_norm_backward(dy + dy_c, cache.norm1)
    dy_a, g = self_attention_backward(da, cache.self_attn)
    grads.update(prefixed(g, "self_attn."))
    return dy + dy_a, dmemory, grads


def decoder_forward(y, memory, params, n_layers, h, tgt_mask, src_mask, p_drop=0.0, rng=None):
    """The stack: ``params`` keys "decoder.{i}.*". Returns ``(out, caches)``."""
    caches = []
    for i in range(n_layers):
        y, c = decoder_layer_forward(y, memory, subdict(params, f"decoder.{i}."), h,
                                     tgt_mask, src_mask, p_drop, rng)
        caches.append(c)
    return y, caches


def decoder_backward(dout, caches):
    """Returns ``(dy, dmemory, grads)``; dmemory summed over the layers."""
    grads = {}
    dy, dmemory = dout, None
    for i in reversed(range(len(caches))):
        dy, dm, g = decoder_layer_backward(dy, caches[i])
        dmemory = dm if dmemory is None else dmemory + dm
        grads.update(prefixed(g, f"decoder.{i}."))
    return dy, dmemory, grads
