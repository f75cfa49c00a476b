"""``npformer course build|grade``: an assignment for learners and the course platforms, and its grader.

``build ID... --out DIR`` writes the stubs, notebooks and a README for learners, the reference
answers apart, Gradescope's autograder.zip and a PrairieLearn question (npformer/course/build.py).
``grade ASSIGNMENT --submission DIR --report PLATFORM`` is what those bundles run on a learner's
files: every exercise of the assignment into one results file (npformer/course/autograder.py);
it exits 0 when every exercise passed, 1 when one failed and 2 when a file cannot be graded,
the results file written in each case. Building the parser imports no grader.
"""
from __future__ import annotations

import json
import os

from npformer.commands.options import REPORT_PLATFORMS, int_at_least


def cmd_build(args) -> int:
    from npformer.course import build
    done = build.build(args.ids, args.out, hidden_seeds=args.hidden_seeds, points_file=args.points,
                       force=args.force)
    if args.json:
        print(json.dumps(done))
        return 0
    print(f"built {', '.join(done['exercises'])} in {done['out']}:")
    print(f"  {done['student']}/      for learners: README.md, exercises/, notebooks/, {done['wheel']}")
    print(f"  {done['solution']}/     the reference answers (keep them apart)")
    print(f"  {done['gradescope']}   upload as the autograder (Ubuntu base image)")
    print(f"  {done['prairielearn']}/  copy into the course's questions/ folder")
    if done["hidden_seeds"]:
        print(f"  {os.path.join(done['out'], 'hidden_secret')}: the secret of the hidden draws (in the bundles; "
              "never in student/)")
    return 0


def cmd_grade(args) -> int:
    from npformer.course import autograder, platforms
    from npformer.errors import UserError
    a = autograder.load(args.assignment, secret=args.hidden_secret)
    draws = autograder.grade(a, args.submission, seed=args.seed)
    path = args.report_file or platforms.DEFAULT_PATHS[args.report]
    try:
        platforms.write(path, platforms.results(args.report, draws))
    except OSError as e:
        raise UserError(f"--report-file {path}: {e.strerror or e}") from None
    print("\n".join(autograder.summary(draws)))
    print(f"results for {args.report}: {path}")
    if any(d.error for d in draws):
        return 2
    return 0 if all(d.report.passed for d in draws if not d.hidden) else 1


def add_parser(sub) -> None:
    p = sub.add_parser("course", help="an assignment for learners, Gradescope and PrairieLearn: build, grade")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", parser_class=type(p))
    verbs.required = True

    q = verbs.add_parser("build", help="write DIR/student, DIR/solution, DIR/gradescope/autograder.zip and "
                         "DIR/prairielearn for the exercises named")
    q.add_argument("ids", nargs="+", metavar="ID", help="the exercises, e.g. linear layernorm attention "
                   "(`npformer exercise list`); they are taken in the catalog's order")
    q.add_argument("--out", required=True, metavar="DIR", help="an empty or new folder")
    q.add_argument("--force", action="store_true", help="DIR is not empty: replace what an earlier build "
                   "wrote there")
    q.add_argument("--hidden-seeds", metavar="N", type=int_at_least(0), default=0,
                   help="grade each exercise on N more draws that learners never see (Gradescope: hidden "
                   "tests); their seeds come from a secret written into the bundles ($NPFORMER_HIDDEN_SECRET, "
                   "else a new random one)")
    q.add_argument("--points", metavar="FILE", default=None,
                   help='a JSON file of points per exercise, {"linear": 10, "attention": 20}; an exercise not '
                   "named gets 1 point per graded part")
    q.add_argument("--json", action="store_true", help="end with one JSON object: what was written where")
    q.set_defaults(func=cmd_build)

    q = verbs.add_parser("grade", help="grade a submission's ID.py files against an assignment.json (what the "
                         "bundles run): exit 0 passed, 1 failed, 2 a file cannot be graded")
    q.add_argument("assignment", metavar="ASSIGNMENT", help="the assignment.json that `course build` wrote")
    q.add_argument("--submission", required=True, metavar="DIR", help="the folder of the learner's ID.py files")
    q.add_argument("--report", choices=REPORT_PLATFORMS, required=True,
                   help="the results file to write, a test per graded part of each exercise")
    q.add_argument("--report-file", metavar="PATH", default=None,
                   help="where (default: the platform's own, as for `npformer exercise check --report`)")
    q.add_argument("--seed", type=int_at_least(0), default=None, help="the visible draw (default: fresh)")
    q.add_argument("--hidden-secret", metavar="TEXT", default=os.environ.get("NPFORMER_HIDDEN_SECRET") or None,
                   help="the secret of the hidden draws (default: $NPFORMER_HIDDEN_SECRET, else the "
                   "hidden_secret file beside ASSIGNMENT)")
    q.set_defaults(func=cmd_grade)
