"""``npformer plot RUN_DIR``: PNG curves, attention maps and the positional encoding."""
import json
import os

from npformer.commands.options import add_backend_args, require
from npformer.errors import UserError


def cmd_plot(args) -> int:
    require("matplotlib", "plot")
    from npformer import checkpoint
    from npformer.data.corpus import load_corpus
    from npformer.plot import plot_attention, plot_curves, plot_positional
    from npformer.translation import Translator
    if not os.path.isdir(args.run_dir):
        raise UserError(f"run directory {args.run_dir!r} does not exist; expected a directory written by "
                        "npformer train --out")
    ckpt_path = os.path.join(args.run_dir, "last.npz")
    ckpt = checkpoint.load(ckpt_path, backend=args.backend)
    out = args.out or args.run_dir
    os.makedirs(out, exist_ok=True)
    files = [plot_curves(ckpt.history, os.path.join(out, "curves.png")),
             plot_positional(ckpt.config.d_model, min(ckpt.config.max_len, 128), os.path.join(out, "positional.png"))]
    sentence = args.sentence
    if sentence is None:
        data = ckpt.extra.get("settings", {}).get("data")
        sentence = min(load_corpus(data)["dev"][:50], key=lambda p: abs(len(p[0].split()) - 12))[0]
    if ckpt.tokenizer is not None:
        files += plot_attention(Translator.from_checkpoint(ckpt_path, backend=args.backend), sentence, out)
    if args.json:
        print(json.dumps({"files": files, "sentence": sentence}, ensure_ascii=False))
    else:
        print(f"attention maps for: {sentence}")
        for f in files:
            print(f)
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("plot", help="write PNGs: loss/lr curves, attention heatmaps, positional encoding")
    p.add_argument("run_dir", help="a directory written by npformer train --out")
    p.add_argument("--out", default=None, help="where to write the PNGs (default: RUN_DIR)")
    p.add_argument("--sentence", default=None, help="source sentence for the attention maps "
                   "(default: a dev sentence of about 12 words)")
    add_backend_args(p, workers=False)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plot)
