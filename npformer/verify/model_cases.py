"""Gradient checks for the layers and the whole model (float64, tiny config).

Rows added to ``npformer gradcheck``:
    encoder_layer, decoder_layer        every input and parameter, every entry
    model                               loss -> every parameter tensor (sampled entries), dropout off
    model_dropout                       the same with dropout on, under a fixed mask
    model_directional                   all parameters at once along one random direction
    encoder_layer_pre, ..., model_directional_pre
                                        the same five for pre-LN (norm="pre"), whose whole-model
                                        rows include each stack's final LayerNorm

A "fixed mask" means every forward call gets the same dropout masks
(``ReplayedDraws``), so the function being differentiated is deterministic and
the finite differences are meaningful.
"""
from __future__ import annotations

import numpy as np

from npformer.backend import get_backend
from npformer.verify.gradcheck import check_directional, check_gradients
from npformer.model.config import TransformerConfig
from npformer.model.decoder import decoder_layer_backward, decoder_layer_forward
from npformer.model.encoder import encoder_layer_backward, encoder_layer_forward
from npformer.model.masks import padding_mask, target_mask
from npformer.model.params import init_params
from npformer.model.sublayer import subdict
from npformer.model.transformer import transformer_backward, transformer_forward
from npformer.ops.cross_entropy import cross_entropy_backward, cross_entropy_forward

class ReplayedDraws:
    """A dropout generator whose draws repeat at every forward call: the first call
    draws from ``backend.rng(seed)``, later ones (after ``rewind``) get copies of the
    same draws, in order. One generator per check, not one per forward (on a GPU,
    setting up a generator is costly); copies, since dropout overwrites its draw."""

    def __init__(self, backend, seed: int):
        self._rng, self._draws, self._next = backend.rng(seed), [], 0

    def rewind(self) -> "ReplayedDraws":
        self._next = 0
        return self

    def random(self, size, dtype):
        if self._next == len(self._draws):
            self._draws.append(self._rng.random(size, dtype=dtype))
        draw = self._draws[self._next]
        if draw.shape != tuple(size) or draw.dtype != dtype:
            raise ValueError(f"ReplayedDraws: call {self._next} asks for {dtype} {tuple(size)}, "
                             f"the first forward drew {draw.dtype} {draw.shape}")
        self._next += 1
        return draw.copy()


TINY = TransformerConfig(vocab_size=13, d_model=8, h=2, d_ff=16, n_layers=2, p_drop=0.2,
                         eps_ls=0.1, max_len=16)


def perturbed_params(cfg, be, seed):
    """init_params plus noise, so gamma != 1 and biases != 0 (a check must see them matter)."""
    params = init_params(cfg, seed=seed, dtype="float64", backend=be)
    rng = np.random.default_rng(seed + 1)
    return {k: v + be.asarray(rng.standard_normal(v.shape) * 0.3, dtype="float64") for k, v in params.items()}


def tiny_batch(cfg, be, seed=0, B=2, S=5, T=4):
    """Ids with padding in both source and target."""
    rng = np.random.default_rng(seed)
    src = rng.integers(3, cfg.vocab_size, (B, S))
    tgt = rng.integers(3, cfg.vocab_size, (B, T + 1))
    tgt[:, 0] = cfg.bos_id
    src[1, -2:] = cfg.pad_id
    tgt[1, -2:] = cfg.pad_id
    return be.asarray(src), be.asarray(tgt[:, :-1]), be.asarray(tgt[:, 1:])


def layer_check(cfg, side: str, be, seed: int, rng):
    """``(forward, inputs)`` for layer 0 of the ``side`` stack ("encoder" or "decoder") of
    ``perturbed_params(cfg, be, seed)``: the masks of ``tiny_batch``'s ids, dropout under a fixed
    mask, and inputs x (and memory) drawn from ``rng``, (2, S, d_model) and (2, T, d_model)."""
    params = perturbed_params(cfg, be, seed)
    src, tgt_in, _ = tiny_batch(cfg, be, seed)
    x = be.asarray(rng.standard_normal((2, src.shape[1], cfg.d_model)))
    y = be.asarray(rng.standard_normal((2, tgt_in.shape[1], cfg.d_model)))
    src_mask, tgt_mask = padding_mask(src, cfg.pad_id), target_mask(tgt_in, cfg.pad_id)
    draws = ReplayedDraws(be, seed)
    if side == "encoder":
        def encoder_layer(x, p):
            return encoder_layer_forward(x, p, cfg.h, src_mask, cfg.p_drop, draws.rewind(), cfg.norm)
        return encoder_layer, dict(x=x, p=subdict(params, "encoder.0."))

    def decoder_layer(y, memory, p):
        return decoder_layer_forward(y, memory, p, cfg.h, tgt_mask, src_mask, cfg.p_drop, draws.rewind(), cfg.norm)
    return decoder_layer, dict(y=y, memory=x, p=subdict(params, "decoder.0."))


def model_loss_fns(cfg, src, tgt_in, tgt_out, dropout_seed=None, be=None):
    """forward(params) -> (loss, cache), backward(dloss, cache) -> (grads,) for the gradchecker."""
    be = get_backend(be)
    draws = None if dropout_seed is None else ReplayedDraws(be, dropout_seed)

    def forward(params):
        rng = None if draws is None else draws.rewind()
        logits, cache = transformer_forward(params, cfg, src, tgt_in, rng)
        loss, ce = cross_entropy_forward(logits, tgt_out, cfg.pad_id, cfg.eps_ls)
        return loss, (cache, ce)

    def backward(dloss, caches):
        cache, ce = caches
        return (transformer_backward(cross_entropy_backward(dloss, ce), cache),)

    return forward, backward


def run_model_checks(be=None, seed=0, max_entries=12):
    """The rows for post-LN (the paper's), then the same rows for pre-LN with a "_pre" suffix."""
    be = get_backend(be)
    return (_model_checks(TINY, "", be, seed, max_entries)
            + _model_checks(TINY.replace(norm="pre"), "_pre", be, seed, max_entries))


def _model_checks(cfg, suffix, be, seed, max_entries):
    params = perturbed_params(cfg, be, seed)
    src, tgt_in, tgt_out = tiny_batch(cfg, be, seed)
    rng = np.random.default_rng(seed)
    # one encoder layer and one decoder layer, every entry, dropout under a fixed mask
    results = []
    for side, backward in (("encoder", encoder_layer_backward), ("decoder", decoder_layer_backward)):
        forward, inputs = layer_check(cfg, side, be, seed, rng)
        results.append(check_gradients(forward, backward, inputs, f"{side}_layer" + suffix))
    for name, drop_seed in (("model", None), ("model_dropout", seed + 7)):
        fwd, bwd = model_loss_fns(cfg, src, tgt_in, tgt_out, drop_seed, be)
        results.append(check_gradients(fwd, bwd, dict(params=params), name + suffix, max_entries=max_entries,
                                       seed=seed, h=1e-5))
    fwd, bwd = model_loss_fns(cfg, src, tgt_in, tgt_out, seed + 7, be)
    results.append(check_directional(fwd, bwd, dict(params=params), "model_directional" + suffix, seed=seed))
    return results
