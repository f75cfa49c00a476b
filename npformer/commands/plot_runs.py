"""``npformer plot-runs RUN_DIR... --out PNG``: the training loss of several runs in one plot,
e.g. a warmup ablation (each run's RUN_DIR/last.npz holds its history).

    npformer plot-runs runs/post_warmup runs/post_nowarmup runs/pre_nowarmup --out ablation.png
"""
import json
import os

from npformer.commands.options import require
from npformer.errors import UserError


def cmd_plot_runs(args) -> int:
    from npformer import checkpoint
    from npformer.plot import plot_runs
    require("matplotlib", "plot-runs")
    labels = args.label or [os.path.basename(os.path.normpath(d)) for d in args.run_dirs]
    if len(labels) != len(args.run_dirs):
        raise UserError(f"--label: got {len(labels)} labels for {len(args.run_dirs)} runs; give one per run")
    histories = {}
    for label, run in zip(labels, args.run_dirs):
        path = os.path.join(run, "last.npz")
        if not os.path.isfile(path):
            raise UserError(f"run {run}: no last.npz; expected a directory written by npformer train --out")
        histories[label] = checkpoint.load(path).history
    out = plot_runs(histories, args.out, args.title)
    finals = {label: next(r["loss"] for r in reversed(h) if r.get("kind") == "train") for label, h in histories.items()}
    if args.json:
        print(json.dumps({"figure": out, "final_train_loss": finals}))
    else:
        for label, loss in finals.items():
            print(f"{label}: last logged training loss {loss:.4f}")
        print(out)
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("plot-runs", help="the training loss of several runs in one PNG")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="directories written by npformer train --out")
    p.add_argument("--label", action="append", help="a legend label per run, in order (default: the directory names)")
    p.add_argument("--title", default="", help="the plot's title")
    p.add_argument("--out", required=True, metavar="PNG")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plot_runs)
