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
"""
from typing import NamedTuple


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
