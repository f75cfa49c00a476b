"""``npformer exercise list|start|check|hint``: write the backward passes yourself, graded.

``check`` exits 0 when the exercise passes and 1 when it does not, so a course's
autograder (GitHub Classroom, Otter, Gradescope) can call it as it is; an unknown
id or a file that cannot be imported exits 2 with one line. ``check --report
PLATFORM`` also writes the platform's results file (npformer/course/platforms.py),
a file that cannot be graded included; ``--hidden-seeds N`` adds N draws to that
file only, so that nothing the learner sees (the output, the exit code) tells about
them. The grading itself is ``npformer.exercise.check``; this module parses and prints.
"""
from __future__ import annotations

import json
import os
import time

from npformer.commands.options import REPORT_PLATFORMS, add_backend_args, int_at_least


def cmd_list(args) -> int:
    from npformer.exercise import EXERCISES, VARIANT_IDS
    from npformer.exercise.files import status
    rows = [dict(id=e.id, title=e.title, section=e.anchor, prereqs=list(e.prereqs), status=status(e.id, args.dir))
            for e in EXERCISES.values()]
    rows += [dict(id=v, title="variant (not in the package)", section="", prereqs=[], status=status(v, args.dir))
             for v in VARIANT_IDS]
    if args.json:
        print(json.dumps({"dir": args.dir, "exercises": rows}))
        return 0
    print(f"{'id':<28} {'status':<12} {'builds on':<40} section")
    for r in rows:
        print(f"{r['id']:<28} {r['status']:<12} {', '.join(r['prereqs']) or '-':<40} {r['section']}")
    print(f"\nstart one: npformer exercise start ID --dir {args.dir}")
    return 0


def cmd_start(args) -> int:
    if args.notebook:  # the course's notebook writer: a command may use both packages
        from npformer.course import notebooks
        from npformer.errors import UserError
        if args.staged:
            raise UserError("--notebook writes the plain stub; --staged is for a file (ID.py)")
        path = notebooks.write(args.id, args.dir, force=args.force)
        print(f"wrote {path}: fill in the function(s); its last cell grades them")
        return 0
    from npformer.exercise import files
    path = files.start(args.id, args.dir, force=args.force, staged=args.staged)
    print(f"wrote {path}: fill in the function(s), then run `npformer exercise check {args.id} --dir {args.dir}`")
    return 0


def cmd_check(args) -> int:
    from npformer.exercise import check, check_train, files
    from npformer.exercise.grader import ExerciseError
    _check_report_options(args)
    try:
        if args.dtype != "float64":
            check(args.id, None, dtype=args.dtype)  # refuses, saying why
        start = time.perf_counter()
        module = None
        if args.id == "train":
            report = check_train(args.dir, backend=args.backend, quiet=args.json)
        else:
            module = files.load(args.id, args.dir)
            report = check(args.id, module, backend=args.backend, seed=args.seed, quiet=args.json)
        seconds = time.perf_counter() - start
    except ExerciseError as e:
        if args.report:  # the platform learns why too; then exit 2, as without --report
            from npformer.course import platforms
            _write_results(args, platforms.text_of(platforms.cannot_grade(args.report, args.id, str(e))))
        raise
    files.record(args.dir, args.id, report.verdict)
    if args.report:
        _report(args, report, module, seconds)
    if args.json:
        print(report.to_json())
    return 0 if report.passed else 1


def _check_report_options(args) -> None:
    from npformer.errors import UserError
    if not args.report and (args.report_file or args.hidden_seeds):
        raise UserError("--report-file and --hidden-seeds go with --report PLATFORM")
    if args.hidden_seeds and args.id == "train":
        raise UserError("--hidden-seeds: train grades one run of the exercises you passed, with no draw to repeat")


def _report(args, report, module, seconds) -> None:
    """The visible draw and the hidden ones, in the platform's results file."""
    from npformer.course import platforms
    from npformer.course.autograder import draws_of
    draws = draws_of(args.id, module, report, seconds, hidden_seeds=args.hidden_seeds, secret=args.hidden_secret,
                     backend=args.backend)
    path = _write_results(args, platforms.results(args.report, draws))
    print(f"results for {args.report}: {path}")


def _write_results(args, text: str) -> str:
    from npformer.errors import UserError
    from npformer.course import platforms
    path = args.report_file or platforms.DEFAULT_PATHS[args.report]
    try:
        return platforms.write(path, text)
    except OSError as e:
        default = "" if args.report_file else f" (--report {args.report}'s default; --report-file PATH elsewhere)"
        raise UserError(f"--report-file {path}: {e.strerror or e}{default}") from None


def cmd_hint(args) -> int:
    from npformer.exercise import EXERCISES, variants
    hints = EXERCISES[args.id].hints if args.id in EXERCISES else variants.HINTS[args.id]
    label = {1: "the concept", 2: "the structure", 3: "what to read"}[args.level]
    print(f"{args.id}, hint {args.level} of 3 ({label}):\n{hints[args.level - 1]}")
    if args.level < 3:
        print(f"\nmore: npformer exercise hint {args.id} --level {args.level + 1}")
    return 0


def _known_id(value: str) -> str:
    from npformer.exercise import EXERCISES, VARIANT_IDS
    if value not in EXERCISES and value not in VARIANT_IDS:
        import argparse
        raise argparse.ArgumentTypeError(f"unknown exercise {value!r}; expected one of "
                                         f"{', '.join([*EXERCISES, *VARIANT_IDS])}")
    return value


def add_parser(sub) -> None:
    p = sub.add_parser("exercise", help="write the backward passes yourself: list, start, check, hint")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", parser_class=type(p))
    verbs.required = True
    dir_help = "the folder of your exercise files (default exercises/)"

    q = verbs.add_parser("list", help="every exercise, its section, what it builds on, and your status")
    q.add_argument("--dir", default="exercises", help=dir_help)
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_list)

    q = verbs.add_parser("start", help="write DIR/ID.py: the signature(s), the forward and cache, a body to fill")
    q.add_argument("id", type=_known_id)
    q.add_argument("--dir", default="exercises", help=dir_help)
    q.add_argument("--force", action="store_true", help="replace an existing file (your work in it is lost)")
    q.add_argument("--staged", action="store_true", help="softmax, layernorm, attention, cross_entropy: the "
                   "forward as named steps, one gradient to write per step")
    q.add_argument("--notebook", action="store_true", help="write DIR/ID.ipynb instead: the task, the stub and a "
                   "cell that grades it (needs the course extra's nbformat)")
    q.set_defaults(func=cmd_start)

    q = verbs.add_parser("check", help="grade DIR/ID.py: exit 0 passed, 1 failed, 2 cannot grade")
    q.add_argument("id", type=_known_id)
    q.add_argument("--dir", default="exercises", help=dir_help)
    q.add_argument("--seed", type=int_at_least(0), default=None,
                   help="the draw of shapes, masks and values (default: fresh each run; the report prints it)")
    add_backend_args(q, "float64", workers=False)
    q.add_argument("--json", action="store_true", help="end with one JSON object: passed, verdict, findings")
    q.add_argument("--report", choices=REPORT_PLATFORMS, default=None,
                   help="also write a course platform's results file, a test per graded part (the contract, each "
                   "gradient of each case, each block it is composed into), a file that cannot be graded "
                   "included; the exit code and --json are unchanged")
    # platforms.DEFAULT_PATHS, written out in the help (tests/commands/test_exercise.py holds them equal)
    q.add_argument("--report-file", metavar="PATH", default=None,
                   help="where (default: each platform's own: gradescope /autograder/results/results.json, "
                   "prairielearn /grade/results/results.json, junit junit.xml in the current folder)")
    q.add_argument("--hidden-seeds", metavar="N", type=int_at_least(0), default=0,
                   help="grade N more draws, reported as hidden tests (in the results file only); their seeds "
                   "come from --hidden-secret, else from the seed")
    q.add_argument("--hidden-secret", metavar="TEXT", default=os.environ.get("NPFORMER_HIDDEN_SECRET") or None,
                   help="the instructor's secret the hidden seeds are derived from (default: "
                   "$NPFORMER_HIDDEN_SECRET, which keeps it off the command line): the same hidden draws for every "
                   "submission, unknown to learners")
    q.set_defaults(func=cmd_check)

    q = verbs.add_parser("hint", help="a hint: 1 the concept, 2 the structure, 3 the section to read")
    q.add_argument("id", type=_known_id)
    q.add_argument("--level", type=int, choices=(1, 2, 3), default=1)
    q.set_defaults(func=cmd_hint)
