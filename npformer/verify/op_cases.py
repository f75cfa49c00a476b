"""The gradient checks that ``npformer gradcheck`` runs: one small float64 case per op.

Each case is built so that a wrong backward cannot pass: batch >= 2 (a gradient
divided by the batch size shows), a random upstream gradient (never ones, which
hides an error shared by a row), non-trivial parameters (gamma != 1, so a
LayerNorm gradient that drops gamma shows), inputs away from ReLU's kink (where
finite differences are meaningless), and masks that really mask something.
Tests reuse these builders with shapes drawn by hypothesis.
"""
from __future__ import annotations

import numpy as np

from npformer import ops
from npformer.backend import get_backend
from npformer.verify.gradcheck import check_gradients
from npformer.verify.model_cases import run_model_checks
from npformer.model.masks import lookahead_mask


def _randn(rng, be, *shape, scale=1.0):
    return be.asarray(rng.standard_normal(shape) * scale, dtype="float64")


def length_mask(lengths, T, xp):
    """(B, 1, 1, T) boolean: key t of sentence b is real iff t < lengths[b]."""
    return (xp.arange(T)[None, :] < xp.asarray(lengths)[:, None])[:, None, None, :]


def op_cases(be=None, seed=0, B=2, T=5, S=4, d_model=8, h=2, d_ff=12, V=11):
    """name -> (forward, backward, inputs) for every op, on backend ``be``."""
    be = get_backend(be)
    xp = be.xp
    rng = np.random.default_rng(seed)
    r = lambda *s, scale=1.0: _randn(rng, be, *s, scale=scale)  # noqa: E731
    attn_params = lambda: {k: (r(d_model, d_model, scale=d_model ** -0.5) if k[0] == "W" else r(d_model, scale=0.1))  # noqa: E731
                           for k in ops.multihead.PARAM_NAMES}
    # ReLU input kept at least 0.1 away from the kink at 0
    relu_x = r(B, T, d_model)
    relu_x = xp.where(xp.abs(relu_x) < 0.1, relu_x + xp.sign(relu_x + 1e-12) * 0.2, relu_x)
    keep = be.asarray(rng.random((B, T, d_model)) >= 0.3)
    ids = be.asarray(rng.integers(0, V, (B, T)))
    ids[0, :2] = 3  # a repeated token: the scatter-add must accumulate it
    pe = ops.sinusoidal_table(16, d_model, xp, "float64")
    pad = length_mask([T, T - 2], T, xp)  # (B, 1, 1, T), masks the end of sentence 2
    self_mask = pad & lookahead_mask(T, xp)
    cross_mask = length_mask([S, S - 1], S, xp)
    targets = be.asarray(rng.integers(1, V, (B, T)))
    targets[1, -2:] = 0  # padding targets are ignored
    ffn = {"W_1": r(d_model, d_ff, scale=d_model ** -0.5), "b_1": r(d_ff, scale=0.1),
           "W_2": r(d_ff, d_model, scale=d_ff ** -0.5), "b_2": r(d_model, scale=0.1)}

    def split(x):  # (B, T, d_model) -> (B, h, T, d_k)
        return x.reshape(B, -1, h, d_model // h).transpose(0, 2, 1, 3).copy()

    return {
        "linear": (ops.linear_forward, ops.linear_backward,
                   dict(x=r(B, T, d_model), W=r(d_model, d_ff), b=r(d_ff))),
        "relu": (ops.relu_forward, ops.relu_backward, dict(x=relu_x)),
        "softmax": (ops.softmax_forward, ops.softmax_backward, dict(z=r(B, T, V, scale=2.0))),
        "layernorm": (ops.layernorm_forward, ops.layernorm_backward,
                      dict(x=r(B, T, d_model), gamma=1.0 + r(d_model, scale=0.5), beta=r(d_model, scale=0.5))),
        "dropout": (ops.dropout_forward, ops.dropout_backward, dict(x=r(B, T, d_model), p=0.3, keep=keep)),
        "residual": (ops.residual_forward, ops.residual_backward, dict(x=r(B, T, d_model), s=r(B, T, d_model))),
        "embedding": (ops.embedding_forward, ops.embedding_backward,
                      dict(ids=ids, E=r(V, d_model), scale=d_model ** 0.5)),
        "positional": (ops.positional_forward, ops.positional_backward, dict(x=r(B, T, d_model), table=pe)),
        "attention": (ops.attention_forward, ops.attention_backward,
                      dict(Q=split(r(B, T, d_model)), K=split(r(B, T, d_model)), V=split(r(B, T, d_model)),
                           mask=self_mask)),
        "self_attention": (ops.self_attention_forward, ops.self_attention_backward,
                           dict(x=r(B, T, d_model), p=attn_params(), h=h, mask=self_mask)),
        "cross_attention": (ops.cross_attention_forward, ops.cross_attention_backward,
                            dict(x=r(B, T, d_model), memory=r(B, S, d_model), p=attn_params(), h=h,
                                 mask=cross_mask)),
        "feedforward": (ops.feedforward_forward, ops.feedforward_backward, dict(x=r(B, T, d_model), p=ffn)),
        "cross_entropy": (ops.cross_entropy_forward, ops.cross_entropy_backward,
                          dict(logits=r(B, T, V, scale=2.0), targets=targets, pad_id=0, eps_ls=0.1)),
    }


def run_op_checks(be=None, seed=0):
    """Check every op; returns a list of GradCheckResult."""
    return [check_gradients(f, b, inputs, name, constants=CONSTANTS.get(name, ()))
            for name, (f, b, inputs) in op_cases(be, seed).items()]


CONSTANTS = {"positional": ("table",)}  # float inputs that are fixed, not learned


def run_all_checks(be=None, seed=0, quick=False):
    """Every op, then (unless ``quick``) every layer type and the whole model."""
    results = run_op_checks(be, seed)
    if not quick:
        results += run_model_checks(be, seed)
    return results
