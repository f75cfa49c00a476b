"""benchmarks/grade_time.py: the seconds one exercise takes to grade on one core (a figure, never
asserted here: the machines are shared)."""
import json

import pytest

from benchmarks import grade_time


def test_it_grades_the_reference_answers_and_ends_with_one_json_object(capsys):
    assert grade_time.main(["--ids", "relu", "residual", "--repeats", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [r["id"] for r in out["rows"]] == ["relu", "residual"]
    assert all(r["passed"] and r["min_s"] > 0 and r["repeats"] == 1 for r in out["rows"])
    assert out["slowest_median_s"] == max(r["median_s"] for r in out["rows"])


@pytest.mark.parametrize("args", [["--ids", "nope"], ["--ids", "train"], ["--repeats", "0"]])
def test_bad_options_are_refused_before_any_grading(args, capsys):
    with pytest.raises(SystemExit) as e:
        grade_time.main(args)
    assert e.value.code == 2 and "--ids" in capsys.readouterr().err
