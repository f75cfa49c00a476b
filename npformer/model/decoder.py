"""The decoder: a stack of N identical layers. Paper §3.1, Figure 1 (right).

DecoderLayer (y: (B, T, d_model), memory: encoder output (B, S, d_model)), post-LN (the paper's):
    y = LayerNorm(y + Dropout(SelfAttention(y, tgt_mask)))           ln1, masked: no future, no padding
    y = LayerNorm(y + Dropout(CrossAttention(y, memory, src_mask)))  ln2, "encoder-decoder attention"
    y = LayerNorm(y + Dropout(FFN(y)))                               ln3
pre-LN (``norm="pre"``, sublayer.py): y = y + Dropout(Sublayer(LayerNorm(y))) for
each of the three, and after the last layer H = LayerNorm(y) (decoder.norm).
The memory enters the cross-attention as it is: pre-LN normalised it already
at the end of the encoder.

Backward: the three sublayers in reverse. The memory is used by every
layer's cross-attention, so its gradient is the SUM over the N layers:
    dmemory = sum_i dmemory_i
"""
from typing import NamedTuple

from npformer import model, ops  # the blocks and ops it uses, read at call time (npformer/model/__init__.py)
from npformer.model.sublayer import StackCache, prefixed, subdict


class DecoderLayerCache(NamedTuple):
    in1: object
    self_attn: object
    out1: object
    in2: object
    cross_attn: object
    out2: object
    in3: object
    ffn: object
    out3: object


def decoder_layer_forward(y, memory, p, h, tgt_mask, src_mask, p_drop=0.0, rng=None, norm="post"):
    """One decoder layer; ``p`` holds self_attn.*, ln1.*, cross_attn.*, ln2.*, ffn.*, ln3.*."""
    u, in1 = model.sublayer_in_forward(y, p["ln1.gamma"], p["ln1.beta"], norm)
    a, self_attn = ops.self_attention_forward(u, subdict(p, "self_attn."), h, tgt_mask)  # (B, T, d_model)
    y, out1 = model.sublayer_out_forward(y, a, p["ln1.gamma"], p["ln1.beta"], norm, p_drop, rng)
    u, in2 = model.sublayer_in_forward(y, p["ln2.gamma"], p["ln2.beta"], norm)
    c, cross_attn = ops.cross_attention_forward(u, memory, subdict(p, "cross_attn."), h, src_mask)  # (B, T, d_model)
    y, out2 = model.sublayer_out_forward(y, c, p["ln2.gamma"], p["ln2.beta"], norm, p_drop, rng)
    u, in3 = model.sublayer_in_forward(y, p["ln3.gamma"], p["ln3.beta"], norm)
    f, ffn = ops.feedforward_forward(u, subdict(p, "ffn."))  # (B, T, d_model)
    y, out3 = model.sublayer_out_forward(y, f, p["ln3.gamma"], p["ln3.beta"], norm, p_drop, rng)
    return y, DecoderLayerCache(in1, self_attn, out1, in2, cross_attn, out2, in3, ffn, out3)


def decoder_layer_backward(dy, cache: DecoderLayerCache):
    """Returns ``(dy_in, dmemory, grads)``."""
    dy, df, g_out = model.sublayer_out_backward(dy, cache.out3)
    du, g = ops.feedforward_backward(df, cache.ffn)
    dy_f, g_in = model.sublayer_in_backward(du, cache.in3)
    grads = {**prefixed(g_out, "ln3."), **prefixed(g_in, "ln3."), **prefixed(g, "ffn.")}
    dy, dc, g_out = model.sublayer_out_backward(dy + dy_f, cache.out2)
    du, dmemory, g = ops.cross_attention_backward(dc, cache.cross_attn)
    dy_c, g_in = model.sublayer_in_backward(du, cache.in2)
    grads.update({**prefixed(g_out, "ln2."), **prefixed(g_in, "ln2."), **prefixed(g, "cross_attn.")})
    dy, da, g_out = model.sublayer_out_backward(dy + dy_c, cache.out1)
    du, g = ops.self_attention_backward(da, cache.self_attn)
    dy_a, g_in = model.sublayer_in_backward(du, cache.in1)
    grads.update({**prefixed(g_out, "ln1."), **prefixed(g_in, "ln1."), **prefixed(g, "self_attn.")})
    return dy + dy_a, dmemory, grads


def decoder_forward(y, memory, params, n_layers, h, tgt_mask, src_mask, p_drop=0.0, rng=None, norm="post"):
    """The stack: ``params`` keys "decoder.{i}.*" (and "decoder.norm.*" for pre-LN).
    Returns ``(out, StackCache)``."""
    layers = []
    for i in range(n_layers):
        y, c = model.decoder_layer_forward(y, memory, subdict(params, f"decoder.{i}."), h,
                                           tgt_mask, src_mask, p_drop, rng, norm)
        layers.append(c)
    y, final = model.final_norm_forward(y, params, "decoder", norm)  # (B, T, d_model)
    return y, StackCache(layers, final)


def decoder_backward(dout, cache: StackCache):
    """Returns ``(dy, dmemory, grads)``; dmemory summed over the layers."""
    dy, grads = model.final_norm_backward(dout, cache.final_norm, "decoder")
    dmemory = None
    for i in reversed(range(len(cache.layers))):
        dy, dm, g = model.decoder_layer_backward(dy, cache.layers[i])
        dmemory = dm if dmemory is None else dmemory + dm
        grads.update(prefixed(g, f"decoder.{i}."))
    return dy, dmemory, grads
