"""How long `npformer exercise check` takes to grade one exercise on one core.

    python benchmarks/grade_time.py                        # linear, layernorm, attention
    python benchmarks/grade_time.py --ids model --repeats 3 --json

A course platform gives a grading job a time limit (PrairieLearn's default is 30 s),
so the figure that matters is the whole command on one core, Python's start-up
included: each exercise's reference answer (``files.reference_text``, what a
learner who passes hands in) is written to a temporary folder and graded there
by a fresh ``npformer exercise check ID --seed 1`` with one BLAS thread. The
minimum and median over ``--repeats`` runs are printed per exercise; with
``--json`` the output ends with one JSON object. Exit status 1 when a reference
answer does not pass.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

ONE_CORE = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def time_check(exercise_id: str, folder: str, repeats: int) -> dict:
    """Seconds of ``repeats`` fresh `npformer exercise check` runs on one core, and whether they passed."""
    env = {**os.environ, **ONE_CORE, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
    seconds, passed = [], True
    for _ in range(repeats):
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "npformer", "exercise", "check", exercise_id, "--dir", folder,
                               "--seed", "1"], capture_output=True, text=True, env=env)
        seconds.append(time.perf_counter() - start)
        passed = passed and proc.returncode == 0
    return {"id": exercise_id, "passed": passed, "min_s": round(min(seconds), 2),
            "median_s": round(statistics.median(seconds), 2), "repeats": repeats}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ids", nargs="+", default=["linear", "layernorm", "attention"],
                   help="the exercises to grade (default: linear layernorm attention)")
    p.add_argument("--repeats", type=int, default=3, help="runs per exercise (default 3)")
    p.add_argument("--json", action="store_true", help="end with one JSON object")
    args = p.parse_args(argv)
    from npformer.exercise import EXERCISES, files
    unknown = [i for i in args.ids if i not in EXERCISES or not EXERCISES[i].functions]
    if unknown or args.repeats < 1:
        p.error(f"--ids takes exercises with a reference answer ({', '.join(unknown)} is not one); "
                "--repeats at least 1")
    with tempfile.TemporaryDirectory() as folder:
        for i in args.ids:
            with open(files.path_of(i, folder), "w") as f:
                f.write(files.reference_text(i))
        rows = [time_check(i, folder, args.repeats) for i in args.ids]
    print(f"{'exercise':<16} {'min s':>7} {'median s':>9}  passed   (one core, whole command)")
    for r in rows:
        print(f"{r['id']:<16} {r['min_s']:>7.2f} {r['median_s']:>9.2f}  {r['passed']}")
    if args.json:
        print(json.dumps({"one_core": True, "rows": rows, "slowest_median_s": max(r["median_s"] for r in rows)}))
    return 0 if all(r["passed"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
