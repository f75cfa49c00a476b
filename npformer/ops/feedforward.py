"""Position-wise feed-forward network. Paper §3.3, Eq. (2).

    FFN(x) = max(0, x W_1 + b_1) W_2 + b_2
    x (B, T, d_model), W_1 (d_model, d_ff), b_1 (d_ff,), W_2 (d_ff, d_model), b_2 (d_model,)

The same two linear maps apply to every position independently.

Backward: the chain rule through the three steps, last first:
    a = x W_1 + b_1,  r = relu(a),  y = r W_2 + b_2
    dr, dW_2, db_2 = linear_backward(dy)        dr = dy W_2^T
    da = dr * [a > 0]                           relu_backward
    dx, dW_1, db_1 = linear_backward(da)        dx = da W_1^T
"""
from typing import NamedTuple

from npformer import ops  # the ops it uses, read at call time (npformer/ops/__init__.py)

PARAM_NAMES = ("W_1", "b_1", "W_2", "b_2")


class FeedForwardCache(NamedTuple):
    lin1: object
    relu: object
    lin2: object


def feedforward_forward(x, p):
    """FFN(x) with ``p`` holding W_1, b_1, W_2, b_2."""
    a, lin1 = ops.linear_forward(x, p["W_1"], p["b_1"])  # (B, T, d_ff)
    r, relu = ops.relu_forward(a)  # (B, T, d_ff)
    y, lin2 = ops.linear_forward(r, p["W_2"], p["b_2"])  # (B, T, d_model)
    return y, FeedForwardCache(lin1, relu, lin2)


def feedforward_backward(dy, cache: FeedForwardCache):
    """Returns ``(dx, grads)`` with grads keyed W_1, b_1, W_2, b_2."""
    dr, dW_2, db_2 = ops.linear_backward(dy, cache.lin2)  # (B, T, d_ff)
    da = ops.relu_backward(dr, cache.relu)
    dx, dW_1, db_1 = ops.linear_backward(da, cache.lin1)  # (B, T, d_model)
    return dx, {"W_1": dW_1, "b_1": db_1, "W_2": dW_2, "b_2": db_2}
