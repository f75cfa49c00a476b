"""Mutation score of the backward math: how many deliberately planted bugs the tests catch.

    python benchmarks/mutation_score.py [--shard I/N] [--files F ...] [--limit K] [--json]
    python benchmarks/mutation_score.py --merge SHARD_OUTPUT ... [--json]

Cosmic Ray (the ``mutation`` extra) generates the mutants: for every file in
benchmarks/mutation_tests.json it finds each operator, constant, comparison,
boolean and loop it can change, one change per mutant, and writes them into a
work database. This script then applies each mutant with Cosmic Ray to a copy of
the package (never the checkout itself) and runs only the tests that the mapping
names for that file, in their order, stopping at the first failure:

  * killed:    a selected test failed (or could not even import the mutant);
  * survived:  every selected test passed: the mutant is a bug the suite misses,
               unless benchmarks/mutation_equivalents.json lists it as equivalent;
  * timed out: the tests ran past ``--timeout-factor`` times their unmutated time
               (counted as killed: a hang is a failure a user would see).

Equivalent mutants (the program computes the same thing, or the difference is
below what any test can see by design) are listed in
benchmarks/mutation_equivalents.json, each with the file, the line before and
after the change and a reason; they are matched by that text, not by line
number, so edits elsewhere in the file do not invalidate them. They are not
run and not counted in the score:

    score = killed (timed out included) / (mutants - equivalents)

The operators are Cosmic Ray's core set less the exclusions in the mapping
file's "exclude_operators" (regular expressions over Cosmic Ray's operator
names), each with its reason there. The tests run in one process that imported
NumPy, pytest and Hypothesis once and forks per mutant (the fork imports the
mutated package afresh), one mutant at a time, with one BLAS thread.

``--shard I/N`` runs every N-th mutant starting at the I-th (1-based) of the
sorted list, so N runs with I = 1..N cover every mutant once; merge their JSON
objects with ``--merge FILE ...``. The last line of output is one JSON object:
mutants generated, killed, survived, timed out and equivalent, the score per
file and in all, and every survivor with its file, line and diff.
"""
from __future__ import annotations

import os

# One BLAS thread, no bytecode (a mutant may have the same size and mtime second as the
# original, and a stale .pyc would then run the original), before NumPy is imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
os.environ.setdefault("HYPOTHESIS_PROFILE", "ci")

import argparse  # noqa: E402
import difflib  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.dont_write_bytecode = True

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MAPPING = HERE / "mutation_tests.json"
EQUIVALENTS = HERE / "mutation_equivalents.json"
COPIED = ("npformer", "tests", "benchmarks", "setup.cfg", "pyproject.toml")  # the grader corpus loads from benchmarks/


class UsageError(Exception):
    """Bad input: reported before any mutant runs."""


# ----------------------------------------------------------------------------- inputs

def parse_shard(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+)/(\d+)", text or "")
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise UsageError(f"--shard must be I/N with 1 <= I <= N, got {text!r}")
    return int(m.group(1)), int(m.group(2))


def load_mapping(path: Path = MAPPING, root: Path = ROOT) -> dict:
    """The mapping file: {"files": {source: [test paths]}, "exclude_operators": {regex: reason}}."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot read the mapping {path}: {e}") from e
    files = data.get("files")
    if not isinstance(files, dict) or not files:
        raise UsageError(f"{path}: 'files' must map each source file to its tests")
    for src, tests in files.items():
        if not (root / src).is_file():
            raise UsageError(f"{path}: source file {src} does not exist")
        if not isinstance(tests, list) or not tests:
            raise UsageError(f"{path}: {src} must list at least one test")
        for t in tests:
            if not (root / t.split("::")[0]).is_file():
                raise UsageError(f"{path}: {src}: test file {t} does not exist")
    excl = data.get("exclude_operators", {})
    for pattern in excl:
        try:
            re.compile(pattern)
        except re.error as e:
            raise UsageError(f"{path}: exclude_operators: bad regular expression {pattern!r}: {e}") from e
    return {"files": files, "exclude_operators": excl}


def load_equivalents(path: Path = EQUIVALENTS) -> list[dict]:
    """The reviewed equivalent mutants: [{file, line, before, after, operator, reason}]."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot read the equivalents {path}: {e}") from e
    entries = data.get("equivalents")
    if not isinstance(entries, list):
        raise UsageError(f"{path}: 'equivalents' must be a list")
    for i, e in enumerate(entries):
        missing = [k for k in ("file", "before", "after", "reason") if not str(e.get(k, "")).strip()]
        if missing:
            raise UsageError(f"{path}: equivalent #{i} lacks {', '.join(missing)}")
    return entries


def equivalent_key(file: str, before: str, after: str) -> tuple[str, str, str]:
    """What identifies a mutant across edits: its file and its changed line, before and after."""
    return file, " ".join(before.split()), " ".join(after.split())


# ----------------------------------------------------------------------------- mutants

def make_workdir() -> Path:
    """A copy of the package and its tests: mutants are written there, never to the checkout."""
    work = Path(tempfile.mkdtemp(prefix="npformer-mutation-"))
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis", ".pytest_cache")
    for name in COPIED:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, work / name, ignore=ignore)
        elif src.is_file():
            shutil.copy2(src, work / name)
    return work


def generate(work: Path, files: list[str], exclude: list[str]) -> list:
    """Cosmic Ray's work items for ``files`` (paths relative to ``work``), less excluded operators,
    sorted by file, position and operator (a stable order for sharding)."""
    from cosmic_ray.commands.init import init
    from cosmic_ray.work_db import WorkDB, use_db

    cwd = os.getcwd()
    os.chdir(work)
    try:
        with use_db(str(work / "session.sqlite"), WorkDB.Mode.create) as db:
            init([Path(f) for f in files], db, {})
            items = list(db.work_items)
    finally:
        os.chdir(cwd)
    rx = [re.compile(p) for p in exclude]
    kept = [w for w in items if not any(r.search(w.mutations[0].operator_name) for r in rx)]

    def key(w):
        m = w.mutations[0]
        return str(m.module_path), tuple(m.start_pos), m.operator_name, m.occurrence
    return sorted(kept, key=key)


def mutated_source(work: Path, mutation):
    """``(original, mutated or None)`` source of one mutation, by Cosmic Ray, without touching disk."""
    import cosmic_ray.plugins
    from cosmic_ray.mutating import mutate_code

    original = (work / mutation.module_path).read_text(encoding="utf-8")
    operator = cosmic_ray.plugins.get_operator(mutation.operator_name)(**(mutation.operator_args or {}))
    return original, mutate_code(original, operator, mutation.occurrence)


def describe(file: str, original: str, mutated: str) -> dict:
    """The mutant's first changed line (number, before, after) and its unified diff."""
    a, b = original.split("\n"), mutated.split("\n")
    diff = list(difflib.unified_diff(a, b, fromfile=f"a/{file}", tofile=f"b/{file}", lineterm="", n=0))
    sm = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    for tag, i1, i2, j1, j2 in sm.get_opcodes():
        if tag != "equal":
            return {"line": i1 + 1, "before": "\n".join(a[i1:i2]).strip(),
                    "after": "\n".join(b[j1:j2]).strip(), "diff": "\n".join(diff[2:])}
    return {"line": 0, "before": "", "after": "", "diff": ""}


# ----------------------------------------------------------------------------- tests

def preload():
    """Import what every test run needs but the package under test, once, before forking."""
    import hypothesis  # noqa: F401
    import numpy  # noqa: F401
    import pytest  # noqa: F401
    if any(name == "npformer" or name.startswith("npformer.") for name in sys.modules):
        raise RuntimeError("npformer was imported before forking: mutants would not be seen")


def run_tests(work: Path, tests: list[str], timeout: float, log: Path) -> tuple[str, float]:
    """Run ``tests`` in a forked child in ``work``; ``(outcome, seconds)``, outcome one of
    passed, failed, timeout, error (pytest found no test: a mapping bug)."""
    import pytest

    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the child: its own process group, so a timeout also ends its subprocesses
        code = 3
        try:
            os.setpgid(0, 0)
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.chdir(work)
            sys.path.insert(0, str(work))
            code = pytest.main(["-x", "-p", "no:cacheprovider", "-q", "--no-header", *tests])
        except BaseException:  # noqa: B036 - the child must always exit here
            code = 3
        finally:
            os._exit(int(code))
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        elapsed = time.perf_counter() - t0
        if done:
            code = os.waitstatus_to_exitcode(status)
            break
        if elapsed > timeout:
            for kill in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
                try:
                    kill()
                except OSError:
                    pass
            os.waitpid(pid, 0)
            return "timeout", elapsed
        time.sleep(0.005)
    if code == 0:
        return "passed", elapsed
    if code == 5:
        return "error", elapsed
    return "failed", elapsed


def check_isolation(work: Path, log: Path):
    """The forked tests must import the copy's npformer, not an installed one."""
    probe = work / "tests" / "test_zz_mutation_probe.py"
    probe.write_text("import npformer\n\ndef test_probe():\n"
                     f"    assert npformer.__file__.startswith({str(work)!r}), npformer.__file__\n")
    try:
        outcome, _ = run_tests(work, [str(probe.relative_to(work))], 120, log)
    finally:
        probe.unlink()
    if outcome != "passed":
        raise RuntimeError(f"the tests do not import the package copy in {work} (see {log})")


# ----------------------------------------------------------------------------- report

def summarise(results: list[dict], files: list[str]) -> dict:
    per_file = {}
    for f in files:
        rs = [r for r in results if r["file"] == f]
        per_file[f] = _counts(rs)
    out = _counts(results)
    out["per_file"] = per_file
    out["survivors"] = [{k: r[k] for k in ("file", "line", "operator", "before", "after", "diff")}
                        for r in results if r["outcome"] == "survived"]
    return out


def _counts(rs: list[dict]) -> dict:
    n = {k: sum(r["outcome"] == k for r in rs) for k in ("killed", "survived", "timeout", "equivalent", "error")}
    scored = n["killed"] + n["timeout"] + n["survived"]
    return {"generated": len(rs), "killed": n["killed"], "survived": n["survived"], "timed_out": n["timeout"],
            "equivalent": n["equivalent"], "errors": n["error"],
            "score": round((n["killed"] + n["timeout"]) / scored, 4) if scored else None}


def merge(paths: list[str]) -> dict:
    """The union of several runs' JSON objects (each the last line of its output): shards of one
    run, or whole runs of different files; a later whole run of a file replaces earlier results for it."""
    results, files, seconds, shards = [], [], 0.0, []
    for p in paths:
        try:
            lines = [ln for ln in Path(p).read_text(encoding="utf-8").splitlines() if ln.strip()]
            obj = json.loads(lines[-1])
            if obj["shard"] == "1/1":  # a whole run of some files replaces earlier results for them
                results = [r for r in results if r["file"] not in obj["files"]]
            results += obj["results"]
            seconds += obj["seconds"]
            shards.append(obj["shard"])
            files += [f for f in obj["files"] if f not in files]
        except (OSError, ValueError, KeyError, IndexError) as e:
            raise UsageError(f"--merge: {p} does not end with this script's JSON object: {e}") from e
    out = summarise(results, files)
    out.update(shards=shards, seconds=round(seconds, 1), files=files, results=results)
    return out


# ----------------------------------------------------------------------------- main

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shard", default="1/1", help="run the I-th of N interleaved shards (default 1/1)")
    ap.add_argument("--files", nargs="+", metavar="FILE", help="only these files of the mapping")
    ap.add_argument("--limit", type=int, help="only the first K mutants of the (shard's) list")
    ap.add_argument("--timeout-factor", type=float, default=4.0,
                    help="a mutant times out past this many times the tests' unmutated time (default 4)")
    ap.add_argument("--mapping", type=Path, default=MAPPING, help=f"files and their tests (default {MAPPING.name})")
    ap.add_argument("--equivalents", type=Path, default=EQUIVALENTS,
                    help=f"reviewed equivalent mutants (default {EQUIVALENTS.name})")
    ap.add_argument("--merge", nargs="+", metavar="OUTPUT", help="print the union of shards' saved outputs")
    ap.add_argument("--json", action="store_true", help="end with one JSON object, every mutant's result in it")
    ap.add_argument("-v", "--verbose", action="store_true", help="one line per mutant on stderr")
    args = ap.parse_args(argv)
    try:
        if args.merge:
            out = merge(args.merge)
            if not args.json:
                out = {k: v for k, v in out.items() if k != "results"}
            print(json.dumps(out))
            return 0
        return run(args)
    except UsageError as e:
        print(f"mutation_score: error: {e}", file=sys.stderr)
        return 2


def run(args) -> int:
    shard_i, shard_n = parse_shard(args.shard)
    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be at least 1")
    if args.timeout_factor <= 1:
        raise UsageError("--timeout-factor must be above 1")
    mapping = load_mapping(args.mapping)
    equivalents = load_equivalents(args.equivalents)
    files = list(mapping["files"])
    if args.files:
        unknown = [f for f in args.files if f not in mapping["files"]]
        if unknown:
            raise UsageError(f"--files: not in {args.mapping.name}: {', '.join(unknown)}")
        files = [f for f in files if f in args.files]
    try:
        import cosmic_ray  # noqa: F401
    except ImportError as e:
        raise UsageError("Cosmic Ray is not installed: pip install -e '.[mutation]'") from e

    eq_keys = {equivalent_key(e["file"], e["before"], e["after"]): e for e in equivalents}
    t_start = time.perf_counter()
    signal.signal(signal.SIGTERM, _terminate)  # so that the copy is removed
    work = make_workdir()
    log = work / "pytest.log"
    try:
        preload()
        check_isolation(work, log)
        items = generate(work, files, list(mapping["exclude_operators"]))
        generated = len(items)
        items = items[shard_i - 1::shard_n]
        if args.limit:
            items = items[:args.limit]
        # the unmutated tests must pass, and their time sets each file's timeout
        baseline, by_tests = {}, {}
        for f in sorted({str(w.mutations[0].module_path) for w in items}):
            tests = tuple(mapping["files"][f])
            if tests not in by_tests:  # files with the same tests share one unmutated run
                outcome, by_tests[tests] = run_tests(work, list(tests), 1800, log)
                if outcome != "passed":
                    raise UsageError(f"the tests of {f} fail without any mutant ({outcome}):\n"
                                     + log.read_text(encoding="utf-8", errors="replace")[-3000:])
            baseline[f] = by_tests[tests]
        results = []
        for k, w in enumerate(items):
            m = w.mutations[0]
            f = str(m.module_path)
            original, mutated = mutated_source(work, m)
            rec = {"file": f, "operator": m.operator_name, "occurrence": m.occurrence}
            if mutated is None:
                rec.update(line=m.start_pos[0], before="", after="", diff="", outcome="error", seconds=0.0)
                results.append(rec)
                continue
            rec.update(describe(f, original, mutated))
            if equivalent_key(f, rec["before"], rec["after"]) in eq_keys:
                rec.update(outcome="equivalent", seconds=0.0)
            else:
                path = work / f
                path.write_text(mutated, encoding="utf-8")
                try:
                    outcome, seconds = run_tests(work, mapping["files"][f],
                                                 args.timeout_factor * baseline[f] + 5, log)
                finally:
                    path.write_text(original, encoding="utf-8")
                rec.update(outcome={"passed": "survived", "failed": "killed"}.get(outcome, outcome),
                           seconds=round(seconds, 2))
            results.append(rec)
            if args.verbose:
                print(f"[{k + 1}/{len(items)}] {rec['outcome']:10s} {f}:{rec['line']} {m.operator_name}: "
                      f"{rec['before']!r} -> {rec['after']!r} ({rec['seconds']} s)", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    seen = {equivalent_key(r["file"], r["before"], r["after"]) for r in results}
    out = summarise(results, files)
    out.update(tool=f"cosmic-ray {_version()}", shard=f"{shard_i}/{shard_n}", generated_all_shards=generated,
               seconds=round(time.perf_counter() - t_start, 1), files=files,
               baseline_seconds={f: round(s, 2) for f, s in baseline.items()})
    if shard_n == 1 and not args.limit:
        out["unmatched_equivalents"] = [e for e in equivalents if e["file"] in files
                                        and equivalent_key(e["file"], e["before"], e["after"]) not in seen]
    if not args.json:
        for f, c in out["per_file"].items():
            print(f"{f:40s} {c['generated']:5d} mutants  {c['killed'] + c['timed_out']:5d} killed  "
                  f"{c['survived']:4d} survived  {c['equivalent']:4d} equivalent  score {c['score']}")
        print(f"{'total':40s} {out['generated']:5d} mutants  score {out['score']}  ({out['seconds']} s)")
        for s in out["survivors"]:
            print(f"survivor {s['file']}:{s['line']} {s['operator']}\n{s['diff']}")
    out["results"] = results
    if args.json:
        print(json.dumps(out))
    return 0


def _terminate(signum, frame):
    raise SystemExit(128 + signum)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("cosmic-ray")
    except PackageNotFoundError:
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
