"""``npformer gradient-flow``: each layer's weight-gradient norm at initialisation, post-LN
beside pre-LN, averaged over a few batches of the corpus (npformer/verify/gradient_flow.py).

    npformer gradient-flow --preset small --out docs/img/gradient_flow.png

With ``--json`` the last line is one JSON object with the norms per placement and stack.
"""
import json

from npformer.commands.options import add_backend_args, int_at_least, preset_name, require


def cmd_gradient_flow(args) -> int:
    from npformer.data.pipeline import batch_schedule, prepare
    from npformer.verify.gradient_flow import gradient_flow
    from npformer.model.config import preset
    if args.out:
        require("matplotlib", "gradient-flow --out")  # an error before the work, not after
    cfg = preset(args.preset)
    data = prepare(args.data, num_merges=args.merges, splits_wanted=("train",))
    cfg = cfg.replace(vocab_size=data.tokenizer.vocab_size, max_len=max(cfg.max_len, args.max_len + 1))
    schedule = batch_schedule(*data.ids["train"], max_tokens=args.max_tokens, seed=args.seed, max_len=args.max_len)
    batches = [schedule(step) for step in range(1, min(args.batches, schedule.n_batches) + 1)]
    flow = gradient_flow(cfg, batches, seed=args.seed, backend=args.backend, dtype=args.dtype)
    result = {"preset": args.preset, "vocab_size": cfg.vocab_size, "batches": len(batches),
              "max_tokens": args.max_tokens, "seed": args.seed, "dtype": args.dtype, **flow}
    if args.out:
        from npformer.plot import plot_gradient_flow
        result["figure"] = plot_gradient_flow(flow, args.out, f"gradient norms at initialisation, preset "
                                              f"{args.preset}, mean of {len(batches)} batches")
    if args.json:
        print(json.dumps(result))
        return 0
    for norm in ("post", "pre"):
        print(f"{norm}-LN (mean loss {flow[norm]['loss']:.3f}):")
        for stack in ("encoder", "decoder"):
            print(f"  {stack:<8} " + "  ".join(f"{g:.3e}" for g in flow[norm][stack]))
    if args.out:
        print(result["figure"])
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("gradient-flow", help="per-layer gradient norms at initialisation, post-LN vs pre-LN")
    p.add_argument("--preset", type=preset_name, default="small", help="tiny, small, base or big (default small)")
    p.add_argument("--data", metavar="PATH", help="a UTF-8 TSV of source<TAB>target (default: the bundled corpus)")
    p.add_argument("--merges", type=int_at_least(0), default=8000, help="BPE merges (default 8000, as train)")
    p.add_argument("--batches", type=int_at_least(1), default=4, help="training batches to average over (default 4)")
    p.add_argument("--max-tokens", type=int_at_least(1), default=2000, help="padded positions per batch (default 2000)")
    p.add_argument("--max-len", type=int_at_least(1), default=100, help="longest pair in subwords (default 100)")
    p.add_argument("--seed", type=int_at_least(0), default=0, help="initial weights and batch order (default 0)")
    p.add_argument("--out", metavar="PNG", help="write the figure here (needs matplotlib)")
    add_backend_args(p, workers=False)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_gradient_flow)
