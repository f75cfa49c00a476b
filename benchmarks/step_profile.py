"""Where a training step's time goes: the share of each op family, on real batches.

One worker thread with one BLAS thread trains on batches of the bundled corpus
(or ``--data``), encoded with the recipe's BPE and cut with its batch size, so
padding and the real vocabulary size show. After ``--warmup`` steps:

1. ``--steps`` steps are timed without a profiler: the step time, and from it
   the share of the machine's float32 matmul peak (one thread, measured in the
   same run) that the step's matmul FLOPs reach. The FLOPs are counted on the
   padded shapes the arrays have (benchmarks/workload.py
   ``train_flops``), and also on the real tokens alone (``useful``).
2. The same steps run under cProfile. Each function's own time is charged to
   the file it lives in; time inside NumPy's C functions (``np.exp``,
   ``einsum``, ...) is charged to the file that called them. Files map to op
   families: ``npformer/ops/<name>.py`` is the family ``<name>``, the output
   projection and the tie live in model/transformer.py, Adam and the gradient
   norm in train/optim.py. A matrix product written with ``@`` is not a
   function call, so it counts in the family that wrote it (linear, attention,
   output projection).

    python benchmarks/step_profile.py                      # the recipe of a 10-minute run (the demo)
    python benchmarks/step_profile.py --merges 8000 --norm post --json
"""
from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time
from collections import defaultdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FAMILY_FILES = {  # files outside npformer/ops and what they hold
    "model/transformer.py": "output projection + tie",
    "train/optim.py": "adam + grad norm",
}


def family_of(filename: str) -> str:
    path = filename.replace(os.sep, "/")
    if "/npformer/" not in path:
        return "python / numpy glue"
    rel = path.split("/npformer/", 1)[1]
    if rel.startswith("ops/"):
        return rel[4:-3]
    if rel in FAMILY_FILES:
        return FAMILY_FILES[rel]
    if rel.startswith("model/"):
        return "model glue (stacks, masks, checks)"
    if rel.startswith("data/"):
        return "batching"
    return "train loop"


def family_seconds(stats: pstats.Stats) -> dict:
    """Own time per family; C functions' own time goes to their callers' families."""
    out = defaultdict(float)
    for (filename, _, _), (_, _, tt, _, callers) in stats.stats.items():
        if filename != "~":  # a Python function: its own time
            out[family_of(filename)] += tt
            continue
        called = sum(c[2] for c in callers.values())
        for (cfile, _, _), c in callers.items():  # a builtin: split by the callers' shares
            out[family_of(cfile) if cfile != "~" else "python / numpy glue"] += tt * (c[2] / called if called else 0)
        if not callers:
            out["python / numpy glue"] += tt
    return dict(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="small")
    ap.add_argument("--norm", default=None, choices=("post", "pre"), help="default: the recipe's")
    ap.add_argument("--merges", type=int, default=None, help="BPE merges (default: the recipe's for 10 minutes)")
    ap.add_argument("--max-tokens", type=int, default=None, help="batch size in tokens (default: the recipe's)")
    ap.add_argument("--p-drop", type=float, default=0.0)
    ap.add_argument("--data", default=None, help="a TSV corpus (default: the bundled one)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    sys.path.insert(0, ROOT)
    from benchmarks import common
    common.set_threads(1)
    from npformer.runtime.cpu import tune_openblas
    tune_openblas()  # before NumPy loads: OpenBLAS's kernel choice (npformer/runtime/cpu.py)
    from benchmarks.workload import train_flops
    from npformer.run import model_config
    from npformer.data.pipeline import batch_schedule, prepare
    from npformer.run import CORPUS_DEFAULTS, derive_recipe
    from npformer.train.state import init_state
    from npformer.train.trainer import train_step

    settings = {**CORPUS_DEFAULTS, "data": args.data, "preset": args.preset, "p_drop": args.p_drop,
                "merges": args.merges, "max_tokens": args.max_tokens, "norm": args.norm}
    derive_recipe(settings, minutes=10.0, steps=None)  # the demo's budget
    data = prepare(args.data, num_merges=settings["merges"], splits_wanted=("train",))
    cfg = model_config({**settings, "preset": args.preset, "vocab_size": data.tokenizer.vocab_size})
    state = init_state(cfg, seed=0, backend="numpy", dtype="float32", workers=1)
    batches = batch_schedule(*data.ids["train"], max_tokens=settings["max_tokens"], seed=0,
                             max_len=settings["max_len"])
    V, lr = cfg.vocab_size, 1e-4
    for t in range(1, args.warmup + 1):
        train_step(state, cfg, batches(t), lr)
    steps = [batches(args.warmup + 1 + i) for i in range(args.steps)]
    flops = sum(train_flops(args.preset, b.src.shape[0], b.src.shape[1], b.tgt_in.shape[1], V) for b in steps)
    useful = 0
    for b in steps:  # the same count on real tokens: each sentence at its own lengths
        s_len = (b.src != cfg.pad_id).sum(axis=1)
        t_len = (b.tgt_out != cfg.pad_id).sum(axis=1)
        useful += sum(train_flops(args.preset, 1, int(s), int(t), V) for s, t in zip(s_len, t_len))
    positions = sum(b.src.size + b.tgt_out.size for b in steps)
    real = sum(int((b.src != cfg.pad_id).sum() + (b.tgt_out != cfg.pad_id).sum()) for b in steps)

    t0 = time.perf_counter()
    for b in steps:
        train_step(state, cfg, b, lr)
    step_s = (time.perf_counter() - t0) / len(steps)
    peak = common.matmul_peak_gflops("float32", n=2048)

    prof = cProfile.Profile()
    prof.enable()
    for b in steps:
        train_step(state, cfg, b, lr)
    prof.disable()
    fam = family_seconds(pstats.Stats(prof))
    total = sum(fam.values())
    rows = sorted(({"family": k, "share": v / total, "ms_per_step": 1e3 * step_s * v / total}
                   for k, v in fam.items()), key=lambda r: -r["share"])
    result = {"preset": args.preset, "norm": cfg.norm, "merges": settings["merges"], "vocab": V,
              "max_tokens": settings["max_tokens"], "steps": len(steps), "step_ms": 1e3 * step_s,
              "target_tokens_per_s": sum(b.n_tokens for b in steps) / (step_s * len(steps)),
              "padding_share": 1 - real / positions,
              "gflop_per_step": flops / len(steps) / 1e9, "matmul_peak_gflops_1thread": peak,
              "share_of_matmul_peak": flops / len(steps) / step_s / 1e9 / peak,
              "useful_share_of_matmul_peak": useful / len(steps) / step_s / 1e9 / peak,
              "families": rows, "machine": common.machine_info()}
    if not args.json:
        print(f"{args.preset} ({cfg.norm}-LN), V={V}, {settings['max_tokens']}-token batches, {len(steps)} steps, "
              f"one thread: {result['step_ms']:.0f} ms/step, {result['target_tokens_per_s']:,.0f} target tok/s, "
              f"padding {100 * result['padding_share']:.1f}% of positions")
        print(f"matmul peak {peak:.0f} GFLOP/s; the step reaches {100 * result['share_of_matmul_peak']:.0f}% of it "
              f"({100 * result['useful_share_of_matmul_peak']:.0f}% counting real tokens only)")
    common.emit(result, args.json, table_rows=rows, columns=("family", "share", "ms_per_step"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
