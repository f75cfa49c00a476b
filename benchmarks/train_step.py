"""Time one full training step of npformer, and of the same model in PyTorch.

    python benchmarks/train_step.py --preset small [--threads 2] [--backend numpy|cupy] [--json]

A step is: forward, label-smoothed loss, backward, Adam update (float32). For
each framework a fresh worker subprocess first CHECKS the computation (over a
few steps on one batch the loss is finite and decreases), then times
``--repeats`` steps after ``--warmup`` untimed ones. Workers of npformer and
PyTorch alternate for ``--rounds`` rounds, so both see the same machine
conditions, and the medians over all timed steps are compared.

Reported per framework: median step time, tokens/s (non-pad source + target),
model GFLOP/s (3 x forward matmul FLOPs, see torch_reference.forward_flops),
MFU = GFLOP/s / the float32 matmul peak measured in the same run, and memory:
``peak_rss_mib`` (the worker's peak resident set) and ``peak_mem_mib`` (the
peak minus the resident set after imports, i.e. model + optimizer + activations;
the framework's own import footprint, ~300 MiB for torch, is left out of the
ratio). ``ratio`` is npformer / PyTorch for step time and for peak_mem.

Threads: the worker sets OMP/OPENBLAS/MKL_NUM_THREADS before NumPy or torch
load, and torch.set_num_threads. npformer's step is the training loop's own
(``train_step``: forward, loss, backward, gradient norm, Adam), split over
``--workers`` data-parallel threads (npformer/train/parallel.py; default: one
per thread on NumPy), each with one BLAS thread. On a GPU (``--backend cupy``) the clock is
read after a device synchronise and PyTorch runs on CUDA. TF32 (tensor cores
rounding float32 matrix-product inputs to 10 mantissa bits) is off on both
sides unless ``--tf32`` turns it on for both: CuPy through ``CUPY_TF32=1``,
PyTorch through ``torch.backends.cuda.matmul.allow_tf32``; each side reports
what it ran with (``tf32``). GPU memory (``peak_gpu_mib``) is each caching
allocator's high-water mark: CuPy's memory pool size, PyTorch's
``max_memory_reserved``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


# ------------------------------------------------------------------ workers
def _rss_now_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def worker(args) -> dict:
    sys.path.insert(0, ROOT)
    from benchmarks import common
    common.set_threads(args.threads)
    os.environ["CUPY_TF32"] = "1" if args.tf32 else "0"  # read when CuPy loads
    if args.worker == "torch":
        import torch
        common.set_threads(args.threads)
        torch.backends.cuda.matmul.allow_tf32 = args.tf32
        torch.backends.cudnn.allow_tf32 = args.tf32
    import npformer  # noqa: F401  (before numpy: OpenBLAS kernel choice, see npformer/_cpu.py)
    import numpy as np
    from benchmarks.torch_reference import make_batch
    B, S, T, V = args.batch, args.src_len, args.tgt_len, args.vocab
    src, tgt_in, tgt_out = make_batch(B, S, T, V, seed=0)
    base_rss = _rss_now_mib()

    if args.worker == "npformer":
        from npformer.backend import get_backend
        from npformer.data.batching import Batch
        from npformer.model.config import preset
        from npformer.train.trainer import init_state, train_step
        be = get_backend(args.backend)
        cfg = preset(args.preset, vocab_size=V)
        state = init_state(cfg, seed=0, backend=be, dtype="float32", workers=args.workers)
        batch = Batch(src, tgt_in, tgt_out, int((tgt_out != cfg.pad_id).sum()), np.arange(B))
        sync = be.synchronize

        def step():  # the training loop's own step: forward, loss, backward, norm, Adam
            return train_step(state, cfg, batch, 1e-4)[0]
        dtypes = sorted({str(p.dtype) for p in state.params.values()})
        tf32 = be.name == "cupy" and os.environ.get("CUPY_TF32") == "1"

        def gpu_peak_mib():
            return be.xp.get_default_memory_pool().total_bytes() / 2 ** 20 if be.name == "cupy" else None
    else:
        from benchmarks.torch_reference import build, make_optimizer, train_step_fn
        device = "cuda" if args.backend == "cupy" else "cpu"
        model = build(args.preset, V, seed=0).to(device)
        tstep = train_step_fn(model, make_optimizer(model))
        src, tgt_in, tgt_out = (torch.from_numpy(a).to(device) for a in (src, tgt_in, tgt_out))
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

        def step():
            return tstep(src, tgt_in, tgt_out)
        dtypes = sorted({str(p.dtype) for p in model.parameters()})
        tf32 = device == "cuda" and bool(torch.backends.cuda.matmul.allow_tf32)

        def gpu_peak_mib():
            return torch.cuda.max_memory_reserved() / 2 ** 20 if device == "cuda" else None

    losses = [step() for _ in range(args.check_steps)]
    if not all(np.isfinite(losses)) or not losses[-1] < losses[0]:
        raise SystemExit(f"{args.worker}: computation check failed, losses {losses}")
    median, times = common.median_time(step, warmup=args.warmup, repeats=args.repeats, sync=sync)
    return {"framework": args.worker, "times": times, "losses": losses, "dtypes": dtypes,
            "peak_rss_mib": common.peak_rss_mib(), "base_rss_mib": base_rss, "tf32": tf32,
            "peak_gpu_mib": gpu_peak_mib()}


# ------------------------------------------------------------------ driver
def run_worker(args, framework) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", framework, "--preset", args.preset,
           "--threads", str(args.threads), "--workers", str(args.workers),
           "--backend", args.backend, "--batch", str(args.batch),
           "--src-len", str(args.src_len), "--tgt-len", str(args.tgt_len), "--vocab", str(args.vocab),
           "--warmup", str(args.warmup), "--repeats", str(args.repeats), "--check-steps", str(args.check_steps)]
    if args.tf32:
        cmd.append("--tf32")
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{framework} worker failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def torch_available() -> bool:
    try:
        import importlib.util
        return importlib.util.find_spec("torch") is not None
    except ValueError:
        return False


def summarize(runs, flops, toks, peak_gflops) -> dict:
    times = [t for r in runs for t in r["times"]]
    med = statistics.median(times)
    peak_rss = max(r["peak_rss_mib"] for r in runs)
    mem = max(r["peak_rss_mib"] - r["base_rss_mib"] for r in runs)
    gpu = [r["peak_gpu_mib"] for r in runs if r.get("peak_gpu_mib") is not None]
    return {"step_s_median": med, "step_s_min": min(times), "tokens_per_s": toks / med,
            "gflops": flops / med / 1e9, "mfu": flops / med / 1e9 / peak_gflops,
            "peak_rss_mib": peak_rss, "peak_mem_mib": mem, "peak_gpu_mib": max(gpu) if gpu else None,
            "tf32": runs[0]["tf32"], "n_steps_timed": len(times),
            "check_losses": runs[0]["losses"], "dtypes": runs[0]["dtypes"]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="small", choices=("tiny", "small", "base"))
    ap.add_argument("--backend", default="numpy", choices=("numpy", "cupy", "cupysim"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=None,
                    help="npformer's data-parallel worker threads (default: --threads on numpy, 1 on cupy)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--src-len", type=int, default=64)
    ap.add_argument("--tgt-len", type=int, default=64)
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5, help="timed steps per worker")
    ap.add_argument("--rounds", type=int, default=6,
                    help="alternating npformer/torch worker rounds (default 6: fewer do not average out a shared machine)")
    ap.add_argument("--check-steps", type=int, default=3)
    ap.add_argument("--steps", type=int, default=None, help="shorthand: --repeats N --rounds 1 (smoke runs)")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--tf32", action="store_true", help="on a GPU: allow TF32 matrix products on both sides")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--worker", choices=("npformer", "torch"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.workers is None:
        args.workers = args.threads if args.backend == "numpy" else 1
    if args.steps is not None:
        args.repeats, args.rounds, args.warmup = args.steps, 1, min(args.warmup, 1)
    if args.worker:
        print(json.dumps(worker(args)))
        return 0

    sys.path.insert(0, ROOT)
    from benchmarks import common
    common.set_threads(args.threads)
    import npformer  # noqa: F401
    from npformer._cpu import blas_tuning
    from benchmarks.torch_reference import batch_tokens, make_batch, train_flops
    B, S, T, V = args.batch, args.src_len, args.tgt_len, args.vocab
    src, _, tgt_out = make_batch(B, S, T, V, seed=0)
    toks = batch_tokens(src, tgt_out)["total"]
    flops = train_flops(args.preset, B, S, T, V)
    if args.backend == "cupy":
        os.environ["CUPY_TF32"] = "1" if args.tf32 else "0"  # the peak is measured as the steps run
        from npformer.backend import get_backend
        be = get_backend("cupy")
        peak = common.matmul_peak_gflops("float32", n=8192, xp=be.xp, sync=be.synchronize)
    else:
        peak = common.matmul_peak_gflops("float32", n=2048)
    with_torch = not args.no_torch and torch_available()
    runs = {"npformer": [], "torch": []}
    with common.OtherLoad() as load:
        for _ in range(args.rounds):
            runs["npformer"].append(run_worker(args, "npformer"))
            if with_torch:
                runs["torch"].append(run_worker(args, "torch"))
    npf = summarize(runs["npformer"], flops, toks, peak)
    result = {"benchmark": "train_step", "preset": args.preset, "backend": args.backend, "dtype": "float32",
              "threads": args.threads, "workers": args.workers, "shapes": {"B": B, "S": S, "T": T, "V": V},
              "tokens_per_step": toks, "train_gflop_per_step": flops / 1e9,
              "matmul_peak_gflops": peak, "other_load_cores": load.other_cores,
              "blas_tuning": blas_tuning(), "machine": common.machine_info(), **npf}
    rows = [{"framework": "npformer", **{k: npf[k] for k in ("step_s_median", "tokens_per_s", "gflops", "mfu",
                                                              "peak_rss_mib", "peak_mem_mib", "peak_gpu_mib",
                                                              "tf32")}}]
    if with_torch:
        tor = summarize(runs["torch"], flops, toks, peak)
        result.update({"torch_" + k: v for k, v in tor.items() if k not in ("dtypes",)})
        result["torch_step_s_median"] = tor["step_s_median"]
        result["ratio"] = {"time": npf["step_s_median"] / tor["step_s_median"],
                           "peak_mem": npf["peak_mem_mib"] / tor["peak_mem_mib"]}
        if npf["peak_gpu_mib"] and tor["peak_gpu_mib"]:
            result["ratio"]["peak_gpu_mem"] = npf["peak_gpu_mib"] / tor["peak_gpu_mib"]
        rows.append({"framework": "pytorch", **{k: tor[k] for k in rows[0] if k != "framework"}})
    if not args.json:
        m = result["machine"]
        print(f"train step, preset {args.preset}, B={B} S={S} T={T} V={V}, float32, {args.backend}, "
              f"{args.threads} threads, {args.workers} npformer workers; {m.get('cpu_model')}, "
              f"avx512f={m.get('avx512f')}, "
              f"OpenBLAS kernels {m.get('openblas_coretype_in_use')} (npformer: {blas_tuning()['reason']})")
        print(f"{toks} tokens/step, {flops / 1e9:.2f} GFLOP/step, matmul peak {peak:.0f} GFLOP/s, "
              f"other load {load.other_cores} cores")
    common.emit(result, args.json, rows)
    if not args.json and with_torch:
        print(f"ratio npformer/pytorch: time {result['ratio']['time']:.2f}x, "
              f"peak memory {result['ratio']['peak_mem']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
