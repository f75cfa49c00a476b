"""``npformer gradcheck``: every backward pass against finite differences, one row per check.

With ``--json`` the last line is one object: ``passed`` (every row), ``n_passed``,
``n_failed``, ``worst_rel_error``, and ``rows`` of ``{name, max_rel_error, passed, findings}``
(``findings``: what each wrong gradient's error looks like, npformer.verify.diagnose)."""
import json

from npformer.commands.options import add_backend_args, int_at_least
from npformer.errors import UserError


def cmd_gradcheck(args) -> int:
    from npformer.verify.op_cases import run_all_checks
    if args.dtype != "float64":
        raise UserError(f"--dtype: gradient checks need float64, got {args.dtype}")
    results = run_all_checks(args.backend, seed=args.seed, quick=args.quick)
    rows = [r.as_dict() for r in results]
    passed = all(r["passed"] for r in rows)
    if args.json:
        n_fail = sum(not r["passed"] for r in rows)
        print(json.dumps({"passed": passed, "n_passed": len(rows) - n_fail, "n_failed": n_fail,
                          "worst_rel_error": max(r["max_rel_error"] for r in rows), "rows": rows}))
    else:
        width = max(len(r["name"]) for r in rows)
        print(f"{'name':<{width}}  {'max_rel_error':>13}  result")
        for r in rows:
            print(f"{r['name']:<{width}}  {r['max_rel_error']:>13.3e}  {'pass' if r['passed'] else 'FAIL'}")
        n_fail = sum(not r["passed"] for r in rows)
        print(f"{len(rows) - n_fail} passed, {n_fail} failed")
        for r in results:
            for problem in r.problems:
                print(f"  {r.name}: {problem}")
            for finding in r.findings:
                print(finding.indented())
    return 0 if passed else 1


def add_parser(sub) -> None:
    p = sub.add_parser("gradcheck", help="check every backward pass against finite differences")
    add_backend_args(p, "float64", workers=False)
    p.add_argument("--seed", type=int_at_least(0), default=0)
    p.add_argument("--quick", action="store_true", help="skip the whole-model check")
    p.add_argument("--json", action="store_true",
                   help="end with one JSON object: passed, n_passed, n_failed, worst_rel_error, rows")
    p.set_defaults(func=cmd_gradcheck)
