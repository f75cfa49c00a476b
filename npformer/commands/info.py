"""``npformer info``: a preset's shapes and parameter count per component."""
import json

from npformer.commands.options import int_at_least, preset_name, users_values


def cmd_info(args) -> int:
    from npformer.model.config import preset
    from npformer.model.params import count_params
    with users_values():  # e.g. a --vocab-size without room for the special ids
        cfg = preset(args.preset, vocab_size=args.vocab_size, norm=args.norm)
    counts = count_params(cfg)
    if args.json:
        print(json.dumps({"preset": args.preset, "config": cfg.to_dict(), **counts}))
        return 0
    print(f"preset {args.preset}: N={cfg.n_layers} d_model={cfg.d_model} h={cfg.h} d_k={cfg.d_k} "
          f"d_ff={cfg.d_ff} P_drop={cfg.p_drop} eps_ls={cfg.eps_ls} V={cfg.vocab_size} "
          f"tied={cfg.tie_embeddings} norm={cfg.norm}")
    for group, parts in counts["per_component"].items():
        for part, n in parts.items():
            print(f"  {group:<10} {part:<12} {n:>12,}")
    for group, n in counts["summary"].items():
        print(f"{group:<23} {n:>12,}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="print a preset's parameter count per component")
    p.add_argument("--preset", type=preset_name, default="base", help="tiny, small, base or big (default base)")
    p.add_argument("--vocab-size", type=int_at_least(1), default=37000,
                   help="shared vocabulary size V (default 37000, the paper's EN-DE BPE)")
    p.add_argument("--norm", choices=("post", "pre"), default="post",
                   help="LayerNorm placement: post (the paper's, default) or pre (adds a final LayerNorm per stack)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)
