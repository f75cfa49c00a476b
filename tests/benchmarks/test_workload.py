"""The benchmark workload (benchmarks/workload.py): npformer's preset table, the
random padded batches and the matmul FLOP count. NumPy only."""
import os
import sys

import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from benchmarks import workload  # noqa: E402
from npformer.model.config import PRESETS, preset  # noqa: E402
from npformer.special_tokens import BOS_ID  # noqa: E402


def test_model_dims_reads_npformers_presets():
    for name, p in PRESETS.items():
        dims = workload.model_dims(name)
        assert dims == {k: p[k] for k in ("n_layers", "d_model", "h", "d_ff", "p_drop")}
    assert workload.model_dims("base") == dict(n_layers=6, d_model=512, h=8, d_ff=2048, p_drop=0.1)
    # A TransformerConfig and a dict with npformer's keys give the same dims.
    cfg = preset("small", vocab_size=100, p_drop=0.0)
    assert workload.model_dims(cfg) == dict(workload.model_dims("small"), p_drop=0.0)
    assert workload.model_dims(dict(n_layers=1, d_model=4, h=2, d_ff=8))["p_drop"] == 0.1
    with pytest.raises(ValueError, match="n_layers"):
        workload.model_dims(dict(N=1, d_model=4, h=2, d_ff=8))   # the old key
    with pytest.raises(ValueError, match="unknown preset"):
        workload.model_dims("huge")


def test_train_flops_hand_count():
    # N=1, d=4, h=2, d_ff=8, B=2, S=3, T=5, V=10, counted term by term:
    N, d, f, B, S, T, V = 1, 4, 8, 2, 3, 5, 10
    cfg = dict(n_layers=N, d_model=d, h=2, d_ff=f)
    enc = 4 * (2 * B * S * d * d) + 2 * (2 * B * S * S * d) + 2 * (2 * B * S * d * f)
    dec_self = 4 * (2 * B * T * d * d) + 2 * (2 * B * T * T * d)
    dec_cross = 2 * (2 * B * T * d * d) + 2 * (2 * B * S * d * d) + 2 * (2 * B * T * S * d)
    dec_ffn = 2 * (2 * B * T * d * f)
    out = 2 * B * T * d * V
    fwd = enc + dec_self + dec_cross + dec_ffn + out
    # enc 768 + 288 + 768; dec self 1280 + 800; cross 640 + 384 + 480; ffn 1280; out 800
    assert fwd == 7488
    assert workload.forward_flops(cfg, B, S, T, V) == fwd
    assert workload.train_flops(cfg, B, S, T, V) == 3 * fwd
    parts = workload.forward_flops(cfg, B, S, T, V, breakdown=True)
    assert parts["total"] == fwd and parts["output_proj"] == out
    # N layers scale everything but the output projection.
    assert (workload.forward_flops(dict(cfg, n_layers=3), B, S, T, V)
            == 3 * (fwd - out) + out)


def test_train_flops_tiny_preset():
    # tiny: N=2, d=64, d_ff=256; B=8, S=T=64, V=8192.
    d, f, L, B, V = 64, 256, 64, 8, 8192
    per_layer_enc = 8 * B * L * d * d + 4 * B * L * L * d + 4 * B * L * d * f
    per_layer_dec = per_layer_enc + 8 * B * L * d * d + 4 * B * L * L * d
    fwd = 2 * (per_layer_enc + per_layer_dec) + 2 * B * L * d * V
    assert workload.train_flops("tiny", 8, 64, 64, 8192) == 3 * fwd
    assert workload.train_flops(preset("tiny", vocab_size=8192), 8, 64, 64, 8192) == 3 * fwd


def test_make_batch_shapes_and_padding():
    src, tgt_in, tgt_out = workload.make_batch(B=4, S=8, T=12, V=50, seed=1)
    assert src.shape == (4, 8) and tgt_in.shape == tgt_out.shape == (4, 12)
    assert src.dtype == tgt_in.dtype == tgt_out.dtype == "int64"
    assert (tgt_in[:, 0] == BOS_ID).all()
    assert (tgt_in[:, 1:9] == tgt_out[:, :8]).all()          # teacher forcing shift
    assert (src[:2] != 0).all() and (src[2:, 6:] == 0).all() and (src[2:, :6] != 0).all()
    assert (tgt_out[2:, 9:] == 0).all() and (tgt_out[2:, :9] != 0).all()
    assert (tgt_in[2:, 9:] == 0).all()
    assert src.max() < 50 and tgt_out.max() < 50
    assert workload.batch_tokens(src, tgt_out) == {"src": 28, "tgt": 42, "total": 70}
