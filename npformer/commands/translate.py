"""``npformer translate --checkpoint CKPT [SENTENCE ...]``: translate arguments or stdin lines."""
import json
import sys


def cmd_translate(args) -> int:
    from npformer.train.parallel import make_workers
    from npformer.translation import Translator, translate
    model = Translator.from_checkpoint(args.checkpoint, backend=args.backend, dtype=args.dtype)
    sentences = args.sentences or [line.rstrip("\n") for line in sys.stdin]
    sentences = [s for s in sentences if s.strip()]
    if not sentences:
        raise ValueError("no input: give sentences as arguments or one per line on stdin")
    outputs = translate(model, sentences, beam_size=args.beam, alpha=args.alpha,
                        workers=make_workers(args.workers, args.backend))
    if args.json:
        print(json.dumps({"translations": [{"source": s, "translation": t} for s, t in zip(sentences, outputs)]},
                         ensure_ascii=False))
    else:
        for t in outputs:
            print(t)
    return 0


def add_parser(sub, add_backend_args) -> None:
    from npformer.cli import int_at_least, number_at_least
    p = sub.add_parser("translate", help="translate sentences with a trained checkpoint")
    p.add_argument("sentences", nargs="*", help="sentences to translate (default: read lines from stdin)")
    p.add_argument("--checkpoint", required=True, help="a .npz checkpoint written by npformer train")
    p.add_argument("--beam", type=int_at_least(1), default=4, help="beam size; 1 = greedy (default 4, as in §6.1)")
    p.add_argument("--alpha", type=number_at_least(0), default=0.6, help="length penalty alpha (default 0.6)")
    add_backend_args(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_translate)
