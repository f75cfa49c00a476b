"""The benchmark workload: model shapes, random batches and matmul FLOP counts.

Shared by ``train_step.py``, ``step_profile.py``, ``scaling_model.py`` and the
PyTorch speed baseline (``torch_baseline.py``). NumPy only: nothing here
imports torch.

Model shapes come from npformer's own preset table (``npformer.model.config``
``PRESETS``: ``n_layers``, ``d_model``, ``h``, ``d_ff``, ``p_drop``), so there is
one table for both frameworks. :func:`model_dims` accepts a preset name, a
``TransformerConfig`` or a dict with those keys.
"""
from __future__ import annotations

from npformer.model.config import PRESETS
from npformer.special_tokens import BOS_ID, EOS_ID, PAD_ID

# Benchmark shapes: B sentences, source length S, target length T, vocabulary V.
DEFAULT_SHAPES = dict(B=8, S=64, T=64, V=8192)

DIM_KEYS = ("n_layers", "d_model", "h", "d_ff")


def model_dims(preset) -> dict:
    """``{"n_layers", "d_model", "h", "d_ff", "p_drop"}`` of a preset name (npformer's
    ``PRESETS``), a ``TransformerConfig``, or a dict with ``n_layers``, ``d_model``,
    ``h``, ``d_ff`` (``p_drop`` optional, default 0.1). n_layers = N = encoder
    layers = decoder layers."""
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
        src = PRESETS[preset]
    elif isinstance(preset, dict):
        src = preset
    else:  # a TransformerConfig (or anything with those attributes)
        src = {k: getattr(preset, k) for k in (*DIM_KEYS, "p_drop") if hasattr(preset, k)}
    missing = set(DIM_KEYS) - set(src)
    if missing:
        raise ValueError(f"config lacks {sorted(missing)}; expected npformer's keys {list(DIM_KEYS)}")
    dims = {k: src[k] for k in DIM_KEYS}
    dims["p_drop"] = src.get("p_drop", 0.1)
    return dims


# ----------------------------------------------------------------------------- data

def make_batch(B=8, S=64, T=64, V=8192, seed=0, n_padded=2, pad_len=None):
    """A random batch ``(src, tgt_in, tgt_out)`` of int64 NumPy arrays, pad id 0.

    src (B, S): tokens in [3, V). tgt_in (B, T) starts with BOS (1) and is tgt_out
    (B, T) shifted right by one (teacher forcing). The last ``n_padded`` sentences
    have only ``pad_len`` real tokens (default 3/4 of the length, e.g. 48 of 64) in
    source and target; the rest is padding (0)."""
    import numpy as np

    if V < 4:
        raise ValueError("make_batch: need V >= 4 (pad, bos, eos and one word)")
    rng = np.random.default_rng(seed)
    src = rng.integers(3, V, size=(B, S), dtype=np.int64)           # (B, S)
    words = rng.integers(3, V, size=(B, T + 1), dtype=np.int64)     # (B, T+1)
    words[:, 0] = BOS_ID
    tgt_in = words[:, :-1].copy()                                    # (B, T)
    tgt_out = words[:, 1:].copy()                                    # (B, T)
    for b in range(max(0, B - n_padded), B):
        ls = pad_len if pad_len is not None else (3 * S) // 4
        lt = pad_len if pad_len is not None else (3 * T) // 4
        src[b, ls:] = PAD_ID
        tgt_out[b, lt - 1] = EOS_ID
        tgt_out[b, lt:] = PAD_ID
        tgt_in[b, lt:] = PAD_ID
    return src, tgt_in, tgt_out


def batch_tokens(src, tgt_out):
    """Non-pad token counts of a batch: ``{"src": .., "tgt": .., "total": ..}``."""
    n_src, n_tgt = int((src != PAD_ID).sum()), int((tgt_out != PAD_ID).sum())
    return {"src": n_src, "tgt": n_tgt, "total": n_src + n_tgt}


# ----------------------------------------------------------------------------- FLOPs

def forward_flops(preset, B, S, T, V, breakdown=False):
    """Matmul FLOPs of one forward pass, 2*m*n*k per (m, k) @ (k, n) product.

    ``preset``: anything :func:`model_dims` accepts. With d = d_model, f = d_ff,
    N = n_layers per stack, counting every position (padding included, as the
    dense arrays are computed anyway):
      encoder, per layer:   proj   4 * 2*B*S*d*d            (W_q, W_k, W_v, W_o)
                            attn   2 * 2*B*S*S*d            (Q K^T and P V, all heads)
                            ffn    2 * 2*B*S*d*f
      decoder, per layer:   self   4 * 2*B*T*d*d  +  2 * 2*B*T*T*d
                            cross  2 * 2*B*T*d*d  (W_q, W_o on the target)
                                 + 2 * 2*B*S*d*d  (W_k, W_v on the encoder memory)
                                 + 2 * 2*B*T*S*d  (Q K^T and P V)
                            ffn    2 * 2*B*T*d*f
      output projection:    2*B*T*d*V                       (logits = h @ E^T)
    Elementwise work (softmax, LayerNorm, dropout, residuals, embedding lookups, the
    loss) is ignored. Returns an int, or a dict of parts (with "total") if
    ``breakdown``."""
    c = model_dims(preset)
    N, d, f = c["n_layers"], c["d_model"], c["d_ff"]
    parts = {
        "encoder_proj": N * 4 * 2 * B * S * d * d,
        "encoder_attn": N * 2 * 2 * B * S * S * d,
        "encoder_ffn": N * 2 * 2 * B * S * d * f,
        "decoder_self_proj": N * 4 * 2 * B * T * d * d,
        "decoder_self_attn": N * 2 * 2 * B * T * T * d,
        "decoder_cross_proj": N * (2 * 2 * B * T * d * d + 2 * 2 * B * S * d * d),
        "decoder_cross_attn": N * 2 * 2 * B * T * S * d,
        "decoder_ffn": N * 2 * 2 * B * T * d * f,
        "output_proj": 2 * B * T * d * V,
    }
    parts["total"] = sum(parts.values())
    return parts if breakdown else parts["total"]


def train_flops(preset, B=8, S=64, T=64, V=8192):
    """Model FLOPs of one training step = 3 x :func:`forward_flops` (see its docstring).

    The usual convention: the backward pass costs two matmuls per forward matmul (one
    for the input gradient, one for the weight gradient), so a step is 3x forward."""
    return 3 * forward_flops(preset, B, S, T, V)
