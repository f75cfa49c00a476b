"""Small, fast tests of the benchmark helpers (benchmarks/common.py). The workload
(batches, FLOPs) is tested in test_workload.py, the PyTorch baseline in
test_torch_baseline.py."""
import json
import math
import os
import sys

import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from benchmarks import common  # noqa: E402


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
