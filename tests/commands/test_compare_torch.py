"""``npformer compare-torch``: npformer's gradients against PyTorch's stock layers (needs torch)."""
import json
import math

import pytest

from npformer.cli import main

torch = pytest.importorskip("torch")


def run_json(capsys, *argv):
    code = main(["compare-torch", "--json", *argv])
    return code, json.loads(capsys.readouterr().out.splitlines()[-1])


def test_whole_model_gradients_match_pytorch_for_post_and_pre(capsys):
    code, result = run_json(capsys)
    assert code == 0 and result["passed"] and result["dtype"] == "float64"
    assert set(result["summary"]) == {"post", "pre"}
    for norm, s in result["summary"].items():
        assert s["max_rel_grad_diff"] <= 1e-10 and s["logits_max_rel_diff"] <= 1e-10, norm
        assert s["loss_rel_diff"] <= 1e-10 and s["loss_npformer"] > 0
    rows = result["rows"]
    post = [r for r in rows if r["norm"] == "post"]
    pre = [r for r in rows if r["norm"] == "pre"]
    assert len(pre) == len(post) + 4  # the two stacks' final LayerNorms
    assert {r["name"] for r in pre} - {r["name"] for r in post} == {
        "encoder.norm.gamma", "encoder.norm.beta", "decoder.norm.gamma", "decoder.norm.beta"}
    zero = [r for r in rows if r["zero_by_math"]]
    assert zero and all(r["name"].endswith(".b_k") and r["max_rel_diff"] is None for r in zero)
    assert all(r["max_abs_diff"] < 1e-12 for r in zero)
    assert all(r["passed"] for r in rows)


def test_a_wrong_backward_is_caught(capsys, monkeypatch):
    """LayerNorm's input gradient without gamma: right only when gamma == 1."""
    def without_gamma(dy, cache):
        xhat, rstd, gamma = cache
        dbeta = dy.reshape(-1, dy.shape[-1]).sum(axis=0)
        dgamma = (dy * xhat).reshape(-1, dy.shape[-1]).sum(axis=0)
        dx = rstd * (dy - dy.mean(axis=-1, keepdims=True) - xhat * (dy * xhat).mean(axis=-1, keepdims=True))
        return dx, dgamma, dbeta

    monkeypatch.setattr("npformer.ops.layernorm_backward", without_gamma)
    code, result = run_json(capsys, "--norm", "pre")
    assert code == 1 and not result["passed"]
    assert result["summary"]["pre"]["max_rel_grad_diff"] > 1e-3


def test_text_report(capsys):
    assert main(["compare-torch", "--norm", "post", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "post-LN" in out and "zero by the math" in out and "all within tolerance" in out
    assert not math.isnan(float(out.split("max relative gradient difference: ")[1].split()[0]))
