"""Pre-LN (``norm="pre"``): parameters, the identity path, checkpoints, and the CLI."""
import json

import numpy as np
import pytest

from npformer import checkpoint
from npformer.cli import main
from npformer.verify.model_cases import TINY, perturbed_params, tiny_batch
from npformer.model.config import TransformerConfig, preset
from npformer.model.encoder import encoder_layer_backward, encoder_layer_forward
from npformer.model.masks import padding_mask
from npformer.model.params import count_params, init_params, param_shapes
from npformer.model.sublayer import subdict
from npformer.model.transformer import loss_and_grads, transformer_forward

PRE = TINY.replace(norm="pre")


def test_pre_ln_adds_one_final_layernorm_per_stack():
    post, pre = param_shapes(TINY), param_shapes(PRE)
    extra = {k: pre[k] for k in set(pre) - set(post)}
    assert extra == {f"{s}.norm.{p}": (TINY.d_model,) for s in ("encoder", "decoder") for p in ("gamma", "beta")}
    assert set(post) <= set(pre)
    counts = count_params(PRE)
    assert counts["per_component"]["encoder"]["final_norm"] == 2 * TINY.d_model
    assert counts["summary"]["total"] == count_params(TINY)["summary"]["total"] + 4 * TINY.d_model


def test_norm_must_be_post_or_pre():
    with pytest.raises(ValueError, match="norm must be 'post' .* or 'pre', got 'mid'"):
        TransformerConfig(norm="mid")
    assert TransformerConfig().norm == "post"


def test_pre_ln_passes_the_gradient_to_the_layer_input_unchanged(be):
    """x + Sublayer(LN(x)): dx = dy + (the sublayer's path). With the sublayers' output
    weights at zero that path carries nothing, so dx == dy exactly; post-LN's dx is LN'(dy)."""
    rng = np.random.default_rng(0)
    x = be.asarray(rng.standard_normal((2, 5, TINY.d_model)))
    dy = be.asarray(rng.standard_normal((2, 5, TINY.d_model)))
    mask = padding_mask(be.asarray(np.ones((2, 5), dtype=np.int64)))
    for cfg in (TINY, PRE):
        p = subdict(perturbed_params(cfg, be, 0), "encoder.0.")
        p["self_attn.W_o"] = p["self_attn.W_o"] * 0
        p["ffn.W_2"] = p["ffn.W_2"] * 0
        _, cache = encoder_layer_forward(x, p, cfg.h, mask, norm=cfg.norm)
        dx, grads = encoder_layer_backward(dy, cache)
        assert set(grads) == set(p)
        if cfg.norm == "pre":
            np.testing.assert_array_equal(be.to_host(dx), be.to_host(dy))
        else:
            assert np.abs(be.to_host(dx) - be.to_host(dy)).max() > 0.1


def test_pre_and_post_differ_and_every_pre_parameter_gets_a_gradient(be):
    params = perturbed_params(PRE, be, 1)
    src, tgt_in, tgt_out = tiny_batch(PRE, be)
    post_params = {k: v for k, v in params.items() if ".norm." not in k}
    pre_logits, _ = transformer_forward(params, PRE, src, tgt_in)
    post_logits, _ = transformer_forward(post_params, TINY, src, tgt_in)
    assert np.abs(be.to_host(pre_logits) - be.to_host(post_logits)).max() > 0.1
    _, grads, _ = loss_and_grads(params, PRE, src, tgt_in, tgt_out)
    assert set(grads) == set(params)
    for k in ("encoder.norm.gamma", "decoder.norm.beta"):
        assert np.abs(be.to_host(grads[k])).max() > 0


def test_pre_ln_checkpoint_round_trip_and_older_checkpoints_load_as_post(tmp_path):
    pre = preset("tiny", vocab_size=12, norm="pre")
    params = init_params(pre, seed=0)
    checkpoint.save(tmp_path / "pre.npz", params, pre)
    ck = checkpoint.load(tmp_path / "pre.npz")
    assert ck.config.norm == "pre" and "decoder.norm.gamma" in ck.params

    post = preset("tiny", vocab_size=12)
    checkpoint.save(tmp_path / "post.npz", init_params(post, seed=0), post)
    arrays = checkpoint.read_arrays(tmp_path / "post.npz")
    meta = json.loads(arrays["meta"].tobytes())
    del meta["config"]["norm"]  # as written before the option existed
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(tmp_path / "older.npz", **arrays)
    assert checkpoint.load(tmp_path / "older.npz").config == post


def test_info_and_train_take_norm_pre(tmp_path, capsys):
    assert main(["info", "--preset", "tiny", "--vocab-size", "24", "--norm", "pre", "--json"]) == 0
    info = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert info["config"]["norm"] == "pre" and info["per_component"]["decoder"]["final_norm"] == 128
    run = str(tmp_path / "run")
    argv = ["train", "--task", "copy", "--vocab-size", "10", "--min-len", "2", "--max-len", "5",
            "--batch-size", "8", "--warmup", "10", "--no-progress", "--out", run, "--json"]
    assert main([*argv, "--steps", "3", "--norm", "pre"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["steps"] == 3
    assert checkpoint.load(f"{run}/last.npz").config.norm == "pre"
    assert main([*argv, "--steps", "4", "--resume"]) == 0  # keeps the run's norm
    capsys.readouterr()
    assert main([*argv, "--steps", "5", "--resume", "--norm", "post"]) == 2
    assert "--norm post (the run has pre)" in capsys.readouterr().err
