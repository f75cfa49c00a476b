"""The model runs the ops the docs derive: in one training step (post-LN and pre-LN)
every op module's forward and backward are called, so the code a reader studies
in npformer/ops/ is the code that trains. An op whose math the model wrote again
inline would show up here as never called."""
import sys
from collections import Counter

import numpy as np
import pytest

from npformer import ops
from npformer.verify.model_cases import TINY
from npformer.model.params import init_params
from npformer.model.transformer import loss_and_grads

# every op module of npformer/ops, by the functions it defines
OP_FUNCTIONS = sorted(n for n in ops.__all__ if n.endswith(("_forward", "_backward")))
# named fast variants that the model calls instead of their plain form; each is
# tested against the plain form in its op's own tests
FAST_VARIANT_OF = {"linear_forward": "fused_linear_forward", "linear_backward": "fused_linear_backward"}


def counting(monkeypatch) -> Counter:
    """Replace every op function, wherever a npformer module bound it, by a wrapper
    that counts its calls."""
    calls = Counter()
    for name in OP_FUNCTIONS:
        real = getattr(ops, name)

        def wrapper(*args, _real=real, _name=name, **kwargs):
            calls[_name] += 1
            return _real(*args, **kwargs)
        for module in list(sys.modules.values()):
            if getattr(module, "__name__", "").startswith("npformer") and getattr(module, name, None) is real:
                monkeypatch.setattr(module, name, wrapper)
    return calls


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_one_training_step_calls_every_op_forward_and_backward(monkeypatch, norm):
    cfg = TINY.replace(norm=norm, p_drop=0.1)
    params = init_params(cfg, seed=0, dtype="float64")
    rng = np.random.default_rng(0)
    src, tgt = rng.integers(3, cfg.vocab_size, (3, 5)), rng.integers(3, cfg.vocab_size, (3, 5))
    calls = counting(monkeypatch)
    loss_and_grads(params, cfg, src, tgt, tgt, np.random.default_rng(1))
    missing = [n for n in OP_FUNCTIONS if not calls[n] and not calls[FAST_VARIANT_OF.get(n, "")]]
    assert not missing, f"the model never calls {missing}; its math is then written elsewhere"


def test_the_counter_sees_an_op_that_is_bypassed(monkeypatch):
    """The check can fail: an op replaced by inline math is reported as never called."""
    from npformer.ops.softmax import SoftmaxCache
    calls = counting(monkeypatch)

    def inline_softmax(z, mask=None, out=None):
        p = ops.softmax_terms(z, mask, out)[0]
        return p, SoftmaxCache(p)
    monkeypatch.setattr(ops, "softmax_forward", inline_softmax)  # where attention reads it
    cfg = TINY.replace(p_drop=0.0)
    params = init_params(cfg, seed=0, dtype="float64")
    src = np.full((2, 4), 3)
    loss_and_grads(params, cfg, src, src, src)
    assert calls["softmax_backward"] > 0 and calls["softmax_forward"] == 0
