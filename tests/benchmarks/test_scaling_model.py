"""The scaling model's arithmetic (benchmarks/scaling_model.py): a ring all-reduce's
2 (P - 1) / P x bytes, and the rows it projects."""
import json
import os
import sys

import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from benchmarks import scaling_model  # noqa: E402


def test_ring_allreduce_moves_two_p_minus_one_over_p_times_the_bytes():
    assert scaling_model.ring_allreduce_s(1e9, 1, 10.0, 1e-3) == 0.0
    assert scaling_model.ring_allreduce_s(1e9, 2, 10.0, 0.0) == pytest.approx(0.1)
    assert scaling_model.ring_allreduce_s(1e9, 4, 10.0, 1e-3) == pytest.approx(2 * 3 / 4 * 0.1 + 6e-3)


def test_rows_add_up(tmp_path, capsys):
    measured = {"layouts": [{"layout": "2x1", "ranks": 2, "workers": 1, "preset": "small", "step_s": 0.5,
                             "allreduce_s": 0.05, "tokens_per_s": 4000.0, "grad_bytes": 30e6},
                            {"layout": "1x2", "ranks": 1, "workers": 2, "preset": "small", "step_s": 0.4,
                             "allreduce_s": 0.0, "tokens_per_s": 5000.0, "grad_bytes": 30e6}]}
    path = tmp_path / "d.json"
    path.write_text(json.dumps(measured))
    assert scaling_model.main(["--measured", str(path), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["rows"]
    assert [r["ranks"] for r in rows] == [2, 8, 64]
    small = rows[0]
    assert small["compute_s"] == pytest.approx(0.45) and small["tokens_per_s"] == pytest.approx(4000.0)
    assert small["efficiency"] == pytest.approx(0.9)
    for r in rows:
        assert r["step_s"] == pytest.approx(r["compute_s"] + r["allreduce_s"])
        assert 0 < r["efficiency"] <= 1
    assert rows[1]["grad_MB"] == rows[2]["grad_MB"] > 200  # base: about 63 M float32 parameters
    assert rows[2]["efficiency"] < rows[1]["efficiency"]  # 100 Gb/s is the slow link
