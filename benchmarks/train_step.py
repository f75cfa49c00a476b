"""Time one full training step of npformer, and of the same model in PyTorch.

    python benchmarks/train_step.py --preset small [--threads 2] [--backend numpy|cupy] [--json]

A step is: forward, label-smoothed loss, backward, Adam update (float32). For
each framework a fresh worker subprocess first CHECKS the computation (below),
then times ``--repeats`` steps after ``--warmup`` untimed ones. Workers of
npformer and PyTorch alternate for ``--rounds`` rounds, so both see the same
machine conditions, and the medians over all timed steps are compared. The
PyTorch model is benchmarks/torch_baseline.py, the shapes and batch
benchmarks/workload.py.

The check. Both workers start from the SAME weights, npformer's
``init_params(cfg, seed=0)`` (the torch worker loads them with
``torch_baseline.load_npformer_params``), and run ``--check-steps`` (2 to 4,
default 3) full training steps with dropout off on the same batch at the same
fixed lr (1e-4, as the timed steps). The driver then compares the two
frameworks' losses step by step: at every step |l_npformer - l_torch| /
|l_torch| must be <= ``CHECK_RTOL`` = 2e-4 (float32; ``CHECK_RTOL_TF32`` =
5e-3 with ``--tf32`` on a GPU), and npformer's loss must fall at every step;
otherwise it stops with exit status 1 and a message naming the step and both
losses, before any timing is reported. Step 1 compares the forward pass and the
loss; the later steps compare the gradients and the update, since they are what
moved the weights. Measured on the CPU (2-core AMD EPYC, NumPy/OpenBLAS against
PyTorch 2.13 CPU; tiny, small and base, B 4 to 16, V 300 to 37000, 1 and 2
workers), correct code agrees to <= 1.4e-7 at step 1, <= 2.5e-6 at step 2 and
<= 2.5e-5 at steps 3 and 4; the difference grows fast after (1.6e-4 for base at
step 5, 6e-4 at step 9: float32 rounding amplified by Adam, whose first updates
move every weight by about lr whatever its gradient's size), hence the cap of
4 steps. Planted bugs in npformer's update (gradients applied to the wrong
parameters) fail it at step 2: W_q's and W_k's gradients swapped in every
attention gives 2.4e-4 (tiny; 4.6e-4 at step 3), 8.9e-4 (small) and 5.4e-4
(base); the encoder's and decoder's feed-forward gradients swapped, 1.8e-3
(tiny), 1.1e-2 (small) and 8.3e-3 (base). The check that this replaced (the
last of a few losses below the first, with different initial weights on the
two sides) passed such a bug: npformer 9.502, 9.458, 9.464 against PyTorch
9.500, 9.335, 9.170. Without PyTorch (``--no-torch``, or torch missing) only npformer's
losses are checked: finite and falling at every step. The timed steps that
follow use the preset's dropout. The JSON's ``check`` holds both sides' check
losses, the tolerance and the largest relative difference at each step.

Reported per framework: median step time, tokens/s (non-pad source + target),
model GFLOP/s (3 x forward matmul FLOPs, see workload.forward_flops),
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
import math
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

LR = 1e-4           # every step's learning rate, check and timed, on both sides (no schedule)
CHECK_SEED = 0      # both sides start the check from npformer's init_params(cfg, seed=CHECK_SEED)
# Largest relative difference |l_npformer - l_torch| / |l_torch| allowed at any check
# step, float32. Measured on the CPU for correct code (module docstring): <= 2.5e-6 at
# step 2, <= 2.5e-5 at steps 3 and 4, but up to 1.6e-4 at step 5 (float32 rounding,
# amplified by Adam's sign-like early updates), hence at most MAX_CHECK_STEPS steps.
CHECK_RTOL = 2e-4
MAX_CHECK_STEPS = 4
# With --tf32 on a GPU both sides round matrix-product inputs to 10 mantissa bits, in
# different places. Not measured yet (no GPU run so far): set from TF32's rounding
# (2^-11 = 4.9e-4 per input) with room; it still catches gross bugs at the sizes
# gpu_check.sh runs (the encoder's and decoder's feed-forward gradients swapped:
# 1.1e-2 on small, 8.3e-3 on base at step 2), not the subtlest (W_q/W_k gradients
# swapped: 2.4e-4 to 8.9e-4), which the float32 runs catch.
CHECK_RTOL_TF32 = 5e-3


class CheckFailed(RuntimeError):
    """The computation check before timing failed: the message says at which step and why."""


def check_decreases(losses, who="npformer") -> None:
    """Dropout off, one batch, a small lr: every check step's loss is finite and
    below the one before."""
    for i, x in enumerate(losses):
        if not math.isfinite(x):
            raise CheckFailed(f"computation check failed: {who}'s loss at check step {i + 1} is {x} ({losses})")
        if i and not x < losses[i - 1]:
            raise CheckFailed(f"computation check failed: {who}'s loss did not decrease at check step {i + 1}: "
                              f"{losses[i - 1]:.6f} -> {x:.6f} (losses {losses})")


def compare_check_losses(npformer_losses, torch_losses, rtol=CHECK_RTOL, context="") -> list:
    """npformer's and PyTorch's check losses, step by step: the relative difference
    |a - b| / |b| at each step (returned) must stay within ``rtol``."""
    if len(npformer_losses) != len(torch_losses):
        raise CheckFailed(f"computation check failed: {len(npformer_losses)} npformer check losses, "
                          f"{len(torch_losses)} PyTorch ones")
    diffs = []
    for i, (a, b) in enumerate(zip(npformer_losses, torch_losses)):
        d = abs(a - b) / abs(b) if math.isfinite(a) and math.isfinite(b) and b else math.inf
        diffs.append(d)
        if not d <= rtol:
            raise CheckFailed(
                f"computation check failed at check step {i + 1} of {len(torch_losses)}: npformer loss {a:.6f}, "
                f"PyTorch loss {b:.6f}, relative difference {d:.2e} > tolerance {rtol:.0e}{context}\n"
                f"  npformer losses: {[round(x, 6) for x in npformer_losses]}\n"
                f"  PyTorch losses:  {[round(x, 6) for x in torch_losses]}")
    return diffs


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
    from npformer.runtime.cpu import tune_openblas
    tune_openblas()  # before NumPy loads: OpenBLAS's kernel choice (npformer/runtime/cpu.py)
    import numpy as np
    from benchmarks.workload import make_batch
    from npformer.model.config import preset
    B, S, T, V = args.batch, args.src_len, args.tgt_len, args.vocab
    src, tgt_in, tgt_out = make_batch(B, S, T, V, seed=0)
    cfg = preset(args.preset, vocab_size=V)     # the timed steps: the preset's dropout
    check_cfg = cfg.replace(p_drop=0.0)         # the check: no dropout, so both sides compute one function
    base_rss = _rss_now_mib()

    if args.worker == "npformer":
        from npformer.backend import get_backend
        from npformer.data.batching import Batch
        from npformer.train.state import init_state
        from npformer.train.trainer import train_step
        be = get_backend(args.backend)
        # init_params(cfg, seed=CHECK_SEED), as the torch worker loads them
        state = init_state(cfg, seed=CHECK_SEED, backend=be, dtype="float32", workers=args.workers)
        batch = Batch(src, tgt_in, tgt_out, int((tgt_out != cfg.pad_id).sum()), np.arange(B))
        sync = be.synchronize

        def step(c=cfg):  # the training loop's own step: forward, loss, backward, norm, Adam
            return train_step(state, c, batch, LR)[0]

        def check_step():
            return step(check_cfg)
        dtypes = sorted({str(p.dtype) for p in state.params.values()})
        tf32 = be.name == "cupy" and os.environ.get("CUPY_TF32") == "1"

        def gpu_peak_mib():
            return be.xp.get_default_memory_pool().total_bytes() / 2 ** 20 if be.name == "cupy" else None
    else:
        from benchmarks.torch_baseline import (build, load_npformer_params, make_optimizer, no_dropout,
                                               train_step_fn)
        from npformer.model.params import init_params
        device = "cuda" if args.backend == "cupy" else "cpu"
        model = build(cfg, V, seed=0).to(device)
        params = init_params(cfg, seed=CHECK_SEED, dtype="float32")  # npformer's initial weights
        load_npformer_params(model, params, cfg)
        del params  # (freed before the steps, whose peak memory is reported)
        tstep = train_step_fn(model, make_optimizer(model, lr=LR))
        src, tgt_in, tgt_out = (torch.from_numpy(a).to(device) for a in (src, tgt_in, tgt_out))
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

        def step():
            return tstep(src, tgt_in, tgt_out)

        def check_step():
            with no_dropout(model):
                return step()
        dtypes = sorted({str(p.dtype) for p in model.parameters()})
        tf32 = device == "cuda" and bool(torch.backends.cuda.matmul.allow_tf32)

        def gpu_peak_mib():
            return torch.cuda.max_memory_reserved() / 2 ** 20 if device == "cuda" else None

    check_losses = [check_step() for _ in range(args.check_steps)]  # compared by the driver
    if not all(np.isfinite(check_losses)):
        raise SystemExit(f"{args.worker}: computation check failed, non-finite losses {check_losses}")
    median, times = common.median_time(step, warmup=args.warmup, repeats=args.repeats, sync=sync)
    return {"framework": args.worker, "times": times, "check_losses": check_losses, "dtypes": dtypes,
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
    except (ImportError, ValueError):
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
            "check_losses": runs[0]["check_losses"], "dtypes": runs[0]["dtypes"]}


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
                    help="alternating npformer/torch worker rounds (default 6; see benchmarks/README.md)")
    ap.add_argument("--check-steps", type=int, default=3,
                    help=f"steps of the computation check before timing, 2 to {MAX_CHECK_STEPS} (module docstring)")
    ap.add_argument("--steps", type=int, default=None, help="shorthand: --repeats N --rounds 1 (smoke runs)")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--tf32", action="store_true", help="on a GPU: allow TF32 matrix products on both sides")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--worker", choices=("npformer", "torch"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if not 2 <= args.check_steps <= MAX_CHECK_STEPS:
        ap.error(f"--check-steps must be 2 to {MAX_CHECK_STEPS}: the loss must fall, and beyond "
                 f"{MAX_CHECK_STEPS} steps float32 rounding alone moves the two frameworks' losses "
                 f"close to the tolerance {CHECK_RTOL:g}")
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
    from npformer.runtime.cpu import tune_openblas
    tune_openblas()  # before NumPy loads: OpenBLAS's kernel choice (npformer/runtime/cpu.py)
    from npformer.runtime.cpu import blas_tuning
    from benchmarks.workload import batch_tokens, make_batch, train_flops
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
    rtol = CHECK_RTOL_TF32 if args.tf32 and args.backend == "cupy" else CHECK_RTOL
    context = (f" (both from npformer's init_params(seed={CHECK_SEED}), dropout off, lr {LR:g}, the same batch, "
               f"float32{', TF32 on' if rtol == CHECK_RTOL_TF32 else ''})")
    runs = {"npformer": [], "torch": []}
    diffs = []
    with common.OtherLoad() as load:
        for r in range(args.rounds):
            runs["npformer"].append(run_worker(args, "npformer"))
            npf_losses = runs["npformer"][-1]["check_losses"]
            try:
                check_decreases(npf_losses, "npformer")
                if with_torch:
                    runs["torch"].append(run_worker(args, "torch"))
                    diffs.append(compare_check_losses(npf_losses, runs["torch"][-1]["check_losses"], rtol,
                                                      f"{context}, round {r + 1}"))
            except CheckFailed as e:
                raise SystemExit(str(e)) from None
    npf = summarize(runs["npformer"], flops, toks, peak)
    check = {"steps": args.check_steps, "lr": LR, "seed": CHECK_SEED, "p_drop": 0.0,
             "npformer_losses": npf_losses, "decreasing": True, "compared_with_torch": with_torch}
    if with_torch:
        per_step = [max(d[i] for d in diffs) for i in range(args.check_steps)]
        check.update(torch_losses=runs["torch"][-1]["check_losses"], rtol=rtol, rel_diff_per_step=per_step,
                     max_rel_diff=max(per_step))
    result = {"benchmark": "train_step", "preset": args.preset, "backend": args.backend, "dtype": "float32",
              "threads": args.threads, "workers": args.workers, "shapes": {"B": B, "S": S, "T": T, "V": V},
              "tokens_per_step": toks, "train_gflop_per_step": flops / 1e9,
              "matmul_peak_gflops": peak, "other_load_cores": load.other_cores,
              "blas_tuning": blas_tuning(), "machine": common.machine_info(), "check": check, **npf}
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
        if with_torch:
            print(f"check passed: {args.check_steps} steps from the same weights, npformer and PyTorch losses "
                  f"agree within {check['max_rel_diff']:.1e} relative (tolerance {rtol:.0e})")
        else:
            print(f"check passed: {args.check_steps} steps, npformer's loss is finite and decreases "
                  f"(no PyTorch to compare with)")
    common.emit(result, args.json, rows)
    if not args.json and with_torch:
        print(f"ratio npformer/pytorch: time {result['ratio']['time']:.2f}x, "
              f"peak memory {result['ratio']['peak_mem']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
