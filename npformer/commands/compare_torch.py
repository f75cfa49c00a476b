"""``npformer compare-torch``: npformer's loss, logits and gradients against stock PyTorch
modules with the same weights, float64, one padded batch (npformer/verify/torch_compare.py).

    pip install 'npformer[torch]'
    npformer compare-torch                      # tiny preset, post-LN and pre-LN
    npformer compare-torch --preset small --norm pre --json

With ``--json`` the last line is one JSON object: per norm the loss, logits and
max gradient differences, and ``rows``, one per parameter and norm.
"""
import json
import math

from npformer.commands.options import int_at_least, preset_name, users_values


def cmd_compare_torch(args) -> int:
    from npformer.model.config import preset
    from npformer.verify.torch_compare import TOLERANCE, compare, import_torch
    import_torch()  # a missing torch is a one-line error before any work
    norms = ("post", "pre") if args.norm == "both" else (args.norm,)
    with users_values():
        configs = [preset(args.preset, vocab_size=args.vocab_size, norm=n) for n in norms]
    results = [compare(cfg, seed=args.seed) for cfg in configs]
    passed = all(r["passed"] for r in results)
    if args.json:
        summary = {r["norm"]: {k: v for k, v in r.items() if k != "rows"} for r in results}
        rows = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.as_dict().items()}
                for r in results for row in r["rows"]]
        print(json.dumps({"preset": args.preset, "vocab_size": args.vocab_size, "seed": args.seed, "dtype": "float64",
                          "tolerance": TOLERANCE, "summary": summary, "rows": rows, "passed": passed}))
        return 0 if passed else 1
    for r in results:
        print(f"{r['norm']}-LN (torch {r['torch_version']}, float64): loss {r['loss_npformer']:.12f} vs "
              f"{r['loss_torch']:.12f} (rel {r['loss_rel_diff']:.1e}); logits max rel diff "
              f"{r['logits_max_rel_diff']:.1e}")
        width = max(len(row.name) for row in r["rows"])
        for row in r["rows"]:
            diff = (f"abs {row.max_abs_diff:.1e} (zero by the math)" if row.zero_by_math
                    else f"rel {row.max_rel_diff:.1e}")
            print(f"  {row.name:<{width}}  {diff:<32} {'ok' if row.passed else 'FAIL'}")
        print(f"  max relative gradient difference: {r['max_rel_grad_diff']:.1e} (tolerance {TOLERANCE:g})")
    print("all within tolerance" if passed else "SOME DIFFERENCES EXCEED THE TOLERANCE")
    return 0 if passed else 1


def add_parser(sub) -> None:
    p = sub.add_parser("compare-torch", help="check loss, logits and every gradient against PyTorch's "
                       "stock Transformer layers (needs the torch extra)")
    p.add_argument("--preset", type=preset_name, default="tiny", help="tiny, small, base or big (default tiny)")
    p.add_argument("--vocab-size", type=int_at_least(5), default=50, help="V (default 50)")
    p.add_argument("--norm", choices=("post", "pre", "both"), default="both", help="default: both")
    p.add_argument("--seed", type=int_at_least(0), default=0, help="weights and batch (default 0)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_compare_torch)
