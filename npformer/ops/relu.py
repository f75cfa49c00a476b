"""ReLU, the nonlinearity inside the feed-forward net. Paper §3.3.

Forward
    y = max(0, x)                                   any shape

Backward
    dy/dx = 1 where x > 0, else 0 (we take 0 at the kink x = 0)
    dx = dy * [x > 0]
"""
from typing import NamedTuple


class ReluCache(NamedTuple):
    positive: object  # bool, same shape as x: where the gradient passes


def relu_forward(x):
    positive = x > 0
    y = x * positive  # keeps x's dtype (a bool mask never upcasts)
    return y, ReluCache(positive)


def relu_backward(dy, cache: ReluCache):
    """Returns ``dx``."""
    return dy * cache.positive
