"""``npformer average CKPT... --out AVG.npz``: one model from the average of
several checkpoints' parameters (paper §6.1), e.g. those ``train --keep-last 5`` keeps.

    npformer train --preset small --minutes 60 --save-every 100 --keep-last 5 --out runs/small60
    npformer average runs/small60/step-*.npz --out runs/small60/avg5.npz
    npformer evaluate --checkpoint runs/small60/avg5.npz
"""
import json
import os

from npformer.errors import UserError


def cmd_average(args) -> int:
    from npformer.train.average import save_average
    if os.path.abspath(args.out) in {os.path.abspath(p) for p in args.checkpoints}:
        raise UserError(f"--out: {args.out} is one of the checkpoints to average; choose another path")
    paths = _distinct(args.checkpoints)
    out = save_average(paths, args.out)
    if args.json:
        print(json.dumps({"averaged": paths, "out": out}))
    else:
        print(f"averaged {len(paths)} checkpoints into {out}")
    return 0


def _distinct(paths):
    """The paths, refusing one given twice (it would weigh double in the mean)."""
    seen = []
    for p in paths:
        if p in seen:
            raise UserError(f"average: {p} is given twice; each checkpoint counts once")
        seen.append(p)
    return seen


def add_parser(sub) -> None:
    p = sub.add_parser("average", help="average the parameters of checkpoints of one run (paper §6.1)")
    p.add_argument("checkpoints", nargs="+", metavar="CKPT", help="two or more .npz checkpoints of one run")
    p.add_argument("--out", required=True, metavar="AVG.npz", help="where to write the averaged checkpoint")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_average)
