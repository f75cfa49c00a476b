"""Scaled dot-product attention with a boolean mask. Paper §3.2.1, Eq. (1).

Forward, for every batch element and head (B, h are leading axes):
    S = Q K^T / sqrt(d_k)                    Q (B, h, T_q, d_k), K (B, h, T_k, d_k) -> S (B, h, T_q, T_k)
    S = where(mask, S, finfo(dtype).min)     (mask True = "may attend")
    P = softmax(S) over the keys             (B, h, T_q, T_k)
    P = P * mask                             changes only rows with no key left: uniform -> 0
    out = P V                                V (B, h, T_k, d_v) -> out (B, h, T_q, d_v)

The mask broadcasts against (B, h, T_q, T_k): a key-padding mask is
(B, 1, 1, T_k), the look-ahead mask (1, 1, T, T), and their AND combines them.
A mask that is not boolean, or that does not broadcast to that shape, is
refused with an error (NumPy would broadcast some wrong shapes silently).
The masked softmax is ops/softmax.py's (``softmax_terms``). A masked score is
set to the dtype's most negative finite number, finfo(dtype).min, not to -inf:
in a row with an unmasked key, exp of it minus the row max is exactly 0, as
-inf would give; in a row whose keys are ALL masked, -inf would make the row
max -inf and z - max = -inf - (-inf) = NaN (every exp 0, the normalisation
0/0), while the finite number gives z - max = 0 and a uniform row, which the
softmax then multiplies by the mask: all-zero weights, so the row's output is
0 and it passes no gradient. That row happens: a source sentence that is
entirely padding is not refused, and a mask may come from outside.

Backward (a chain of matmuls and one softmax):
    dV = P^T dout                                    (B, h, T_k, d_v)
    dP = dout V^T                                    (B, h, T_q, T_k)
    dS = P * (dP - sum_k(dP * P))                    softmax_backward (ops/softmax.py)
    dQ = dS K / sqrt(d_k)                            (B, h, T_q, d_k)
    dK = dS^T Q / sqrt(d_k)                          (B, h, T_k, d_k)
Masked positions have P = 0 exactly, so dS = 0 there: a masked key receives no
gradient from that query, and the 1/sqrt(d_k) scale reappears in dQ and dK.
"""
from typing import NamedTuple

from npformer import ops  # the ops it uses, read at call time (npformer/ops/__init__.py)
from npformer.ops.softmax import SoftmaxCache


class AttentionCache(NamedTuple):
    Q: object
    K: object
    V: object
    P: object      # (B, h, T_q, T_k) attention weights, zero where masked
    scale: float   # 1 / sqrt(d_k)


def validate_mask(mask, scores_shape) -> None:
    """The mask must be boolean and broadcast to the scores' shape (B, h, T_q, T_k)
    without growing it: a wrong mask would otherwise silently mask the wrong keys."""
    if mask is None:
        return
    if getattr(mask, "dtype", None) is None or mask.dtype.kind != "b":
        raise TypeError(f"attention: mask must be a boolean array (True = may attend), got "
                        f"{getattr(mask, 'dtype', type(mask).__name__)}")
    fits = mask.ndim <= len(scores_shape) and all(
        m in (1, s) for m, s in zip(mask.shape[::-1], scores_shape[::-1]))
    if not fits:
        raise ValueError(f"attention: mask of shape {tuple(mask.shape)} does not broadcast to the scores' "
                         f"shape (B, h, T_q, T_k) = {tuple(scores_shape)}")


def attention_weights(Q, K, mask=None):
    """P = softmax(Q K^T / sqrt(d_k)) over the unmasked keys, with fully masked rows set to 0."""
    validate_mask(mask, (*Q.shape[:-1], K.shape[-2]))
    d_k = Q.shape[-1]
    scale = 1.0 / d_k ** 0.5
    # One (B, h, T_q, T_k) buffer: the scores S, then the weights P written over them.
    S = Q @ K.swapaxes(-1, -2)  # (B, h, T_q, T_k)
    S *= scale
    P, _ = ops.softmax_forward(S, mask, out=S)
    return P, scale


def attention_forward(Q, K, V, mask=None):
    """softmax(Q K^T / sqrt(d_k)) V, masked as above. Returns ``(out, cache)``; ``cache.P`` holds the weights."""
    if not (Q.ndim == K.ndim == V.ndim == 4 and Q.shape[:2] == K.shape[:2] == V.shape[:2]
            and Q.shape[3] == K.shape[3] and K.shape[2] == V.shape[2]):
        raise ValueError(f"attention: expected Q (B, h, T_q, d_k), K (B, h, T_k, d_k), V (B, h, T_k, d_v); "
                         f"got Q {Q.shape}, K {K.shape}, V {V.shape}")
    P, scale = attention_weights(Q, K, mask)
    out = P @ V  # (B, h, T_q, d_v)
    return out, AttentionCache(Q, K, V, P, scale)


def attention_backward(dout, cache: AttentionCache):
    """Returns ``(dQ, dK, dV)``."""
    Q, K, V, P, scale = cache
    dV = P.swapaxes(-1, -2) @ dout  # (B, h, T_k, d_v)
    dP = dout @ V.swapaxes(-1, -2)  # (B, h, T_q, T_k)
    dS = ops.softmax_backward(dP, SoftmaxCache(P), out=dP)  # (B, h, T_q, T_k), written over dP
    dQ = (dS @ K) * scale  # (B, h, T_q, d_k)
    dK = (dS.swapaxes(-1, -2) @ Q) * scale  # (B, h, T_k, d_k)
    return dQ, dK, dV
