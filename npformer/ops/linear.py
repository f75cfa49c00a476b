"""Linear (affine) map: the projections W_Q, W_K, W_V, W_O, the FFN layers. Paper §3.

Forward
    y = x W + b                     x (..., d_in), W (d_in, d_out), b (d_out,)  ->  y (..., d_out)

Backward (write x as a matrix X of shape (M, d_in), M = product of the leading axes)
    y_mj = sum_i x_mi W_ij + b_j
    dL/dx_mi = sum_j dy_mj W_ij        ->  dx = dy W^T                       (..., d_in)
    dL/dW_ij = sum_m x_mi dy_mj        ->  dW = X^T dY                       (d_in, d_out)
    dL/db_j  = sum_m dy_mj             ->  db = dy summed over every leading axis   (d_out,)

W and b are shared by every position, so their gradients sum over all of them.
Nothing is divided by the batch size here: averaging happens once, in the loss.

Fused projections (``fused_linear_forward``): n maps of ONE input, written side
by side into one output, as self-attention's Q, K, V (n = 3) or cross-attention's
K, V (n = 2):
    y = x [W_1 | ... | W_n] + [b_1 | ... | b_n]     W_i (d_in, d_i)  ->  y (..., d_1 + ... + d_n)
Column block i of y is x W_i + b_i, so the backward cuts dy into the same
blocks dY_i and applies the rules above to each; x feeds every block, so its
gradient is the sum over the blocks:
    dx = sum_i dY_i W_i^T,      dW_i = X^T dY_i,      db_i = dY_i summed over the leading axes
The code builds [W_1 | ... | W_n] at each call and runs ONE GEMM each way, so the
sum over blocks in dx happens inside the GEMM and dW_i is a column block (a view)
of X^T dy. One wide GEMM keeps a core busier than n narrow ones, which matters
most at small widths such as d_model = 256.
"""
from typing import NamedTuple

from npformer import ops  # the ops it uses, read at call time (npformer/ops/__init__.py)
from npformer.backend import backend_of


class LinearCache(NamedTuple):
    x: object  # (..., d_in): the input, needed for dW
    W: object  # (d_in, d_out): needed for dx


def linear_forward(x, W, b):
    """y = x W + b. Returns ``(y, cache)``."""
    if W.ndim != 2 or x.shape[-1] != W.shape[0] or b.shape != W.shape[1:]:
        raise ValueError(f"linear: expected x (..., d_in), W (d_in, d_out), b (d_out,); "
                         f"got x {x.shape}, W {W.shape}, b {b.shape}")
    d_in, d_out = W.shape
    # one (M, d_in) x (d_in, d_out) GEMM instead of a batch of small ones
    y = (x.reshape(-1, d_in) @ W).reshape(*x.shape[:-1], d_out)  # (..., d_out)
    y += b
    return y, LinearCache(x, W)


def linear_backward(dy, cache: LinearCache):
    """Returns ``(dx, dW, db)`` for upstream ``dy`` of shape (..., d_out)."""
    x, W = cache
    d_in, d_out = W.shape
    dy2 = dy.reshape(-1, d_out)  # (M, d_out)
    dx = (dy2 @ W.T).reshape(*dy.shape[:-1], d_in)  # (..., d_in)
    dW = x.reshape(-1, d_in).T @ dy2  # (d_in, d_out)
    db = dy2.sum(axis=0)  # (d_out,)
    return dx, dW, db


class FusedLinearCache(NamedTuple):
    linear: LinearCache  # of the one GEMM against [W_1 | ... | W_n]
    widths: tuple        # d_1, ..., d_n: where dy and dW are cut


def _check_fused(x, Ws, bs):
    if len(Ws) != len(bs) or not Ws or any(
            W.ndim != 2 or W.shape[0] != x.shape[-1] or b.shape != W.shape[1:] for W, b in zip(Ws, bs)):
        raise ValueError(f"fused linear: expected x (..., d_in) and n >= 1 pairs W_i (d_in, d_i), b_i (d_i,); "
                         f"got x {x.shape}, W {[W.shape for W in Ws]}, b {[b.shape for b in bs]}")


def _blocks(widths):
    """The column slice of the fused output that each W_i fills."""
    start = 0
    for width in widths:
        yield slice(start, start + width)
        start += width


def fused_linear_forward(x, Ws, bs):
    """y = x [W_1 | ... | W_n] + [b_1 | ... | b_n]. Returns ``(y, cache)``."""
    _check_fused(x, Ws, bs)
    xp = backend_of(x, *Ws).xp
    y, linear = ops.linear_forward(x, xp.concatenate(Ws, axis=1), xp.concatenate(bs))  # (..., d_1 + ... + d_n)
    return y, FusedLinearCache(linear, tuple(W.shape[1] for W in Ws))


def fused_linear_backward(dy, cache: FusedLinearCache):
    """Returns ``(dx, dWs, dbs)``, dWs and dbs lists in the order of the weights."""
    dx, dW, db = ops.linear_backward(dy, cache.linear)  # dx sums the n blocks' terms in the one GEMM
    cuts = list(_blocks(cache.widths))
    return dx, [dW[:, c] for c in cuts], [db[c] for c in cuts]
