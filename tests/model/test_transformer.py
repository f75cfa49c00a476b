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


def test_a_layer_called_without_dropout_arguments_is_the_post_ln_layer_at_inference(be):
    """encoder_layer_forward and decoder_layer_forward default to p_drop = 0, no rng and the paper's post-LN."""
    from npformer.model.decoder import decoder_layer_forward
    from npformer.model.encoder import encoder_layer_forward
    from npformer.model.sublayer import subdict
    params = perturbed_params(TINY, be, 2)
    src, tgt_in, _ = tiny_batch(TINY, be)
    src_mask, tgt_mask = padding_mask(src), target_mask(tgt_in)
    rng = np.random.default_rng(3)
    x = be.asarray(rng.standard_normal((*src.shape, TINY.d_model)))
    y = be.asarray(rng.standard_normal((*tgt_in.shape, TINY.d_model)))
    enc, dec = subdict(params, "encoder.0."), subdict(params, "decoder.0.")
    memory, _ = encoder_layer_forward(x, enc, TINY.h, src_mask)
    explicit, _ = encoder_layer_forward(x, enc, TINY.h, src_mask, 0.0, None, "post")
    np.testing.assert_array_equal(be.to_host(memory), be.to_host(explicit))
    out, _ = decoder_layer_forward(y, memory, dec, TINY.h, tgt_mask, src_mask)
    explicit, _ = decoder_layer_forward(y, memory, dec, TINY.h, tgt_mask, src_mask, 0.0, None, "post")
    np.testing.assert_array_equal(be.to_host(out), be.to_host(explicit))


def test_validate_ids_refuses_what_the_model_cannot_read():
    """(B, L) integer ids with B, L >= 1, L <= max_len, values in [0, V): accepted at every bound,
    refused one step past it, with the argument's name and the offending numbers."""
    from npformer.backend import get_backend
    from npformer.model.transformer import validate_ids
    from npformer.cupysim import host_reads
    V, max_len = 5, 3
    for ok in ([[0, 4, 2]], [[1]], [[1, 2]] * 6):  # ids 0 and V - 1, L = max_len, L = 1, B > max_len
        validate_ids(np.array(ok), "src", V, max_len)
    refused = [
        (np.array([[1.0, 2.0]]), TypeError, "src: expected an integer array of token ids, got float64"),
        ([[1, 2]], TypeError, "src: expected an integer array of token ids, got list"),
        (np.array([1, 2]), ValueError, r"src: expected shape \(batch, length\), got \(2,\)"),
        (np.zeros((0, 2), dtype=int), ValueError, r"src: empty batch or sequence, shape \(0, 2\)"),
        (np.zeros((2, 0), dtype=int), ValueError, r"src: empty batch or sequence, shape \(2, 0\)"),
        (np.ones((1, 4), dtype=int), ValueError, "src: length 4 exceeds the positional table's max_len=3"),
        (np.array([[1, -1, 2]]), ValueError, r"src: token ids must be in \[0, 5\), got values in \[-1, 2\]"),
        (np.array([[1, 5, 2]]), ValueError, r"src: token ids must be in \[0, 5\), got values in \[1, 5\]"),
    ]
    for ids, error, message in refused:
        with pytest.raises(error, match=message):
            validate_ids(ids, "src", V, max_len)
    # on a device the values are not read back (the caller checked its host arrays); the shape still is
    be = get_backend("cupysim")
    with host_reads() as reads:
        validate_ids(be.asarray(np.array([[1, 9]])), "src", V, max_len)
    assert len(reads) == 0, reads
    with pytest.raises(ValueError, match="length 4 exceeds"):
        validate_ids(be.asarray(np.ones((1, 4), dtype=int)), "src", V, max_len)


def test_validate_batch_counts_the_targets_and_refuses_mismatched_shapes():
    from npformer.model.transformer import validate_batch
    cfg = TINY
    src, tgt_in, tgt_out = (np.array(a) for a in ([[3, 4, 0]], [[1, 5]], [[5, 2]]))
    assert validate_batch(cfg, src, tgt_in, tgt_out) == 2
    assert validate_batch(cfg, src, tgt_in, np.array([[5, cfg.pad_id]])) == 1  # one target is enough
    with pytest.raises(ValueError, match="every target is padding"):
        validate_batch(cfg, src, tgt_in, np.full((1, 2), cfg.pad_id))
    for s, ti, to in ((src, tgt_in, np.array([[5, 2, 2]])),  # tgt_out one longer, same batch size
                      (np.array([[3, 4, 0]] * 2), tgt_in, tgt_out)):  # src two sentences, targets one
        with pytest.raises(ValueError, match="must have one batch size, and tgt_in and tgt_out one length"):
            validate_batch(cfg, s, ti, to)


def test_the_embedding_is_scaled_by_sqrt_d_model_then_gets_the_positional_encoding(be):
    """§3.4-3.5: sqrt(d_model) * E[ids] + PE[offset : offset + L], no dropout without an rng."""
    from npformer.model.transformer import embed_backward, embed_forward, positional_table
    from npformer.ops.positional import sinusoidal_table
    cfg = TINY
    rng = np.random.default_rng(4)
    E, ids = rng.standard_normal((cfg.vocab_size, cfg.d_model)), rng.integers(0, cfg.vocab_size, (2, 3))
    table = positional_table(cfg, be.xp, "float64")
    pe = sinusoidal_table(cfg.max_len, cfg.d_model, np, "float64")
    for offset in (0, 5):
        x, cache = embed_forward(be.asarray(ids), be.asarray(E), cfg, table, offset=offset)
        np.testing.assert_allclose(be.to_host(x), cfg.d_model ** 0.5 * E[ids] + pe[offset:offset + 3], rtol=1e-13)
    dx = rng.standard_normal((2, 3, cfg.d_model))
    dE = be.to_host(embed_backward(be.asarray(dx), cache))
    expected = np.zeros_like(E)
    np.add.at(expected, ids.reshape(-1), cfg.d_model ** 0.5 * dx.reshape(-1, cfg.d_model))
    np.testing.assert_allclose(dE, expected, rtol=1e-12, atol=1e-14)


def test_transformer_forward_names_the_two_batch_sizes():
    from npformer.model.params import init_params
    params = init_params(TINY, dtype="float64")
    with pytest.raises(ValueError, match="src and tgt_in: batch sizes differ, 2 vs 1"):
        transformer_forward(params, TINY, np.ones((2, 3), dtype=int), np.ones((1, 4), dtype=int))


def test_loss_and_grads_defaults_to_the_gradient_of_the_loss_itself(be):
    """dloss = 1 unless told: the gradients are of the loss, and dloss scales them linearly."""
    params = perturbed_params(TINY, be, 3)
    src, tgt_in, tgt_out = tiny_batch(TINY, be)
    loss, grads, n = loss_and_grads(params, TINY, src, tgt_in, tgt_out)
    _, one, _ = loss_and_grads(params, TINY, src, tgt_in, tgt_out, dloss=1.0)
    _, half, _ = loss_and_grads(params, TINY, src, tgt_in, tgt_out, dloss=0.5)
    for k in params:
        np.testing.assert_array_equal(be.to_host(grads[k]), be.to_host(one[k]))
        np.testing.assert_allclose(be.to_host(half[k]), 0.5 * be.to_host(one[k]), rtol=1e-12, atol=1e-15)


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


def test_every_preset_is_pinned():
    """base and big are Table 3's (big: N = 6 like base); small and tiny are the shapes the recorded
    figures (docs/tuning.md, benchmarks/README.md) were measured at: a silent change would void them."""
    assert PRESETS == {
        "base": dict(d_model=512, h=8, d_ff=2048, n_layers=6, p_drop=0.1, eps_ls=0.1),
        "big": dict(d_model=1024, h=16, d_ff=4096, n_layers=6, p_drop=0.3, eps_ls=0.1),
        "small": dict(d_model=256, h=4, d_ff=1024, n_layers=3, p_drop=0.1, eps_ls=0.1),
        "tiny": dict(d_model=64, h=4, d_ff=256, n_layers=2, p_drop=0.1, eps_ls=0.1, max_len=256),
    }
    assert preset("tiny", h=2).h == 2 and preset("tiny").max_len == 256 and preset("small").max_len == 512


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


@pytest.mark.parametrize("field", ["vocab_size", "d_model", "h", "d_ff", "n_layers", "max_len"])
def test_config_sizes_must_be_positive_integers(field):
    """Every size is refused when 0, negative, a bool or a float, and 1 is accepted where the other
    rules allow it (d_model must be even, and a vocabulary of 1 holds only pad = bos = eos = 0)."""
    from npformer.model.config import TransformerConfig
    ok = dict(vocab_size=4, d_model=2, h=1, d_ff=1, n_layers=1, max_len=1)
    smallest = dict(ok, pad_id=0, bos_id=0, eos_id=0, vocab_size=1) if field == "vocab_size" else ok
    assert getattr(TransformerConfig(**smallest), field) == (2 if field == "d_model" else 1)
    for bad in (0, -2, True, 2.0):
        with pytest.raises(ValueError, match=f"config: {field} must be a positive integer, got {bad!r}"):
            TransformerConfig(**{**ok, field: bad})


def test_config_refuses_rates_outside_0_to_1_and_names_its_other_rules():
    from npformer.model.config import TransformerConfig
    for rate in ("p_drop", "eps_ls"):
        assert getattr(TransformerConfig(**{rate: 0.0}), rate) == 0.0  # 0 is allowed: no dropout, no smoothing
        assert getattr(TransformerConfig(**{rate: 0.999}), rate) == 0.999
        for bad in (-0.1, 1.0, 1.5):
            with pytest.raises(ValueError, match=rf"config: {rate} must be in \[0, 1\), got {bad}"):
                TransformerConfig(**{rate: bad})
    with pytest.raises(ValueError, match="d_model must be even for the sinusoidal encoding, got 9"):
        TransformerConfig(d_model=9, h=3)
    with pytest.raises(ValueError, match="norm must be 'post'"):
        TransformerConfig(norm="Pre")
    assert TransformerConfig(norm="pre").norm == "pre"


def test_config_vocabularies_and_special_ids():
    from npformer.model.config import TransformerConfig
    # tied embeddings share one vocabulary: a different target vocabulary is refused, the same one accepted
    with pytest.raises(ValueError, match="tgt_vocab_size=9 != vocab_size=8"):
        TransformerConfig(vocab_size=8, tgt_vocab_size=9)
    assert TransformerConfig(vocab_size=8, tgt_vocab_size=8).target_vocab == 8
    untied = TransformerConfig(vocab_size=8, tgt_vocab_size=5, tie_embeddings=False)
    assert (untied.target_vocab, TransformerConfig(vocab_size=8).target_vocab) == (5, 8)
    # pad, bos and eos must be ids of both vocabularies: 0 .. min(V_src, V_tgt) - 1
    for name in ("pad_id", "bos_id", "eos_id"):
        assert getattr(TransformerConfig(vocab_size=8, **{name: 0, "pad_id" if name != "pad_id" else "bos_id": 3}),
                       name) == 0
        for bad in (-1, 5, 8):
            with pytest.raises(ValueError, match=f"config: {name}={bad} is outside the vocabulary"):
                TransformerConfig(vocab_size=8, tgt_vocab_size=5, tie_embeddings=False, **{name: bad})
    cfg = TransformerConfig(vocab_size=8, tgt_vocab_size=5, tie_embeddings=False, pad_id=4, bos_id=1, eos_id=2)
    assert cfg.pad_id == 4 and cfg.d_k == 64


def test_config_round_trips_through_a_dict_and_refuses_unknown_fields():
    from npformer.model.config import TransformerConfig
    cfg = preset("tiny", vocab_size=20)
    assert TransformerConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.replace(h=2) == preset("tiny", vocab_size=20, h=2) and cfg.h == 4
    with pytest.raises(ValueError, match=r"config: unknown fields \['colour'\]"):
        TransformerConfig.from_dict({**cfg.to_dict(), "colour": 1})


def test_d_model_not_divisible_by_h_is_refused():
    with pytest.raises(ValueError, match="d_model=10 is not divisible by h=4"):
        preset("tiny", d_model=10, h=4)
