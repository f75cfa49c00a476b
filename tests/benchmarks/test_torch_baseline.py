"""The PyTorch speed baseline (benchmarks/torch_baseline.py) is npformer's architecture:
the same parameter count, and with npformer's weights copied in (float64, dropout off)
the same loss on a padded batch. Skipped without torch."""
import math
import os
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from benchmarks import torch_baseline, workload  # noqa: E402
from npformer.model.config import preset  # noqa: E402
from npformer.model.params import init_params, param_shapes  # noqa: E402
from npformer.model.transformer import loss_and_grads  # noqa: E402
from npformer.ops.layernorm import LAYERNORM_EPS  # noqa: E402

V = 97


@pytest.fixture(autouse=True)
def _two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    yield
    torch.set_num_threads(before)


def _configs():
    # post-LN, the baseline's norm; tiny itself and small's shapes (d_model 256, d_ff 1024,
    # 4 heads) with two layers per stack
    return [preset("tiny", vocab_size=V, p_drop=0.0),
            preset("small", vocab_size=V, p_drop=0.0, n_layers=2)]


def _perturbed(cfg, seed=0):
    """npformer's init with every parameter moved off it: gamma != 1, biases != 0."""
    rng = np.random.default_rng(seed + 1)
    return {k: a + 0.1 * rng.standard_normal(a.shape)
            for k, a in init_params(cfg, seed=seed, dtype="float64").items()}


@pytest.mark.parametrize("cfg", _configs(), ids=["tiny", "small-shaped"])
def test_same_parameter_count_as_npformer(cfg):
    model = torch_baseline.build(cfg, V)
    n_npformer = sum(math.prod(s) for s in param_shapes(cfg).values())   # "embed" once: tied
    assert torch_baseline.count_params(model) == n_npformer
    # Tied: E is the only (V, d_model) matrix.
    assert sum(tuple(p.shape) == (V, cfg.d_model) for p in model.parameters()) == 1
    assert {m.eps for m in model.modules() if isinstance(m, torch.nn.LayerNorm)} == {LAYERNORM_EPS}


@pytest.mark.parametrize("cfg", _configs(), ids=["tiny", "small-shaped"])
def test_same_loss_as_npformer_with_copied_weights(cfg):
    params = _perturbed(cfg)
    src, tgt_in, tgt_out = workload.make_batch(B=4, S=12, T=10, V=V, seed=0, n_padded=2)
    loss, _, _ = loss_and_grads(params, cfg, src, tgt_in, tgt_out)

    model = torch_baseline.build(cfg, V, dtype="float64", dropout=0.0)
    assert torch_baseline.load_npformer_params(model, params, cfg) is model
    assert all(p.dtype == torch.float64 for p in model.parameters())
    model.train()
    logits = model(torch.from_numpy(src), torch.from_numpy(tgt_in))
    t_loss = torch_baseline.loss_fn(logits, torch.from_numpy(tgt_out), cfg.eps_ls).item()
    assert t_loss == pytest.approx(float(loss), rel=1e-10)


def test_load_copies_every_parameter_transposing_linears():
    cfg = _configs()[0]
    params = _perturbed(cfg)
    model = torch_baseline.load_npformer_params(torch_baseline.build(cfg, V, dtype="float64"), params, cfg)
    theirs = dict(model.named_parameters())
    pairs = torch_baseline.npformer_correspondence(cfg.n_layers)
    assert {k for k, _, _ in pairs} == set(params) and {n for _, n, _ in pairs} == set(theirs)
    for key, name, transposed in pairs:
        t = theirs[name].detach().numpy()
        assert np.array_equal(t.T if transposed else t, params[key]), key
    W_q = params["decoder.1.cross_attn.W_q"]
    assert np.array_equal(model.decoder[1].cross_attn.W_q.weight.detach().numpy(), W_q.T)


def test_load_refuses_what_does_not_fit():
    cfg = _configs()[0]
    model = torch_baseline.build(cfg, V)
    params = init_params(cfg, seed=0)
    with pytest.raises(ValueError, match="post-LN"):
        torch_baseline.load_npformer_params(model, init_params(cfg.replace(norm="pre")), cfg.replace(norm="pre"))
    with pytest.raises(ValueError, match="missing .*encoder.0.ffn.b_2"):
        torch_baseline.load_npformer_params(model, {k: a for k, a in params.items()
                                                    if k != "encoder.0.ffn.b_2"}, cfg)
    with pytest.raises(ValueError, match="n_layers=3"):
        torch_baseline.load_npformer_params(model, params, cfg.replace(n_layers=3))
    bad = dict(params, embed=params["embed"][:-1])
    with pytest.raises(ValueError, match="embed"):
        torch_baseline.load_npformer_params(model, bad, cfg)


def test_float32_model_trains_and_sdpa_matches():
    model = torch_baseline.build("tiny", 300, seed=0)
    assert model.E.shape == (300, 64) and model.E.dtype == torch.float32
    step = torch_baseline.train_step_fn(model, torch_baseline.make_optimizer(model, lr=1e-3))
    batch = workload.make_batch(B=4, S=16, T=16, V=300, seed=0)
    losses = torch_baseline.check_loss_decreases(step, batch, n_steps=5)
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]
    # Explicit attention and fused SDPA give the same forward.
    sdpa = torch_baseline.build("tiny", 300, seed=0, sdpa=True)
    sdpa.load_state_dict(model.state_dict())
    model.eval(), sdpa.eval()
    src, tgt_in, _ = (torch.from_numpy(a) for a in batch)
    with torch.no_grad():
        assert torch.allclose(model(src, tgt_in), sdpa(src, tgt_in), atol=1e-4)


def test_no_dropout_switches_every_dropout_off_and_back():
    model = torch_baseline.build("tiny", 50, dropout=0.1)
    drops = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert drops and all(m.p == 0.1 for m in drops)
    with torch_baseline.no_dropout(model):
        assert all(m.p == 0.0 for m in drops)
    assert all(m.p == 0.1 for m in drops)
