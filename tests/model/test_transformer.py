"""The assembled model: gradient-check rows, masks, three-way tying, presets."""
import numpy as np
import pytest

from npformer.verify.model_cases import TINY, perturbed_params, run_model_checks, tiny_batch
from npformer.model.config import PRESETS, preset
from npformer.model.decoder import decoder_backward, decoder_forward
from npformer.model.encoder import encoder_backward, encoder_forward
from npformer.model.masks import padding_mask, target_mask
from npformer.model.transformer import loss_and_grads, transformer_forward


def test_every_model_gradcheck_row_passes(be):
    results = run_model_checks(be)
    rows = ["encoder_layer", "decoder_layer", "model", "model_dropout", "model_directional"]
    assert [r.name for r in results] == rows + [name + "_pre" for name in rows]
    for r in results:
        assert r.passed, (r.name, r.max_rel_error, r.errors, r.problems)


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_padded_source_positions_change_nothing_and_get_exactly_zero_gradient(be, norm):
    cfg = TINY.replace(norm=norm)
    params = perturbed_params(cfg, be, 0)
    src, tgt_in, _ = tiny_batch(cfg, be)  # sentence 1 has 2 padded source positions
    pad = be.to_host(src) == cfg.pad_id
    assert pad.any()
    rng = np.random.default_rng(1)
    x = be.asarray(rng.standard_normal((*src.shape, cfg.d_model)))
    x2 = x.copy()
    x2[be.asarray(pad)] += 5.0  # change what enters at the padded positions
    src_mask, tgt_mask = padding_mask(src), target_mask(tgt_in)
    y = be.asarray(rng.standard_normal((*tgt_in.shape, cfg.d_model)))
    outs = []
    for inp in (x, x2):
        memory, enc = encoder_forward(inp, params, cfg.n_layers, cfg.h, src_mask, norm=norm)
        out, dec = decoder_forward(y, memory, params, cfg.n_layers, cfg.h, tgt_mask, src_mask, norm=norm)
        outs.append(be.to_host(out))
        real = be.to_host(memory)[~pad]
        outs.append(real)
    assert np.array_equal(outs[0], outs[2])  # the decoder output, bit for bit
    assert np.array_equal(outs[1], outs[3])  # encoder outputs at the real positions
    _, dmemory, _ = decoder_backward(be.asarray(rng.standard_normal(outs[0].shape)), dec)
    dx, _ = encoder_backward(dmemory, enc)
    assert np.all(be.to_host(dmemory)[pad] == 0.0)
    assert np.all(be.to_host(dx)[pad] == 0.0)


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_future_target_tokens_change_nothing_earlier_and_get_exactly_zero_gradient(be, norm):
    cfg = TINY.replace(norm=norm)
    params = perturbed_params(cfg, be, 0)
    src, tgt_in, _ = tiny_batch(cfg, be)
    t = 1  # positions 0..t are the "past"
    logits, _ = transformer_forward(params, cfg, src, tgt_in)
    changed = be.to_host(tgt_in).copy()
    changed[0, t + 1:] = (changed[0, t + 1:] % (cfg.vocab_size - 4)) + 4  # other real tokens
    logits2, _ = transformer_forward(params, cfg, src, be.asarray(changed))
    assert np.array_equal(be.to_host(logits)[:, :t + 1], be.to_host(logits2)[:, :t + 1])
    assert not np.array_equal(be.to_host(logits)[0, t + 1:], be.to_host(logits2)[0, t + 1:])

    rng = np.random.default_rng(2)
    memory, _ = encoder_forward(be.asarray(rng.standard_normal((*src.shape, cfg.d_model))), params,
                                cfg.n_layers, cfg.h, padding_mask(src), norm=norm)
    y = be.asarray(rng.standard_normal((*tgt_in.shape, cfg.d_model)))
    _, dec = decoder_forward(y, memory, params, cfg.n_layers, cfg.h, target_mask(tgt_in), padding_mask(src),
                             norm=norm)
    dout = np.zeros((*tgt_in.shape, cfg.d_model))
    dout[:, :t + 1] = rng.standard_normal((tgt_in.shape[0], t + 1, cfg.d_model))  # a loss on the past only
    dy, _, _ = decoder_backward(be.asarray(dout), dec)
    assert np.all(be.to_host(dy)[:, t + 1:] == 0.0)
    assert np.any(be.to_host(dy)[:, :t + 1] != 0.0)


def test_tied_gradient_is_the_sum_of_its_three_uses(be):
    tied = TINY.replace(p_drop=0.0)
    untied = tied.replace(tie_embeddings=False)
    params = perturbed_params(tied, be, 3)
    E = params.pop("embed")
    separate = {**params, "src_embed": E.copy(), "tgt_embed": E.copy(), "out_proj": E.copy()}
    src, tgt_in, tgt_out = tiny_batch(tied, be)
    _, g_tied, _ = loss_and_grads({**params, "embed": E}, tied, src, tgt_in, tgt_out)
    _, g_sep, _ = loss_and_grads(separate, untied, src, tgt_in, tgt_out)
    total = be.to_host(g_sep["src_embed"] + g_sep["tgt_embed"] + g_sep["out_proj"])
    np.testing.assert_allclose(be.to_host(g_tied["embed"]), total, rtol=1e-12, atol=1e-15)
    for part in ("src_embed", "tgt_embed", "out_proj"):  # each use really contributes
        assert np.abs(be.to_host(g_sep[part])).max() > 0


def test_presets_are_the_papers():
    assert PRESETS["base"] == dict(d_model=512, h=8, d_ff=2048, n_layers=6, p_drop=0.1, eps_ls=0.1)
    big = preset("big")
    assert (big.d_model, big.h, big.d_ff, big.p_drop) == (1024, 16, 4096, 0.3)
    small = preset("small")
    assert (small.d_model, small.h, small.d_ff, small.n_layers) == (256, 4, 1024, 3)
    assert preset("base").tie_embeddings and preset("base").d_k == 64


def test_the_default_config_is_the_papers_base_model():
    """TransformerConfig() with no arguments is Table 3's base model, tied, post-LN, and frozen."""
    from dataclasses import FrozenInstanceError, asdict

    from npformer.model.config import TransformerConfig
    from npformer.special_tokens import BOS_ID, EOS_ID, PAD_ID
    cfg = TransformerConfig()
    assert asdict(cfg) == dict(vocab_size=8000, d_model=512, h=8, d_ff=2048, n_layers=6, p_drop=0.1, eps_ls=0.1,
                               max_len=512, tie_embeddings=True, norm="post", tgt_vocab_size=None,
                               pad_id=PAD_ID, bos_id=BOS_ID, eos_id=EOS_ID)
    with pytest.raises(FrozenInstanceError):
        cfg.d_model = 256


def test_d_model_not_divisible_by_h_is_refused():
    with pytest.raises(ValueError, match="d_model=10 is not divisible by h=4"):
        preset("tiny", d_model=10, h=4)
