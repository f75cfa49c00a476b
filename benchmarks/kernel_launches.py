"""GPU kernel launches per training step, counted on the CPU with cupysim.

    python benchmarks/kernel_launches.py                      # tiny, small and base
    python benchmarks/kernel_launches.py --preset small --top 15 --json

A GPU step made of many small kernels is bound by the launch overhead (a few
microseconds each, paid on the Python side), not by arithmetic: at B=8,
S=T=64 a ``small`` step does about 20 GFLOP, a few milliseconds of an H100's
matmul rate, while a thousand launches cost several milliseconds more. The
count is the figure that fusing kernels has to bring down, and it needs no
GPU: cupysim counts every operation that CuPy would run as a kernel
(npformer/cupysim.py, ``kernel_launches``). It is a lower bound: one
CuPy call may launch more than one kernel.

One training step (forward, label-smoothed loss, backward, gradient norm,
fused Adam) of each preset, float32, the preset's dropout, one worker, on the
batch of benchmarks/train_step.py (B=8, S=T=64, V=8192), after one step that
is not counted. It prints launches per step and the lines of npformer that
launch the most.
"""
from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def count_step(preset_name: str, B=8, S=64, T=64, V=8192, top=10) -> dict:
    """Launches of one training step of ``preset_name`` on cupysim, and the busiest lines."""
    import numpy as np

    from benchmarks.workload import make_batch
    from npformer.data.batching import Batch
    from npformer.model.config import preset
    from npformer.cupysim import kernel_launches
    from npformer.train.state import init_state
    from npformer.train.trainer import train_step

    cfg = preset(preset_name, vocab_size=V)
    src, tgt_in, tgt_out = make_batch(B, S, T, V, seed=0)
    batch = Batch(src, tgt_in, tgt_out, int((tgt_out != cfg.pad_id).sum()), np.arange(B))
    state = init_state(cfg, seed=0, backend="cupysim", dtype="float32", workers=1)
    train_step(state, cfg, batch, 1e-4)  # buffers made on the first step are not counted
    with kernel_launches() as launches:
        train_step(state, cfg, batch, 1e-4)
    prefix = os.path.join(ROOT, "")
    return {"preset": preset_name, "launches": len(launches), "n_layers": cfg.n_layers,
            "top": [{"where": w.replace(prefix, ""), "launches": n} for w, n in launches.where.most_common(top)]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", action="append", choices=("tiny", "small", "base"),
                    help="a preset to count (repeatable; default tiny, small and base)")
    ap.add_argument("--top", type=int, default=10, help="how many of the busiest lines to list")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    sys.path.insert(0, ROOT)
    from benchmarks import common
    rows = [count_step(p, top=args.top) for p in (args.preset or ["tiny", "small", "base"])]
    if not args.json:
        for r in rows:
            print(f"{r['preset']}: the lines that launch the most")
            for t in r["top"]:
                print(f"  {t['launches']:5d}  {t['where']}")
    common.emit({"benchmark": "kernel_launches", "backend": "cupysim", "dtype": "float32",
                 "shapes": {"B": 8, "S": 64, "T": 64, "V": 8192}, "rows": rows}, args.json,
                table_rows=[{"preset": r["preset"], "layers per stack": r["n_layers"],
                             "kernel launches per step": r["launches"]} for r in rows])
    return 0


if __name__ == "__main__":
    sys.exit(main())
