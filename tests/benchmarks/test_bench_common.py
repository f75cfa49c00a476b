"""Small, fast tests of the benchmark helpers (benchmarks/common.py) and the FLOP count
and PyTorch reference model of benchmarks/torch_reference.py (torch optional)."""
import json
import math
import os
import sys

import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from benchmarks import common, torch_reference  # noqa: E402


def test_median_time_returns_median_of_timed_calls(monkeypatch):
    # A fake clock: each call of fn advances it by the next duration in the list.
    durations = iter([100.0, 100.0, 3.0, 1.0, 5.0, 2.0, 4.0])   # 2 warm-ups, then 5 timed
    now = [0.0]
    monkeypatch.setattr(common.time, "perf_counter", lambda: now[0])
    calls, syncs = [], []

    def fn():
        calls.append(1)
        now[0] += next(durations)

    med, times = common.median_time(fn, warmup=2, repeats=5, sync=lambda: syncs.append(1))
    assert len(calls) == 7
    assert times == [3.0, 1.0, 5.0, 2.0, 4.0]
    assert med == 3.0
    assert len(syncs) == 6   # once before the timed calls, once after each


def test_emit_json_prints_one_valid_object_last(capsys):
    import numpy as np

    print("some earlier log line")
    result = {"step_s": np.float32(0.25), "n": np.int64(3), "bad": float("nan"),
              "arr": np.arange(3), "nested": {"x": [1.5, "a"]}}
    common.emit(result, as_json=True, table_rows=[{"a": 1}])
    lines = capsys.readouterr().out.strip().splitlines()
    obj = json.loads(lines[-1])
    assert obj == {"step_s": 0.25, "n": 3, "bad": None, "arr": [0, 1, 2],
                   "nested": {"x": [1.5, "a"]}}


def test_emit_table(capsys):
    rows = [{"name": "a", "t": 1.5}, {"name": "bbb", "t": 12345.678}]
    common.emit({"x": 1}, as_json=False, table_rows=rows, columns=["name", "t"])
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["name", "t"]
    assert out[2].split() == ["a", "1.5"] and out[3].split() == ["bbb", "12,345.7"]
    assert len({len(line) for line in out[1:]}) == 1   # right-aligned numbers: same width


def test_matmul_peak_gflops_positive():
    g = common.matmul_peak_gflops("float32", n=64, repeats=3)
    assert math.isfinite(g) and g > 0


def test_machine_info_and_rss():
    info = common.machine_info()
    for key in ("cpu_model", "cpu_cores", "avx512f", "numpy", "blas", "python",
                "platform", "OPENBLAS_CORETYPE", "thread_env"):
        assert key in info
    assert isinstance(info["avx512f"], bool)
    json.dumps(common._jsonable(info))
    assert common.peak_rss_mib() > 1.0


def test_other_load_reports_a_number_or_none():
    with common.OtherLoad() as load:
        sum(range(10000))
    assert load.wall_s > 0
    assert load.other_cores is None or load.other_cores >= 0.0


def test_set_threads_sets_env(monkeypatch):
    # Hide loaded torch/NumPy from set_threads so it only sets the env vars and leaves
    # this test process's thread pools alone (monkeypatch restores sys.modules).
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    monkeypatch.delitem(sys.modules, "numpy", raising=False)
    for k in common.THREAD_ENV_VARS:
        monkeypatch.setenv(k, "7")
    done = common.set_threads(3)
    assert all(os.environ[k] == "3" for k in common.THREAD_ENV_VARS)
    assert done["torch"] is False and done["numpy_already_imported"] is False
    with pytest.raises(ValueError):
        common.set_threads(0)


def test_train_flops_hand_count():
    # N=1, d=4, h=2, d_ff=8, B=2, S=3, T=5, V=10, counted term by term:
    N, d, f, B, S, T, V = 1, 4, 8, 2, 3, 5, 10
    cfg = dict(N=N, d_model=d, h=2, d_ff=f)
    enc = 4 * (2 * B * S * d * d) + 2 * (2 * B * S * S * d) + 2 * (2 * B * S * d * f)
    dec_self = 4 * (2 * B * T * d * d) + 2 * (2 * B * T * T * d)
    dec_cross = 2 * (2 * B * T * d * d) + 2 * (2 * B * S * d * d) + 2 * (2 * B * T * S * d)
    dec_ffn = 2 * (2 * B * T * d * f)
    out = 2 * B * T * d * V
    fwd = enc + dec_self + dec_cross + dec_ffn + out
    # enc 768 + 288 + 768; dec self 1280 + 800; cross 640 + 384 + 480; ffn 1280; out 800
    assert fwd == 7488
    assert torch_reference.forward_flops(cfg, B, S, T, V) == fwd
    assert torch_reference.train_flops(cfg, B, S, T, V) == 3 * fwd
    parts = torch_reference.forward_flops(cfg, B, S, T, V, breakdown=True)
    assert parts["total"] == fwd and parts["output_proj"] == out
    # N layers scale everything but the output projection.
    assert (torch_reference.forward_flops(dict(cfg, N=3), B, S, T, V)
            == 3 * (fwd - out) + out)


def test_train_flops_tiny_preset():
    # tiny: N=2, d=64, d_ff=256; B=8, S=T=64, V=8192.
    d, f, L, B, V = 64, 256, 64, 8, 8192
    per_layer_enc = 8 * B * L * d * d + 4 * B * L * L * d + 4 * B * L * d * f
    per_layer_dec = per_layer_enc + 8 * B * L * d * d + 4 * B * L * L * d
    fwd = 2 * (per_layer_enc + per_layer_dec) + 2 * B * L * d * V
    assert torch_reference.train_flops("tiny", 8, 64, 64, 8192) == 3 * fwd


def test_make_batch_shapes_and_padding():
    src, tgt_in, tgt_out = torch_reference.make_batch(B=4, S=8, T=12, V=50, seed=1)
    assert src.shape == (4, 8) and tgt_in.shape == tgt_out.shape == (4, 12)
    assert src.dtype == tgt_in.dtype == tgt_out.dtype == "int64"
    assert (tgt_in[:, 0] == torch_reference.BOS_ID).all()
    assert (tgt_in[:, 1:9] == tgt_out[:, :8]).all()          # teacher forcing shift
    assert (src[:2] != 0).all() and (src[2:, 6:] == 0).all() and (src[2:, :6] != 0).all()
    assert (tgt_out[2:, 9:] == 0).all() and (tgt_out[2:, :9] != 0).all()
    assert (tgt_in[2:, 9:] == 0).all()
    assert src.max() < 50 and tgt_out.max() < 50


def test_torch_reference_tiny_loss_decreases():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    V = 300
    model = torch_reference.build("tiny", V, seed=0)
    assert model.E.shape == (V, 64)
    # Tied: E is the only (V, d) matrix, counted once.
    assert sum(tuple(p.shape) == (V, 64) for p in model.parameters()) == 1
    step = torch_reference.train_step_fn(model, torch_reference.make_optimizer(model, lr=1e-3))
    batch = torch_reference.make_batch(B=4, S=16, T=16, V=V, seed=0)
    losses = torch_reference.check_loss_decreases(step, batch, n_steps=5)
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]
    # Explicit attention and fused SDPA give the same forward.
    sdpa = torch_reference.build("tiny", V, seed=0, sdpa=True)
    sdpa.load_state_dict(model.state_dict())
    model.eval(), sdpa.eval()
    src, tgt_in, _ = (torch.from_numpy(a) for a in batch)
    with torch.no_grad():
        assert torch.allclose(model(src, tgt_in), sdpa(src, tgt_in), atol=1e-4)
