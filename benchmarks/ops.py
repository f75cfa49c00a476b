"""Forward and backward time of every op at the `small` and `base` shapes: where the time goes.

    python benchmarks/ops.py [--preset small|base|both] [--threads 2] [--backend numpy] [--json]

Shapes follow train_step.py: B=8 sentences of T=64 tokens, V=8192, and the
preset's d_model, h, d_ff. Each op's case is built once; its forward and its
backward are timed separately (median of --repeats after one warm-up), after
checking that the forward output and every gradient are finite. The share
column is the op's forward+backward time over the sum for all ops (an op
appears once, though the model calls most of them many times per step).
"""
from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def cases(preset, be, B=8, T=64, V=8192):
    import numpy as np
    from npformer import ops
    from npformer.model.config import preset as get_preset
    from npformer.model.masks import padding_mask, target_mask
    cfg = get_preset(preset, vocab_size=V)
    d, h, f = cfg.d_model, cfg.h, cfg.d_ff
    rng = np.random.default_rng(0)

    def r(*shape, scale=1.0):
        return be.asarray(rng.standard_normal(shape) * scale, dtype="float32")

    ids = rng.integers(3, V, (B, T))
    ids[-2:, 48:] = 0
    ids = be.asarray(ids)
    attn_p = {k: (r(d, d, scale=d ** -0.5) if k[0] == "W" else r(d, scale=0.1)) for k in ops.multihead.PARAM_NAMES}
    ffn_p = {"W_1": r(d, f, scale=d ** -0.5), "b_1": r(f), "W_2": r(f, d, scale=f ** -0.5), "b_2": r(d)}
    split = lambda x: x.reshape(B, T, h, d // h).transpose(0, 2, 1, 3).copy()  # noqa: E731
    return {
        "linear (d_model -> d_model)": (ops.linear_forward, ops.linear_backward, (r(B, T, d), r(d, d), r(d))),
        "relu (B, T, d_ff)": (ops.relu_forward, ops.relu_backward, (r(B, T, f),)),
        "softmax (B, h, T, T)": (ops.softmax_forward, ops.softmax_backward, (r(B, h, T, T),)),
        "layernorm": (ops.layernorm_forward, ops.layernorm_backward, (r(B, T, d), r(d), r(d))),
        "dropout p=0.1": (lambda x: ops.dropout_forward(x, 0.1, be.rng(0)), ops.dropout_backward, (r(B, T, d),)),
        "residual": (ops.residual_forward, ops.residual_backward, (r(B, T, d), r(B, T, d))),
        "embedding (V, d_model)": (lambda i, E: ops.embedding_forward(i, E, d ** 0.5), ops.embedding_backward,
                                   (ids, r(V, d))),
        "attention (masked)": (lambda Q, K, Vv: ops.attention_forward(Q, K, Vv, target_mask(ids)),
                               ops.attention_backward, (split(r(B, T, d)), split(r(B, T, d)), split(r(B, T, d)))),
        "self-attention (h heads)": (lambda x: ops.self_attention_forward(x, attn_p, h, target_mask(ids)),
                                     ops.self_attention_backward, (r(B, T, d),)),
        "cross-attention": (lambda x, m: ops.cross_attention_forward(x, m, attn_p, h, padding_mask(ids)),
                            ops.cross_attention_backward, (r(B, T, d), r(B, T, d))),
        "feed-forward": (lambda x: ops.feedforward_forward(x, ffn_p), ops.feedforward_backward, (r(B, T, d),)),
        "output projection + cross-entropy": (
            lambda H, E: _proj_ce(H, E, ids), _proj_ce_backward, (r(B, T, d), r(V, d, scale=d ** -0.5))),
    }


def _proj_ce(H, E, targets):
    from npformer.ops.cross_entropy import cross_entropy_forward
    logits = H @ E.T  # (B, T, V)
    loss, cache = cross_entropy_forward(logits, targets, 0, 0.1)
    return loss, (cache, H, E)


def _proj_ce_backward(dloss, caches):
    from npformer.ops.cross_entropy import cross_entropy_backward
    cache, H, E = caches
    dlogits = cross_entropy_backward(dloss, cache)
    return dlogits @ E, dlogits.reshape(-1, dlogits.shape[-1]).T @ H.reshape(-1, H.shape[-1])


def _finite(xp, out):
    if isinstance(out, dict):
        return all(_finite(xp, v) for v in out.values())
    if isinstance(out, (tuple, list)):
        return all(_finite(xp, v) for v in out)
    return bool(xp.isfinite(out).all())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="both", choices=("small", "base", "both"))
    ap.add_argument("--backend", default="numpy", choices=("numpy", "cupy", "cupysim"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    from benchmarks import common
    common.set_threads(args.threads)
    from npformer.runtime.cpu import tune_openblas
    tune_openblas()  # before NumPy loads: OpenBLAS's kernel choice (npformer/runtime/cpu.py)
    from npformer.backend import get_backend
    be = get_backend(args.backend)
    rows = []
    for preset in (("small", "base") if args.preset == "both" else (args.preset,)):
        timed = []
        for name, (fwd, bwd, inputs) in cases(preset, be).items():
            y, cache = fwd(*inputs)
            dy = be.xp.ones_like(y) if getattr(y, "ndim", 0) else 1.0
            grads = bwd(dy, cache)
            if not (_finite(be.xp, y) and _finite(be.xp, grads)):
                raise SystemExit(f"{preset} {name}: non-finite output or gradient")
            t_f, _ = common.median_time(lambda fwd=fwd, inputs=inputs: fwd(*inputs), warmup=1,
                                        repeats=args.repeats, sync=be.synchronize)
            t_b, _ = common.median_time(lambda bwd=bwd, dy=dy, cache=cache: bwd(dy, cache), warmup=1,
                                        repeats=args.repeats, sync=be.synchronize)
            timed.append({"preset": preset, "op": name, "forward_ms": 1e3 * t_f, "backward_ms": 1e3 * t_b})
        total = sum(r["forward_ms"] + r["backward_ms"] for r in timed)
        for r in timed:
            r["share"] = (r["forward_ms"] + r["backward_ms"]) / total
        rows += timed
    result = {"benchmark": "ops", "backend": args.backend, "dtype": "float32", "threads": args.threads,
              "shapes": {"B": 8, "T": 64, "V": 8192}, "machine": common.machine_info(), "rows": rows}
    if not args.json:
        print(f"ops, float32, {args.backend}, {args.threads} threads, B=8 T=64 V=8192")
    common.emit(result, args.json, rows, ["preset", "op", "forward_ms", "backward_ms", "share"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
