"""How well `npformer exercise check` names learners' bugs it has never seen.

    python benchmarks/grader_corpus.py                       # the table, the hit rate, the misses
    python benchmarks/grader_corpus.py --only attention --seeds 1 2 3 4 5
    python benchmarks/grader_corpus.py --json                # ... ending with one JSON object
    python benchmarks/grader_corpus.py --write-doc           # the table into docs/exercises.md

The corpus (tests/exercise/bug_corpus.py) holds wrong backward passes written the way learners
write them, apart from the grader's own library of known mistakes (npformer/exercise/mistakes.py,
which is left out here: ``known=False``), each with the finding a teacher would give: the
gradient(s) to name and the class of the finding. Each bug is graded on every seed
(``composed=False``: the alone stage, which every bug fails). A bug is **named** when, on every
seed, a finding names one of the teacher's gradients with the teacher's class (for the class
``only``: exactly the teacher's set of wrong gradients).

**Advice** is a finding's ``fix``, an operation on the learner's gradient ("multiply by c",
"transpose"): applied to that gradient of its case, rebuilt from the seed, it must not make the
relative error grow, must make the gradient right where the bug's whole error is of that kind,
and must agree with the words ("too large" with |c| < 1). Advice that fails one of these is
**harmful**.

Prints a markdown table (bug, exercise, what a teacher names, whether the grader names it, the
grader's finding, its advice), the hit rate, the harmful advice, and every miss with the text of
the findings it got. Exit status 1 when a bug passes on a seed or advice is harmful; a low hit
rate is a figure, not a failure. ``--write-doc`` replaces the table of the last section of
docs/exercises.md (``tests/benchmarks/test_grader_corpus.py`` keeps the two equal).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

CORPUS = os.path.join(ROOT, "tests", "exercise", "bug_corpus.py")
DOC = os.path.join(ROOT, "docs", "exercises.md")
BEGIN, END = "<!-- grader_corpus.py: begin -->", "<!-- grader_corpus.py: end -->"
_MODULE = "npformer_bug_corpus"


def load_corpus():
    """tests/exercise/bug_corpus.py as a module, loaded once by its path (the tests and this
    script share it, and with it the cache of graded bugs)."""
    if _MODULE not in sys.modules:
        spec = importlib.util.spec_from_file_location(_MODULE, CORPUS)
        module = importlib.util.module_from_spec(spec)
        sys.modules[_MODULE] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[_MODULE]
            raise
    return sys.modules[_MODULE]


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|")


def _expected(bug) -> str:
    grads = list(bug.gradients)
    shown = grads[0] if len(grads) == 1 else (", ".join(grads) if len(grads) <= 3
                                              else f"{grads[0]} + {len(grads) - 1} more")
    return f"{shown}: {bug.expect}"


def _fix_text(fix) -> str:
    if not fix:
        return "-"
    return f"x {fix[1]:.4g}" if fix[0] == "scale" else "transpose"


def _summary_tags(report, bug) -> str:
    """What the grader said where it did not name the bug: its findings on the teacher's gradients
    (or its first findings), as ``gradient: tag``."""
    plain = [f for f in report.findings if not f.tag.startswith(("only:", "known:", "inherits:"))]
    mine = [f for f in plain if f.gradient in bug.gradients] or plain
    shown = list(dict.fromkeys(f"{f.gradient}: {f.tag}" for f in mine))[:2]
    only = next((f.tag for f in report.findings if f.tag.startswith("only:")), None)
    if only and bug.expect == "only":
        shown.append(only if len(only) <= 40 else f"only: {len(only.split(','))} gradients")
    return "; ".join(shown) or "-"


def row(result) -> dict:
    """One bug's line of the table, as a dict (the JSON's rows)."""
    bug, seeds = result.bug, list(result.reports)
    hits = [s for s in seeds if result.hits[s] is not None]
    passed = [s for s in seeds if result.reports[s].passed]
    first = result.hits[hits[0]] if hits else None
    miss_seed = next((s for s in seeds if result.hits[s] is None), seeds[0])
    if passed:
        found = f"passed on seed {', '.join(map(str, passed))}"
    elif len(hits) == len(seeds):
        found = f"{first.gradient}: {first.tag}" if bug.expect != "only" else (
            first.tag if len(bug.gradients) <= 3 else f"only: the same {len(bug.gradients)}")
    else:
        found = _summary_tags(result.reports[miss_seed], bug)
    fixes = [getattr(f, "fix", None) for f in [first] if f is not None]
    if not any(fixes):
        fixes = [getattr(f, "fix", None) for f in result.reports[seeds[0]].findings
                 if f.gradient in bug.gradients and getattr(f, "fix", None)]
    advice = _fix_text(fixes[0] if fixes else None)
    if result.harmful:
        advice += " (harmful)"
    return {"bug": bug.id, "exercise": bug.exercise + (" (staged)" if bug.staged else ""),
            "teacher": _expected(bug), "named": "yes" if len(hits) == len(seeds) else
            ("no" if not hits else f"{len(hits)} of {len(seeds)} seeds"), "found": found, "advice": advice}


def table(results) -> str:
    lines = ["| bug | exercise | a teacher names | named | the grader's finding | advice |",
             "|---|---|---|---|---|---|"]
    for r in results:
        d = row(r)
        lines.append("| " + " | ".join(_cell(d[k]) if k != "bug" else f"`{d[k]}`"
                                        for k in ("bug", "exercise", "teacher", "named", "found", "advice")) + " |")
    return "\n".join(lines)


def figures(results) -> dict:
    n = len(results)
    named = sum(r.named for r in results)
    return {"bugs": n, "staged": sum(r.bug.staged for r in results), "named": named,
            "hit_rate": named / n if n else 0.0, "harmful": sum(len(r.harmful) for r in results),
            "passing": [r.bug.id for r in results if not r.failed_everywhere],
            "advice_given": sum(len(v) for r in results for v in r.advice.values()),
            "seeds": list(results[0].reports) if results else []}


def summary(results) -> str:
    f = figures(results)
    return (f"{f['bugs']} bugs ({f['staged']} of them staged), seeds {', '.join(map(str, f['seeds']))}: "
            f"named {f['named']} of {f['bugs']} ({100 * f['hit_rate']:.1f}%); advice given "
            f"{f['advice_given']} times, harmful {f['harmful']}; "
            f"passing check on some seed: {len(f['passing'])}"
            + (f" ({', '.join(f['passing'])})" if f["passing"] else "") + ".")


def doc_block(results) -> str:
    """What docs/exercises.md shows between its markers: the table and the summary line."""
    return table(results) + "\n\n" + summary(results)


def misses(results) -> list:
    """Every bug not named on some seed, with the findings it got there."""
    out = []
    for r in results:
        for seed, hit in r.hits.items():
            if hit is None:
                rep = r.reports[seed]
                out.append({"bug": r.bug.id, "seed": seed, "teacher": _expected(r.bug), "verdict": rep.verdict,
                            "findings": [{"gradient": f.gradient, "case": f.case, "tag": f.tag,
                                          "diagnosis": f.diagnosis} for f in rep.findings]})
    return out


def harmful(results) -> list:
    return [{"bug": r.bug.id, "seed": seed, "gradient": a.finding.gradient, "tag": a.finding.tag,
             "fix": list(a.finding.fix), "before": a.before, "after": a.after, "problems": a.problems,
             "diagnosis": a.finding.diagnosis}
            for r in results for seed, lst in r.advice.items() for a in lst if a.harmful]


def write_doc(block: str, path: str = DOC) -> None:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{path}: the markers {BEGIN} and {END} are missing")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    with open(path, "w", encoding="utf-8") as f:
        f.write(head + BEGIN + "\n" + block + "\n" + END + tail)


def doc_text(path: str = DOC) -> str | None:
    """The block between the markers of docs/exercises.md, or None."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if BEGIN not in text or END not in text:
        return None
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", metavar="ID", help="bugs or exercises to grade (default: all)")
    ap.add_argument("--seeds", nargs="+", type=int, help="default: the corpus's SEEDS")
    ap.add_argument("--write-doc", action="store_true", help="replace the table in docs/exercises.md")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    corpus = load_corpus()
    seeds = tuple(args.seeds or corpus.SEEDS)
    bugs = corpus.BUGS
    if args.only:
        bugs = [b for b in bugs if b.id in args.only or b.exercise in args.only]
        unknown = [o for o in args.only if o not in corpus.BY_ID and all(b.exercise != o for b in corpus.BUGS)]
        if unknown or not bugs:
            ap.error(f"--only: no bug or exercise {', '.join(unknown or args.only)}")
    if args.write_doc and (args.only or seeds != corpus.SEEDS):
        ap.error("--write-doc writes the whole corpus on the corpus's seeds: leave out --only and --seeds")
    results = list(corpus.grade_all(seeds)) if len(bugs) == len(corpus.BUGS) else [corpus.grade(b, seeds)
                                                                                   for b in bugs]
    print(table(results))
    print()
    print(summary(results))
    missed, bad = misses(results), harmful(results)
    if missed:
        print("\nmisses (the findings each got):")
        for m in missed:
            print(f"- {m['bug']} (seed {m['seed']}, {m['verdict']}): a teacher names {m['teacher']}")
            for f in m["findings"]:
                print(f"    {f['gradient']} [{f['case']}] {f['tag']}: {f['diagnosis']}")
    if bad:
        print("\nharmful advice:")
        for h in bad:
            print(f"- {h['bug']} (seed {h['seed']}) {h['gradient']} {h['tag']} fix {h['fix']}: "
                  f"{'; '.join(h['problems'])}\n    {h['diagnosis']}")
    if args.write_doc:
        write_doc(doc_block(results))
        print(f"\nwrote the table into {os.path.relpath(DOC, ROOT)}")
    fig = figures(results)
    if args.json:
        print(json.dumps({**fig, "rows": [row(r) for r in results], "misses": missed, "harmful_advice": bad}))
    return 1 if fig["harmful"] or fig["passing"] else 0


if __name__ == "__main__":
    sys.exit(main())
