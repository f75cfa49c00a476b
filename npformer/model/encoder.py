"""The encoder: a stack of N identical layers. Paper §3.1, Figure 1 (left).

EncoderLayer (x: (B, S, d_model), mask: source padding (B, 1, 1, S)), post-LN (the paper's):
    x = LayerNorm(x + Dropout(SelfAttention(x, mask)))        ln1
    x = LayerNorm(x + Dropout(FFN(x)))                        ln2
pre-LN (``norm="pre"``, sublayer.py):
    x = x + Dropout(SelfAttention(LayerNorm(x), mask))        ln1
    x = x + Dropout(FFN(LayerNorm(x)))                        ln2
    and after the last layer: memory = LayerNorm(x)           encoder.norm

Backward runs the two sublayers in reverse. At each sublayer the gradient
reaching x is the sum of the residual path and the path through the sublayer:
    dx = dx_residual + dx_sublayer
"""
from typing import NamedTuple

from npformer import model, ops  # the blocks and ops it uses, read at call time (npformer/model/__init__.py)
from npformer.model.sublayer import StackCache, prefixed, subdict


class EncoderLayerCache(NamedTuple):
    in1: object
    self_attn: object
    out1: object
    in2: object
    ffn: object
    out2: object


def encoder_layer_forward(x, p, h, mask, p_drop=0.0, rng=None, norm="post"):
    """One encoder layer; ``p`` holds self_attn.*, ln1.*, ffn.*, ln2.* (prefix stripped)."""
    u, in1 = model.sublayer_in_forward(x, p["ln1.gamma"], p["ln1.beta"], norm)
    a, attn = ops.self_attention_forward(u, subdict(p, "self_attn."), h, mask)  # (B, S, d_model)
    x, out1 = model.sublayer_out_forward(x, a, p["ln1.gamma"], p["ln1.beta"], norm, p_drop, rng)
    u, in2 = model.sublayer_in_forward(x, p["ln2.gamma"], p["ln2.beta"], norm)
    f, ffn = ops.feedforward_forward(u, subdict(p, "ffn."))  # (B, S, d_model)
    x, out2 = model.sublayer_out_forward(x, f, p["ln2.gamma"], p["ln2.beta"], norm, p_drop, rng)
    return x, EncoderLayerCache(in1, attn, out1, in2, ffn, out2)


def encoder_layer_backward(dy, cache: EncoderLayerCache):
    """Returns ``(dx, grads)`` with grads keyed like the layer's ``p``."""
    dx, df, g_out = model.sublayer_out_backward(dy, cache.out2)
    du, g = ops.feedforward_backward(df, cache.ffn)
    dx_f, g_in = model.sublayer_in_backward(du, cache.in2)
    grads = {**prefixed(g_out, "ln2."), **prefixed(g_in, "ln2."), **prefixed(g, "ffn.")}
    dx = dx + dx_f
    dx, da, g_out = model.sublayer_out_backward(dx, cache.out1)
    du, g = ops.self_attention_backward(da, cache.self_attn)
    dx_a, g_in = model.sublayer_in_backward(du, cache.in1)
    grads.update({**prefixed(g_out, "ln1."), **prefixed(g_in, "ln1."), **prefixed(g, "self_attn.")})
    return dx + dx_a, grads


def encoder_forward(x, params, n_layers, h, mask, p_drop=0.0, rng=None, norm="post"):
    """The stack: ``params`` keys "encoder.{i}.*" (and "encoder.norm.*" for pre-LN).
    Returns ``(memory, StackCache)``."""
    layers = []
    for i in range(n_layers):
        x, c = model.encoder_layer_forward(x, subdict(params, f"encoder.{i}."), h, mask, p_drop, rng, norm)
        layers.append(c)
    x, final = model.final_norm_forward(x, params, "encoder", norm)  # (B, S, d_model)
    return x, StackCache(layers, final)


def encoder_backward(dmemory, cache: StackCache):
    """Returns ``(dx, grads)`` with grads keyed "encoder.{i}.*" (and "encoder.norm.*")."""
    dx, grads = model.final_norm_backward(dmemory, cache.final_norm, "encoder")
    for i in reversed(range(len(cache.layers))):
        dx, g = model.encoder_layer_backward(dx, cache.layers[i])
        grads.update(prefixed(g, f"encoder.{i}."))
    return dx, grads
