"""How data-parallel training would scale: compute per step, gradient bytes, a
ring all-reduce over a stated bandwidth, projected throughput and efficiency.

    python benchmarks/scaling_model.py [--measured distributed.json] [--json]

Every assumption is a named constant or option below. The model, per step:

    compute   t_c: one rank's forward + backward + Adam on its share of the batch
              (weak scaling: each rank keeps its share, the global batch grows with P)
    bytes     G = 4 bytes x parameters (float32 gradients)
    all-reduce  a ring moves 2 (P - 1) / P x G through every rank's slowest link:
              t_r = 2 (P - 1) / P x G / bandwidth + 2 (P - 1) x latency
    step      t_c + t_r (no overlap: npformer all-reduces after the whole backward)
    throughput  P x tokens per rank / step;  efficiency = t_c / (t_c + t_r)

Rows:
  * ``small`` on this machine, from ``benchmarks/distributed.py --json`` output
    (``--measured``): its 2x1 layout's step and all-reduce times, P = 2 ranks
    over shared memory (the measured all-reduce, not the formula).
  * ``base`` on 8 GPUs in one node (NVLink) and on 8 nodes x 8 GPUs (100 Gb/s
    between nodes, NVLink inside): t_c from the forward FLOPs of a rank's share
    (benchmarks/workload.forward_flops) x 3 (forward + backward) at an
    assumed sustained rate. For 8 x 8 the slowest link of a ring ordered node by
    node is a node's network card, which carries the ring's traffic once.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# The paper's batches: about 25000 source and 25000 target tokens over 8 GPUs (§5.1, §5.2).
PAPER_TARGET_TOKENS = 25000
PAPER_GPUS = 8
VOCAB_BASE = 37000         # the paper's shared BPE vocabulary for EN-DE (§5.1)
SENTENCE_TOKENS = 27       # typical padded sentence length in those batches (S = T)
GPU_SUSTAINED_TFLOPS = 20.0  # float32 matmuls through CuPy on an H100/H200-class GPU, ~30% of its
                             # non-tensor-core peak: npformer has no fused kernels or mixed precision
NVLINK_BUS_GBPS = 300.0    # NCCL's all-reduce "bus bandwidth" inside an 8-GPU NVLink node, GB/s
NETWORK_GBPS = 100 / 8     # 100 Gb/s between nodes = 12.5 GB/s per node
LATENCY_S = {"nvlink": 5e-6, "network": 10e-6, "shm": 2e-6}  # per ring hop


def ring_allreduce_s(nbytes: float, P: int, bandwidth_gbps: float, latency_s: float) -> float:
    """Seconds of a ring all-reduce of ``nbytes`` over ``P`` ranks."""
    if P == 1:
        return 0.0
    return 2 * (P - 1) / P * nbytes / (bandwidth_gbps * 1e9) + 2 * (P - 1) * latency_s


def base_rows(gpu_tflops: float) -> list[dict]:
    from benchmarks.workload import forward_flops
    from npformer.model.config import preset
    from npformer.model.params import param_shapes
    import math
    cfg = preset("base", vocab_size=VOCAB_BASE)
    n_params = sum(math.prod(s) for s in param_shapes(cfg).values())
    grad_bytes = 4 * n_params
    tokens = PAPER_TARGET_TOKENS // PAPER_GPUS        # target tokens per GPU per step
    B = max(1, tokens // SENTENCE_TOKENS)
    flops = 3 * forward_flops("base", B, SENTENCE_TOKENS, SENTENCE_TOKENS, VOCAB_BASE)
    t_c = flops / (gpu_tflops * 1e12)
    rows = []
    for name, P, bandwidth, latency in [
            ("base, 8 GPUs, one node (NVLink)", 8, NVLINK_BUS_GBPS, LATENCY_S["nvlink"]),
            ("base, 8 nodes x 8 GPUs (100 Gb/s)", 64, NETWORK_GBPS, LATENCY_S["network"])]:
        rows.append(row(name, P, tokens, t_c, grad_bytes, ring_allreduce_s(grad_bytes, P, bandwidth, latency),
                        f"{bandwidth:g} GB/s"))
    return rows


def row(name, P, tokens_per_rank, t_c, grad_bytes, t_r, link) -> dict:
    step = t_c + t_r
    return {"setup": name, "ranks": P, "compute_s": t_c, "grad_MB": grad_bytes / 1e6, "link": link,
            "allreduce_s": t_r, "step_s": step, "tokens_per_s": P * tokens_per_rank / step,
            "efficiency": t_c / step}


def measured_rows(path: str) -> list[dict]:
    """The small preset's row from ``benchmarks/distributed.py --json`` output."""
    with open(path) as f:
        result = json.loads(f.read().strip().splitlines()[-1])
    rows = []
    for r in result["layouts"]:
        if r["ranks"] > 1 and r["workers"] == 1:
            t_r = r["allreduce_s"]
            t_c = r["step_s"] - t_r
            tokens_per_rank = r["tokens_per_s"] * r["step_s"] / r["ranks"]
            rows.append(row(f"{r['preset']}, this machine, {r['layout']} (measured)", r["ranks"], tokens_per_rank,
                            t_c, r["grad_bytes"], t_r, "shared memory"))
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--measured", metavar="JSON", help="output of benchmarks/distributed.py --json")
    p.add_argument("--gpu-tflops", type=float, default=GPU_SUSTAINED_TFLOPS,
                   help=f"sustained float32 TFLOP/s of one GPU (default {GPU_SUSTAINED_TFLOPS:g})")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    from benchmarks.common import emit
    rows = (measured_rows(args.measured) if args.measured else []) + base_rows(args.gpu_tflops)
    assumptions = {"paper_target_tokens": PAPER_TARGET_TOKENS, "tokens_per_gpu": PAPER_TARGET_TOKENS // PAPER_GPUS,
                   "vocab_base": VOCAB_BASE, "sentence_tokens": SENTENCE_TOKENS, "gpu_tflops": args.gpu_tflops,
                   "nvlink_bus_GBps": NVLINK_BUS_GBPS, "network_GBps": NETWORK_GBPS, "latency_s": LATENCY_S}
    emit({"assumptions": assumptions, "rows": rows}, args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
