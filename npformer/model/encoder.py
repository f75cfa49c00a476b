"""The encoder: a stack of N identical layers. Paper §3.1, Figure 1 (left).

EncoderLayer (x: (B, S, d_model), mask: source padding (B, 1, 1, S)):
    x = LayerNorm(x + Dropout(SelfAttention(x, mask)))        ln1
    x = LayerNorm(x + Dropout(FFN(x)))                        ln2

Backward runs the two sublayers in reverse. At each sublayer the gradient
reaching x is the sum of the residual path and the path through the sublayer:
    dx = dx_residual + dx_sublayer
"""
from typing import NamedTuple

from npformer.model.sublayer import add_norm_backward, add_norm_forward, prefixed, subdict
from npformer.ops.feedforward import feedforward_backward, feedforward_forward
from npformer.ops.multihead import self_attention_backward, self_attention_forward


class EncoderLayerCache(NamedTuple):
    self_attn: object
    norm1: object
    ffn: object
    norm2: object


def encoder_layer_forward(x, p, h, mask, p_drop=0.0, rng=None):
    """One encoder layer; ``p`` holds self_attn.*, ln1.*, ffn.*, ln2.* (prefix stripped)."""
    a, attn = self_attention_forward(x, subdict(p, "self_attn."), h, mask)  # (B, S, d_model)
    x, norm1 = add_norm_forward(x, a, p["ln1.gamma"], p["ln1.beta"], p_drop, rng)
    f, ffn = feedforward_forward(x, subdict(p, "ffn."))  # (B, S, d_model)
    x, norm2 = add_norm_forward(x, f, p["ln2.gamma"], p["ln2.beta"], p_drop, rng)
    return x, EncoderLayerCache(attn, norm1, ffn, norm2)


def encoder_layer_backward(dy, cache: EncoderLayerCache):
    """Returns ``(dx, grads)`` with grads keyed like the layer's ``p``."""
    grads = {}
    dx, df, grads["ln2.gamma"], grads["ln2.beta"] = add_norm_backward(dy, cache.norm2)
    dx_f, g = feedforward_backward(df, cache.ffn)
    grads.update(prefixed(g, "ffn."))
    dx = dx + dx_f
    dx, da, grads["ln1.gamma"], grads["ln1.beta"] = add_norm_backward(dx, cache.norm1)
    dx_a, g = self_attention_backward(da, cache.self_attn)
    grads.update(prefixed(g, "self_attn."))
    return dx + dx_a, grads


def encoder_forward(x, params, n_layers, h, mask, p_drop=0.0, rng=None):
    """The stack: ``params`` keys "encoder.{i}.*". Returns ``(memory, caches)``."""
    caches = []
    for i in range(n_layers):
        x, c = encoder_layer_forward(x, subdict(params, f"encoder.{i}."), h, mask, p_drop, rng)
        caches.append(c)
    return x, caches


def encoder_backward(dmemory, caches):
    """Returns ``(dx, grads)`` with grads keyed "encoder.{i}.*"."""
    grads = {}
    dx = dmemory
    for i in reversed(range(len(caches))):
        dx, g = encoder_layer_backward(dx, caches[i])
        grads.update(prefixed(g, f"encoder.{i}."))
    return dx, grads
