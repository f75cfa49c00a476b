"""Decoding speed: greedy and beam search, with and without the key/value cache.

    python benchmarks/decode.py [--preset small] [--batch 8] [--src-len 32] [--lengths 16 64 256]
                                [--beam 4] [--dtype float32] [--backend numpy] [--threads 1] [--json]

The model has random weights (init_params), so EOS could come at any step. For
timing, every run is forced to produce exactly L output tokens: min_len = max_len
= L (EOS is not allowed before L tokens, and L is the limit). Beam search then
also runs all L steps, since every hypothesis finishes at the limit.

  cached     each step computes the new position only, from the key/value cache
  uncached   each step runs transformer_forward on the source and the whole prefix
             (so it also re-encodes the source; ``encoder_share`` estimates that part)

Output tokens/s = B * L / time: beam search is charged for the B best outputs,
not for its B * k rows. Uncached runs at L >= 256 are timed once (they are slow);
the others take the median of ``--repeats``.

Validation first: on a short free run (EOS allowed, 8 tokens) greedy and beam
outputs must be the same with and without the cache, and the greedy step logits
must agree to float32 rounding. On a shared machine timings are noisy: the
speed-up ratios are the figures to read, and ``other_load_cores`` says how busy
the other processes kept the CPU. ``--threads 1`` (default) keeps OpenBLAS from
fighting other jobs for cores; the cached step's matrix products are small anyway.
"""
import argparse
import os
import sys

if __package__:
    from benchmarks import common
else:  # run as a script: python benchmarks/decode.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from benchmarks import common


def build(args):
    """(cfg, params, src, be): a random ``preset`` model and B random sources of S tokens."""
    import numpy as np
    from npformer.backend import get_backend
    from npformer.model.config import preset
    from npformer.model.params import init_params

    be = get_backend(args.backend)
    cfg = preset(args.preset, vocab_size=args.vocab, max_len=max(512, max(args.lengths)))
    params = init_params(cfg, seed=args.seed, dtype=args.dtype, backend=be)
    rng = np.random.default_rng(args.seed)
    src = be.asarray(rng.integers(3, cfg.vocab_size, (args.batch, args.src_len)))  # (B, S)
    return cfg, params, src, be


def validate(cfg, params, src, beam):
    """Cached and uncached decoding agree on a short free run; returns the largest logit gap."""
    import numpy as np
    from npformer.decode import beam_search, greedy_decode

    out_c, logits_c = greedy_decode(params, cfg, src, max_len=8, return_logits=True)
    out_u, logits_u = greedy_decode(params, cfg, src, max_len=8, use_cache=False, return_logits=True)
    if out_c != out_u:
        raise SystemExit("validation failed: greedy outputs differ with and without the cache")
    gap = max(float(np.abs(a - b).max()) for a, b in zip(logits_c, logits_u))
    scale = max(float(np.abs(a).max()) for a in logits_u)
    if gap > 1e-4 * max(1.0, scale):
        raise SystemExit(f"validation failed: cached and uncached step logits differ by {gap:.3g}")
    if beam_search(params, cfg, src, beam, max_len=8) != beam_search(params, cfg, src, beam, max_len=8,
                                                                     use_cache=False):
        raise SystemExit("validation failed: beam outputs differ with and without the cache")
    return {"greedy_outputs_equal": True, "beam_outputs_equal": True, "max_abs_logit_diff": gap,
            "max_abs_logit": scale, "output_lengths": [len(o) for o in out_c]}


def time_runs(cfg, params, src, be, args):
    from npformer.decode import beam_search, encode, greedy_decode

    sync = be.synchronize if be.name == "cupy" else None
    t_encode, _ = common.median_time(lambda: encode(params, cfg, src), warmup=1, repeats=5, sync=sync)
    rows = []
    for L in args.lengths:
        for search in ("greedy", f"beam{args.beam}"):
            row = {"search": search, "L": L}
            for use_cache in (True, False):
                def run(L=L, search=search, use_cache=use_cache):
                    kw = dict(max_len=L, min_len=L, use_cache=use_cache)
                    if search == "greedy":
                        out = greedy_decode(params, cfg, src, **kw)
                    else:
                        out = beam_search(params, cfg, src, beam_size=args.beam, alpha=0.6, **kw)
                    assert all(len(o) == L for o in out)

                repeats = 1 if (not use_cache and L >= 256) else args.repeats
                with common.OtherLoad() as load:
                    med, times = common.median_time(run, warmup=0, repeats=repeats, sync=sync)
                name = "cached" if use_cache else "uncached"
                row[f"{name}_s"] = med
                row[f"{name}_tok_per_s"] = args.batch * L / med
                row[f"{name}_repeats"] = repeats
                row[f"{name}_other_load_cores"] = load.other_cores
            row["speedup"] = row["uncached_s"] / row["cached_s"]
            copies = 1 if search == "greedy" else args.beam  # the uncached beam encodes B*k rows
            row["encoder_share"] = min(1.0, L * copies * t_encode / row["uncached_s"])
            rows.append(row)
            print(f"  {search:>6} L={L:<4} cached {row['cached_s']:.3f} s  uncached {row['uncached_s']:.3f} s  "
                  f"speed-up {row['speedup']:.1f}x", file=sys.stderr, flush=True)
    return rows, t_encode


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="small")
    ap.add_argument("--vocab", type=int, default=8000)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--src-len", type=int, default=32)
    ap.add_argument("--lengths", type=int, nargs="+", default=[16, 64, 256])
    ap.add_argument("--beam", type=int, default=4)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--backend", default=None, help="numpy (default), cupy, or cupysim")
    ap.add_argument("--threads", type=int, default=1, help="BLAS threads (default 1)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print one JSON object last")
    args = ap.parse_args(argv)

    threads = common.set_threads(args.threads)  # before NumPy loads its BLAS
    from npformer.runtime.cpu import tune_openblas
    tune_openblas()  # before NumPy loads: OpenBLAS's kernel choice (npformer/runtime/cpu.py)
    from npformer.runtime.cpu import blas_tuning

    cfg, params, src, be = build(args)
    validation = validate(cfg, params, src, args.beam)
    print(f"decode benchmark: preset {args.preset} (d_model={cfg.d_model}, h={cfg.h}, d_ff={cfg.d_ff}, "
          f"N={cfg.n_layers}, V={cfg.vocab_size}), B={args.batch}, S={args.src_len}, {args.dtype}, "
          f"{be.name}, {args.threads} thread(s); validation passed "
          f"(max |logit diff| {validation['max_abs_logit_diff']:.2g})", file=sys.stderr, flush=True)
    rows, t_encode = time_runs(cfg, params, src, be, args)
    result = {
        "benchmark": "decode", "backend": be.name, "dtype": args.dtype, "preset": args.preset,
        "config": cfg.to_dict(), "shapes": {"B": args.batch, "S": args.src_len, "beam": args.beam},
        "lengths": args.lengths, "forced_length": "min_len = max_len = L", "alpha": 0.6,
        "encode_s": t_encode, "validation": validation, "results": rows,
        "timing": {"stat": "median", "repeats": args.repeats, "uncached_L>=256_repeats": 1},
        "threads": threads, "blas_tuning": blas_tuning(), "machine": common.machine_info(),
    }
    columns = ["search", "L", "cached_s", "uncached_s", "cached_tok_per_s", "uncached_tok_per_s",
               "speedup", "encoder_share", "cached_other_load_cores"]
    common.emit(result, args.json, table_rows=rows, columns=columns)


if __name__ == "__main__":
    main()
