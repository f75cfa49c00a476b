"""Training throughput over MPI ranks and threads, and the all-reduce's share of a step.

    python benchmarks/distributed.py [--preset small] [--layouts 1x2,2x1,2x2] [--steps 20] [--json]

A layout PxW is P processes (ranks, started with ``mpiexec -n P``; P = 1 runs
without MPI) of W worker threads each. Every layout trains the same model on
the same batches: the ``--preset`` model with a V = 8000 vocabulary (the
bundled corpus' BPE size) on random sentences of 10..50 target tokens, batched
to about ``--max-tokens`` padded positions, as ``npformer train`` batches the
corpus. Each worker process first CHECKS (the loss is finite and falls over the
first steps, and at the end the ranks' parameters are identical), then times
``--steps`` steps of the training loop's ``train_step`` after ``--warmup``
untimed ones.

Reported per layout: median step time, target tokens/s (over all ranks),
all-reduce seconds per step (the gradient buckets, timed around the
communicator's call) and their share of the step, gradient bytes. On a shared
or oversubscribed machine (2x2 on 2 cores is oversubscribed, for the record)
the figures are noisy; compare layouts measured in one run.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

VOCAB = 8000  # the bundled corpus' shared BPE vocabulary (8000 merges)


def synthetic_batches(max_tokens: int, seed: int = 0):
    """``batches(step)``: random sentence pairs of 10..50 tokens, padded per batch
    to about ``max_tokens`` positions; a pure function of the step."""
    import numpy as np

    from npformer.data.batching import Batch

    def batches(step):
        rng = np.random.default_rng([seed, step])
        length = int(rng.integers(10, 51))
        B = max(1, max_tokens // (length + 1))
        S = rng.integers(length // 2, length + 1, size=B)
        src = np.zeros((B, length), dtype=np.int64)
        tgt_in, tgt_out = (np.zeros((B, length + 1), dtype=np.int64) for _ in range(2))
        for b in range(B):
            src[b, :S[b]] = rng.integers(4, VOCAB, S[b])
            ids = rng.integers(4, VOCAB, S[b])
            tgt_in[b, 0], tgt_in[b, 1:S[b] + 1] = 1, ids  # BOS = 1
            tgt_out[b, :S[b]], tgt_out[b, S[b]] = ids, 2  # EOS = 2
        return Batch(src, tgt_in, tgt_out, int((tgt_out != 0).sum()), np.arange(B))
    return batches


def worker(args) -> None:
    """One rank of one layout: check, time, and (rank 0) print one JSON line."""
    from npformer.runtime.distributed import launch
    from npformer.model.config import preset
    from npformer.train.ranks import require_parameters_agree, workers_per_rank
    from npformer.train.schedule import noam_lr
    from npformer.train.state import init_state
    from npformer.train.trainer import train_step

    with launch(args.backend, "benchmark") as comm:
        cfg = preset(args.preset, vocab_size=VOCAB, p_drop=0.1)
        workers = workers_per_rank(args.workers, args.backend, comm)  # as npformer train sets a rank up
        state = init_state(cfg, seed=0, backend=args.backend, workers=workers, comm=comm)
        batches = synthetic_batches(args.max_tokens)
        reduce_s = []
        if comm.size > 1:  # time the gradient all-reduce inside the step
            real = comm.allreduce_sum

            def timed(buffers, what=""):
                t0 = time.perf_counter()
                real(buffers, what)
                if "gradient" in what:  # the buckets; not the loss's 8-byte sum
                    reduce_s.append(time.perf_counter() - t0)
            comm.allreduce_sum = timed
        losses, steps, tokens = [], [], []
        for t in range(1, args.warmup + args.steps + 1):
            batch = batches(t)
            t0 = time.perf_counter()
            loss, _, n = train_step(state, cfg, batch, noam_lr(t, cfg.d_model, 100, 1.0), clip=1.0)
            steps.append(time.perf_counter() - t0)
            losses.append(loss)
            tokens.append(n)
        require_parameters_agree(state)
        if not all(map(lambda x: x == x and abs(x) < 1e4, losses)) or not losses[-1] < losses[0]:
            raise RuntimeError(f"check failed: the loss did not fall from {losses[0]:.3f} ({losses[-1]:.3f})")
        if comm.rank != 0:
            return
        timed_steps, timed_reduce = steps[args.warmup:], reduce_s[args.warmup:] if reduce_s else [0.0]
        step_s, reduce = statistics.median(timed_steps), statistics.median(timed_reduce)
        grad_bytes = sum(p.nbytes for p in state.params.values())
        print(json.dumps({"layout": f"{comm.size}x{state.workers.n}", "ranks": comm.size,
                          "workers": state.workers.n, "preset": args.preset, "backend": args.backend or "numpy",
                          "steps": args.steps, "step_s": step_s,
                          "tokens_per_s": sum(tokens[args.warmup:]) / sum(timed_steps),
                          "allreduce_s": reduce, "allreduce_share": reduce / step_s,
                          "grad_bytes": grad_bytes, "first_loss": losses[0], "last_loss": losses[-1]}),
              flush=True)


def run_layout(layout: str, args) -> dict:
    P, W = (int(x) for x in layout.lower().split("x"))
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--preset", args.preset, "--workers", str(W),
           "--steps", str(args.steps), "--warmup", str(args.warmup), "--max-tokens", str(args.max_tokens)]
    if args.backend:
        cmd += ["--backend", args.backend]
    if P > 1:
        mpiexec = shutil.which("mpiexec", path=os.pathsep.join([os.path.dirname(sys.executable),
                                                                 os.environ.get("PATH", "")]))
        if mpiexec is None:
            raise SystemExit("mpiexec not found: pip install '.[mpi]'")
        cmd = [mpiexec, "-n", str(P), *cmd]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"layout {layout} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="small")
    p.add_argument("--layouts", default="1x2,2x1,2x2", help="PxW: P ranks of W threads, comma-separated")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--max-tokens", type=int, default=2000)
    p.add_argument("--backend", default=None)
    p.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    from benchmarks.common import emit, machine_info
    rows = [run_layout(layout, args) for layout in args.layouts.split(",")]
    result = {"machine": machine_info(), "layouts": rows}
    table = [{"layout": r["layout"], "step_s": r["step_s"], "tokens/s": r["tokens_per_s"],
              "allreduce_s": r["allreduce_s"], "allreduce_share": r["allreduce_share"],
              "grad_MiB": r["grad_bytes"] / 2 ** 20} for r in rows]
    emit(result, args.json, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
