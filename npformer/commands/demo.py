"""``npformer demo``: the README's main job.

Trains the ``small`` preset on the bundled English->Spanish Bible corpus within
a time budget (10 minutes by default), with ``npformer train``'s recipe for
that corpus and budget (npformer/train/recipe.py; each of its options
overrides it), translates a few held-out test sentences, and prints the
test-set BLEU and chrF (sacreBLEU).

The budget covers everything: data preparation (BPE learning, encoding),
training, and the final test-set decoding. ``--eval-minutes`` of it are kept
back for the decoding; training stops when the rest is used up. The test set
is decoded as ``translate`` and ``evaluate`` decode by default
(``translation.DECODING``): beam 4, length penalty 1.0, outputs of at most
1.2 x the source's length + 5 tokens and no repeated run of 4 subword tokens,
chosen on the dev set for a model this young; ``--paper-decoding`` gives the
paper's.

With ``--json`` the last stdout line is one JSON object: ``npformer train``'s
figures of the run (``run.report``: steps, minutes of training, losses,
tokens/s, workers, settings, checkpoint; dev_bleu is null, as the demo's
evaluations are the dev loss alone) and the demo's own, the test
set's: bleu, chrf, their signatures, test_sentences, the decoding settings and
total_minutes (the whole budget's).

The demo exists to print a score, so without sacreBLEU (the ``eval`` extra) it
refuses to start rather than train for ten minutes it cannot report on.

Under an MPI launcher (``mpiexec -n P npformer demo``) the P ranks train
together (npformer/train/ranks.py); rank 0 then decodes and scores the test
set alone.
"""
from __future__ import annotations

import json
import sys
import time

from npformer.commands.options import (add_backend_args, add_decoding_args, add_recipe_args, add_shape_args,
                                       decoding_settings, int_at_least, number_at_least, require)
from npformer.errors import UserError
from npformer.train.recipe import DERIVED


def cmd_demo(args) -> int:
    require("sacrebleu", "the demo's test-set BLEU and chrF")
    from npformer.runtime.distributed import launch
    from npformer.train.trainer import TrainingDiverged
    with launch(args.backend, "demo", agreed=(TrainingDiverged,)) as comm:
        return demo_on(args, comm)


def demo_on(args, comm) -> int:
    """``npformer demo`` as one rank of ``comm`` (SingleProcess without a launcher)."""
    from npformer.run import prepare_out_dir, report, run_fingerprint, start_run, train_run
    from npformer.train.ranks import threads_per_rank
    from npformer.translation import Translator, evaluate_pairs

    t0 = time.perf_counter()
    threads = threads_per_rank(args.workers, args.backend, comm)
    # The decoding reserve shrinks with the workers that share the test set.
    eval_minutes = args.eval_minutes if args.eval_minutes is not None else max(0.6, 1.2 / threads)
    if args.minutes <= eval_minutes:
        raise UserError(f"--minutes {args.minutes:g} must exceed --eval-minutes {eval_minutes:g}")
    prepare_out_dir(args.out)  # a directory that cannot be written must not cost the data preparation
    say = (lambda *a: None) if args.json or comm.rank != 0 else (lambda *a: print(*a, flush=True))
    say(f"npformer demo: {args.minutes:g} minutes on the bundled English->Spanish corpus (small preset)")
    # `npformer train`'s run on the bundled corpus, with the recipe for the training part of the budget.
    # Its evaluations are the dev loss alone: the demo scores its last model on the test set, so dev
    # BLEU would only spend training time picking a best.npz the demo does not use
    run = start_run({"seed": args.seed, "dtype": args.dtype, "d_ff": args.d_ff,  # n_layers: in DERIVED
                     **{k: getattr(args, k) for k in DERIVED}},
                    minutes=args.minutes - eval_minutes, backend=args.backend, workers=threads, comm=comm,
                    dev_bleu=False)
    state, cfg, settings, source = run.state, run.cfg, run.settings, run.source
    data, workers = source.corpus, state.workers
    say(f"  {run.note}")
    say(f"  BPE: {data.tokenizer.vocab_size} shared subwords; {len(data.splits['train'])} training pairs; "
        f"model: N={cfg.n_layers}, d_model={cfg.d_model}, h={cfg.h}, d_ff={cfg.d_ff}")
    say(f"  {workers.n} worker thread(s) share each batch (data parallel; --workers)"
        + (f" on each of {comm.size} ranks" if comm.size > 1 else ""))
    if comm.size > 1:  # the ranks must have learned the same vocabulary and drawn the same batches
        comm.require_same(run_fingerprint(state, cfg, settings, source))
    prepared_minutes = (time.perf_counter() - t0) / 60
    train_minutes = args.minutes - eval_minutes - prepared_minutes
    if train_minutes <= 0:
        raise UserError(f"--minutes {args.minutes:g}: preparing the data took {prepared_minutes:.2f} min, which "
                        f"leaves no time to train besides the {eval_minutes:g} min kept for decoding; "
                        "give a larger --minutes")
    t1 = time.perf_counter()
    start_step = train_run(run, minutes=train_minutes, out=args.out, eval_every=args.eval_every,
                           save_every=args.eval_every, progress=not args.no_progress)
    trained_minutes = (time.perf_counter() - t1) / 60
    if comm.rank != 0:  # rank 0 decodes and scores the test set
        return 0

    test = data.splits["test"]
    if args.eval_sentences:
        test = test[:args.eval_sentences]
    scores, hyps = evaluate_pairs(Translator(state.params, cfg, data.tokenizer), test, **decoding_settings(args),
                                  workers=workers)
    if args.show:  # a few of the test translations just scored, not decoded a second time
        say("\nHeld-out test sentences:")
        for (src, ref), hyp in list(zip(test, hyps))[:args.show]:
            say(f"  EN   {src}\n  REF  {ref}\n  OUT  {hyp}\n")
    total_minutes = (time.perf_counter() - t0) / 60
    # npformer train's figures of the run, and the demo's own: the test set's scores
    result = {**report(run, start_step, trained_minutes, out=args.out),
              **{k: scores[k] for k in ("bleu", "chrf", "bleu_signature", "chrf_signature")},
              "test_sentences": scores["n_sentences"], **decoding_settings(args),
              "total_minutes": round(total_minutes, 2)}
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        print(f"test BLEU {result['bleu']:.2f}, chrF {result['chrf']:.2f} on {result['test_sentences']} sentences "
              f"(beam {result['beam_size']}, alpha {result['alpha']:g}; {result['bleu_signature']})")
        tok_s = result["tokens_per_s"] or 0.0
        print(f"{state.step} steps ({tok_s:,.0f} target tokens/s), {total_minutes:.1f} minutes in all; "
              f"checkpoint {result['checkpoint']}")
        print(f"try: npformer translate --checkpoint {result['checkpoint']} \"In the beginning was the Word.\"")
    if total_minutes > args.minutes:
        print(f"npformer demo: warning: took {total_minutes:.1f} min, over the {args.minutes:g} min budget",
              file=sys.stderr)
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="train on the bundled EN->ES corpus for 10 minutes, translate, print BLEU")
    p.add_argument("--minutes", type=number_at_least(0, strict=True), default=10.0,
                   help="total time budget (default 10)")
    p.add_argument("--eval-minutes", type=number_at_least(0), default=None,
                   help="part of the budget kept for the final test-set decoding "
                        "(default: 1.2 / workers, at least 0.6)")
    p.add_argument("--eval-sentences", type=int_at_least(0), default=0,
                   help="score only the first N test pairs (default: all)")
    p.add_argument("--eval-every", type=int_at_least(1), default=300,
                   help="dev loss and a checkpoint every N steps (default 300)")
    add_recipe_args(p.add_argument_group("the recipe (npformer train's; each option overrides its derived value)"))
    add_shape_args(p.add_argument_group("the model (the small preset, d_ff = 1024; N from the recipe)"))
    add_decoding_args(p)
    p.add_argument("--show", type=int_at_least(0), default=3, help="held-out examples to print")
    p.add_argument("--seed", type=int_at_least(0), default=0)
    p.add_argument("--out", default="runs/demo", help="run directory for checkpoints (default runs/demo)")
    p.add_argument("--no-progress", action="store_true")
    add_backend_args(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_demo)
