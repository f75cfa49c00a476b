"""A tiny random model for the decoding tests (float64), on the backend under test.

Random weights plus noise (gamma != 1, biases != 0). The EOS embedding is mixed
with token 3's, so that greedy decoding stops at different steps for different
sentences (an untrained model otherwise rarely emits EOS mid-sentence).
Sources have different lengths, padded with PAD = 0. Every test using ``tiny``
runs for post-LN and for pre-LN.
"""
import numpy as np
import pytest

from npformer.model.config import TransformerConfig
from npformer.model.params import init_params

CFG = TransformerConfig(vocab_size=17, d_model=16, h=2, d_ff=32, n_layers=2, max_len=64)
SRC_LENGTHS = [7, 5, 3, 6, 2, 7]


def tiny_params(be, cfg=CFG, seed=1):
    params = init_params(cfg, seed=seed, dtype="float64", backend=be)
    rng = np.random.default_rng(seed + 100)
    params = {k: v + be.asarray(rng.standard_normal(v.shape) * 0.3) for k, v in params.items()}
    E = params["embed"]
    E[cfg.eos_id] = 0.7 * E[3] + 0.7 * E[cfg.eos_id]
    return params


def tiny_src(be, cfg=CFG, lengths=SRC_LENGTHS, seed=3):
    """(B, S) ids in [3, V), sentence b padded after lengths[b] tokens."""
    rng = np.random.default_rng(seed + 100)
    src = rng.integers(3, cfg.vocab_size, (len(lengths), max(lengths)))
    for b, n in enumerate(lengths):
        src[b, n:] = cfg.pad_id
    return be.asarray(src)


def tiny_pre_params(be, cfg, seed=4, gain=5.0):
    """Pre-LN's residual stream is x + sum of sublayer outputs, and at this init the
    embeddings dominate it: each output token then depends on the input token
    alone, and greedy outputs either end at once or never. Larger sublayer
    outputs (W_o, W_2 times ``gain``) give outputs that end at different steps."""
    params = tiny_params(be, cfg, seed)
    return {k: v * gain if k.endswith((".W_o", ".W_2")) else v for k, v in params.items()}


@pytest.fixture(params=["post", "pre"])
def tiny(be, request):
    """(cfg, params, src) on the backend under test, for each LayerNorm placement."""
    cfg = CFG.replace(norm=request.param)
    params = tiny_params(be, cfg) if cfg.norm == "post" else tiny_pre_params(be, cfg)
    return cfg, params, tiny_src(be, cfg)
