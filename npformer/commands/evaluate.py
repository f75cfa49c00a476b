"""``npformer evaluate --checkpoint CKPT|RUN_DIR [--data PATH]``: sacreBLEU BLEU and chrF on a test split.

Given a run directory it evaluates the run's best.npz (the best by dev BLEU) and
says so on stderr; give RUN_DIR/last.npz for the last checkpoint."""
import json
import time

from npformer.commands.options import (add_backend_args, add_checkpoint_arg, add_decoding_args, checkpoint_file,
                                       decoding_settings, int_at_least, require)


def cmd_evaluate(args) -> int:
    require("sacrebleu", "evaluate (BLEU and chrF)")
    from npformer.data.corpus import load_corpus
    from npformer.translation import Translator, evaluate_pairs
    from npformer.runtime.workers import make_workers
    ckpt = checkpoint_file(args.checkpoint, "evaluate")
    model = Translator.from_checkpoint(ckpt, backend=args.backend, dtype=args.dtype)
    pairs = load_corpus(args.data)[args.split]
    if args.limit:
        pairs = pairs[:args.limit]
    t0 = time.perf_counter()
    workers = make_workers(args.workers, args.backend)
    scores, hyps = evaluate_pairs(model, pairs, **decoding_settings(args), workers=workers)
    scores.update(workers=workers.n, split=args.split, data=args.data or "bundled Bible EN-ES",
                  **decoding_settings(args),
                  checkpoint=ckpt, seconds=round(time.perf_counter() - t0, 1))
    if args.json:
        print(json.dumps(scores, ensure_ascii=False))
    else:
        for (src, ref), hyp in list(zip(pairs, hyps))[:args.show]:
            print(f"SRC  {src}\nREF  {ref}\nHYP  {hyp}\n")
        print(f"BLEU {scores['bleu']:.2f}  ({scores['bleu_signature']})")
        print(f"chrF {scores['chrf']:.2f}  ({scores['chrf_signature']})")
        print(f"exact match {100 * scores['exact_match']:.1f}%, token error rate "
              f"{100 * scores['token_error_rate']:.1f}% (edit distance per reference token)")
        print(f"{scores['n_sentences']} sentences of the {args.split} split in {scores['seconds']} s")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="BLEU and chrF (sacreBLEU) of a checkpoint on a test split")
    add_checkpoint_arg(p)
    p.add_argument("--data", default=None, help="a UTF-8 TSV of source<TAB>target (default: the bundled corpus); "
                   "its fixed test split is used")
    p.add_argument("--split", default="test", choices=("test", "dev"))
    p.add_argument("--limit", type=int_at_least(0), default=0, help="evaluate only the first N pairs (default: all)")
    add_decoding_args(p)
    p.add_argument("--show", type=int_at_least(0), default=3, help="print this many example translations")
    add_backend_args(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_evaluate)
