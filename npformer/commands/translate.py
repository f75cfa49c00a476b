"""``npformer translate --checkpoint CKPT|RUN_DIR [SENTENCE ...]``: translate arguments or stdin lines.

Given a run directory it translates with the run's best.npz (the best by dev
BLEU) and says so on stderr; give RUN_DIR/last.npz for the last checkpoint."""
import json
import sys

from npformer.commands.options import (add_backend_args, add_checkpoint_arg, add_decoding_args, checkpoint_file,
                                       decoding_settings)
from npformer.errors import UserError


def cmd_translate(args) -> int:
    from npformer.translation import Translator, translate
    from npformer.runtime.workers import make_workers
    model = Translator.from_checkpoint(checkpoint_file(args.checkpoint, "translate"), backend=args.backend,
                                       dtype=args.dtype)
    sentences = args.sentences or [line.rstrip("\n") for line in sys.stdin]
    sentences = [s for s in sentences if s.strip()]
    if not sentences:
        raise UserError("no input: give sentences as arguments or one per line on stdin")
    outputs = translate(model, sentences, **decoding_settings(args), workers=make_workers(args.workers, args.backend))
    if args.json:
        print(json.dumps({"translations": [{"source": s, "translation": t} for s, t in zip(sentences, outputs)]},
                         ensure_ascii=False))
    else:
        for t in outputs:
            # one line per sentence: a young model can emit any character, line breaks
            # (\n, \v, \f, U+2028, ...) included, and a reader of stdout counts lines
            print(" ".join(t.splitlines()))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("translate", help="translate sentences with a trained checkpoint")
    p.add_argument("sentences", nargs="*", help="sentences to translate (default: read lines from stdin)")
    add_checkpoint_arg(p)
    add_decoding_args(p)
    add_backend_args(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_translate)
