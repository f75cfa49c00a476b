"""The whole encoder-decoder Transformer. Paper §3, Figure 1.

Forward (src (B, S) and tgt_in (B, T) token ids; tgt_in = <s> + target):
    X      = Dropout(sqrt(d_model) * E_src[src] + PE)               (B, S, d_model)   §3.4, §3.5
    memory = Encoder(X, src_mask)                                   (B, S, d_model)
    Y      = Dropout(sqrt(d_model) * E_tgt[tgt_in] + PE)            (B, T, d_model)
    H      = Decoder(Y, memory, tgt_mask, src_mask)                 (B, T, d_model)
    logits = H E_out^T                                              (B, T, V)        pre-softmax linear

``cfg.norm`` places the LayerNorms: "post" (the paper's) or "pre", where each
stack also ends with a LayerNorm (model/sublayer.py).

§3.4 ties the three matrices: E_src = E_tgt = E_out = E. A tied parameter's
gradient is the sum of the gradients of its uses (each use is a separate
path from E to the loss):
    dE = dE_src + dE_tgt + dE_out

Backward of the output projection logits = H E^T:
    dH = dlogits E          dE_out = dlogits^T H    (summed over all B*T positions)
"""
from __future__ import annotations

from typing import NamedTuple

from npformer import model, ops  # the blocks and ops it uses, read at call time (npformer/model/__init__.py)
from npformer.backend import backend_of
from npformer.model.config import TransformerConfig
from npformer.model.masks import padding_mask, target_mask
from npformer.model.params import validate_params, embedding_keys

_PE_CACHE: dict = {}


def positional_table(cfg: TransformerConfig, xp, dtype):
    """The (max_len, d_model) sinusoid table, built once per (table function, backend, shape, dtype):
    keyed on ``ops.sinusoidal_table`` itself, so a swapped one (npformer/ops/__init__.py) builds its own."""
    table = ops.sinusoidal_table
    key = (table, xp.__name__, cfg.max_len, cfg.d_model, str(dtype))
    if key not in _PE_CACHE:
        _PE_CACHE[key] = table(cfg.max_len, cfg.d_model, xp, dtype)
    return _PE_CACHE[key]


def validate_ids(ids, name, vocab, max_len):
    """Validate a (B, L) integer id array: a clear error instead of a wrong answer.

    The value range is checked only where the ids live on the host: on a GPU it
    would read them back and stall the device at every call. Code that sends ids
    to a device checks them here first, while they are still host arrays
    (``validate_batch``, the decoders' ``validate_src``)."""
    if not hasattr(ids, "dtype") or ids.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected an integer array of token ids, got "
                        f"{getattr(ids, 'dtype', type(ids).__name__)}")
    if ids.ndim != 2:
        raise ValueError(f"{name}: expected shape (batch, length), got {ids.shape}")
    if ids.shape[0] == 0 or ids.shape[1] == 0:
        raise ValueError(f"{name}: empty batch or sequence, shape {ids.shape}")
    if ids.shape[1] > max_len:
        raise ValueError(f"{name}: length {ids.shape[1]} exceeds the positional table's max_len={max_len}")
    if backend_of(ids).on_device:
        return
    lo, hi = int(ids.min()), int(ids.max())
    if lo < 0 or hi >= vocab:
        raise ValueError(f"{name}: token ids must be in [0, {vocab}), got values in [{lo}, {hi}]")


def validate_batch(cfg: TransformerConfig, src, tgt_in, tgt_out) -> int:
    """Validate a training batch (src (B, S), tgt_in and tgt_out (B, T), ideally host
    arrays) before any work on it; returns N, its number of non-pad targets."""
    validate_ids(src, "src", cfg.vocab_size, cfg.max_len)
    validate_ids(tgt_in, "tgt_in", cfg.target_vocab, cfg.max_len)
    validate_ids(tgt_out, "tgt_out", cfg.target_vocab, cfg.max_len)
    if tgt_out.shape != tgt_in.shape or src.shape[0] != tgt_in.shape[0]:
        raise ValueError(f"batch: src {src.shape}, tgt_in {tgt_in.shape} and tgt_out {tgt_out.shape} "
                         "must have one batch size, and tgt_in and tgt_out one length")
    n_tokens = int(backend_of(tgt_out).to_host((tgt_out != cfg.pad_id).sum()))
    if n_tokens == 0:
        raise ValueError("batch: every target is padding; expected at least one non-pad token")
    return n_tokens


class EmbedCache(NamedTuple):
    emb: object
    pos: object
    drop: object


def embed_forward(ids, E, cfg, table, p_drop=0.0, rng=None, offset=0):
    """Dropout(sqrt(d_model) * E[ids] + PE[offset:offset+L])."""
    x, emb = ops.embedding_forward(ids, E, scale=cfg.d_model ** 0.5)  # (B, L, d_model)
    x, pos = ops.positional_forward(x, table, offset)
    x, drop = ops.dropout_forward(x, p_drop, rng)
    return x, EmbedCache(emb, pos, drop)


def embed_backward(dx, cache: EmbedCache):
    """Returns dE (V, d_model); the positional encoding is a constant (its backward is dy)."""
    return ops.embedding_backward(ops.positional_backward(ops.dropout_backward(dx, cache.drop), cache.pos), cache.emb)


class TransformerCache(NamedTuple):
    src_embed: object
    encoder: object    # StackCache: .layers, .final_norm
    tgt_embed: object
    decoder: object    # StackCache
    H: object          # (B, T, d_model) decoder output, for dE_out
    E_out: object      # (V, d_model)
    keys: dict         # which parameter serves src/tgt/out


def transformer_forward(params, cfg: TransformerConfig, src, tgt_in, rng=None):
    """Logits (B, T, V) for every target position. ``rng`` None = no dropout (inference).

    Returns ``(logits, cache)``.
    """
    validate_params(params, cfg)
    be = backend_of(src, tgt_in, params[embedding_keys(cfg)["src"]])
    validate_ids(src, "src", cfg.vocab_size, cfg.max_len)
    validate_ids(tgt_in, "tgt_in", cfg.target_vocab, cfg.max_len)
    if src.shape[0] != tgt_in.shape[0]:
        raise ValueError(f"src and tgt_in: batch sizes differ, {src.shape[0]} vs {tgt_in.shape[0]}")
    keys = embedding_keys(cfg)
    p_drop = cfg.p_drop if rng is not None else 0.0
    dtype = params[keys["src"]].dtype
    table = positional_table(cfg, be.xp, dtype)
    src_mask = padding_mask(src, cfg.pad_id)  # (B, 1, 1, S)
    tgt_mask = target_mask(tgt_in, cfg.pad_id)  # (B, 1, T, T)

    x, src_embed = model.embed_forward(src, params[keys["src"]], cfg, table, p_drop, rng)  # (B, S, d_model)
    memory, enc = model.encoder_forward(x, params, cfg.n_layers, cfg.h, src_mask, p_drop, rng, cfg.norm)
    y, tgt_embed = model.embed_forward(tgt_in, params[keys["tgt"]], cfg, table, p_drop, rng)  # (B, T, d_model)
    H, dec = model.decoder_forward(y, memory, params, cfg.n_layers, cfg.h, tgt_mask, src_mask, p_drop, rng,
                                   cfg.norm)
    E_out = params[keys["out"]]
    logits = (H.reshape(-1, H.shape[-1]) @ E_out.T).reshape(*H.shape[:-1], -1)  # (B, T, V), one GEMM
    return logits, TransformerCache(src_embed, enc, tgt_embed, dec, H, E_out, keys)


def transformer_backward(dlogits, cache: TransformerCache):
    """Gradients for every parameter, keyed like ``params``."""
    d_model = cache.H.shape[-1]
    dlogits2 = dlogits.reshape(-1, dlogits.shape[-1])  # (B*T, V)
    dH = (dlogits2 @ cache.E_out).reshape(*dlogits.shape[:-1], d_model)  # (B, T, d_model)
    dE_out = dlogits2.T @ cache.H.reshape(-1, d_model)  # (V, d_model)
    dy, dmemory, grads = model.decoder_backward(dH, cache.decoder)
    dE_tgt = model.embed_backward(dy, cache.tgt_embed)
    dx, enc_grads = model.encoder_backward(dmemory, cache.encoder)
    grads.update(enc_grads)
    dE_src = model.embed_backward(dx, cache.src_embed)
    keys = cache.keys
    if keys["src"] == keys["tgt"] == keys["out"]:
        grads[keys["src"]] = dE_src + dE_tgt + dE_out  # §3.4: one matrix, three uses
    else:
        grads[keys["src"]], grads[keys["tgt"]], grads[keys["out"]] = dE_src, dE_tgt, dE_out
    return grads


def loss_and_grads(params, cfg: TransformerConfig, src, tgt_in, tgt_out, rng=None, dloss=1.0):
    """Label-smoothed loss of one batch and the gradient of every parameter.

    Returns ``(loss, grads, n_tokens)``, loss and n_tokens 0-d arrays on the
    parameters' device (reading them is the caller's choice: on a GPU each read
    waits for the device). The gradients are of ``dloss * loss``: a part of a
    batch passes its share of the targets here, so that the parts' gradients
    add up to the whole batch's (train/parallel.py).
    """
    logits, cache = model.transformer_forward(params, cfg, src, tgt_in, rng)
    loss, ce = ops.cross_entropy_forward(logits, tgt_out, cfg.pad_id, cfg.eps_ls)
    grads = model.transformer_backward(ops.cross_entropy_backward(dloss, ce), cache)
    return loss, grads, ce.n_tokens
