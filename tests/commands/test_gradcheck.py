"""``npformer gradcheck``: one JSON object with a passing row per op; float32 refused in one line."""
import json

from npformer.verify.op_cases import op_cases


def test_quick_json_lists_every_op(run_npformer):
    proc = run_npformer("gradcheck", "--quick", "--json")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout
    result = json.loads(lines[0])
    rows = result["rows"]
    assert result["passed"] is True and result["n_failed"] == 0 and result["n_passed"] == len(rows)
    assert result["worst_rel_error"] == max(row["max_rel_error"] for row in rows)
    for row in rows:
        assert set(row) == {"name", "max_rel_error", "passed", "findings"}
        assert row["passed"] is True and row["max_rel_error"] <= 1e-7 and row["findings"] == [], row
    assert set(op_cases()) <= {row["name"] for row in rows}


def test_refuses_float32_with_one_line(run_npformer):
    proc = run_npformer("gradcheck", "--quick", "--dtype", "float32")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and "float64" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
