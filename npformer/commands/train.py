"""``npformer train``: train a Transformer, report held-out metrics, save checkpoints.

    npformer train --minutes 30 --out runs/es          # translation: the bundled EN->ES corpus, small preset
    npformer train --data my.tsv --steps 5000 --out runs/mine
    npformer train --task reverse                      # a synthetic task: ~99%+ exact match, tiny preset
    npformer train --task reverse --out runs/rev --resume --steps 4000
    npformer train --norm pre --warmup 1 --out runs/pre                 # pre-LN, no warmup
    npformer train --minutes 60 --save-every 20 --keep-last 5 --out runs/small60   # for npformer average

Two uses, each with its own defaults: translation (``--data PATH``, or the
bundled corpus when neither ``--data`` nor ``--task`` is given) and the
synthetic tasks (``--task copy`` or ``--task reverse``). An option that belongs
to the other use is refused. This module parses the options and prints; the
run itself (settings, data sources, the ranks' fingerprint, the report) is
npformer/run.py.

A run's settings (task, model, batching, optimisation, seed) are stored in its
checkpoint. ``--resume`` continues ``RUN_DIR/last.npz`` with those settings
and refuses options that contradict them; ``--steps`` counts all steps, so
``--steps 4000 --resume`` extends a 2000-step run to 4000.

Every ``--eval-every`` steps the run is evaluated on held-out data: for
translation the dev loss and, with sacreBLEU installed, dev BLEU and chrF of
greedy outputs for a fixed sample of dev pairs, as many as keep an evaluation
within 5% of the time (npformer/run.py ``DevEvaluation``). ``RUN_DIR/best.npz``
is the best by dev BLEU (by the held-out loss for the synthetic tasks, and
without sacreBLEU); ``npformer evaluate`` and ``translate`` take it when given
RUN_DIR.

Progress goes to stderr. With ``--json`` the last stdout line is one JSON object:
task, steps, minutes, final_loss, val_loss, exact_match (tasks), dev_bleu,
dev_chrf and dev_bleu_sentences (translation with sacreBLEU installed),
eval_share (the evaluations' share of the time), tokens_per_s, heldout_size,
workers, ranks, settings (the run's, derived ones included), best (the metric
that picks best.npz, and its step and value), and checkpoint (with --out).
Metrics a run does not have are null.

Under an MPI launcher (``mpiexec -n P npformer train ...``) the P processes
train one model together (npformer/train/ranks.py). Before the first step they
compare their settings, model, vocabulary, first batch and starting state, and
refuse to start unless all agree; rank 0 alone prints and writes checkpoints.
"""
from __future__ import annotations

import json
import sys
import time

from npformer.commands.options import (add_backend_args, add_recipe_args, add_shape_args, int_at_least, number_at_least,
                                       preset_name, users_values)
from npformer.errors import UserError
from npformer.run import CORPUS_DEFAULTS, RUN_SETTINGS, TASK_DEFAULTS

METRIC_NAMES = {"dev_bleu": "dev BLEU", "val_loss": "held-out loss"}


def cmd_train(args) -> int:
    from npformer.runtime.distributed import launch
    from npformer.train.trainer import TrainingDiverged
    with launch(args.backend, "train", agreed=(TrainingDiverged,)) as comm:
        return train_on(args, comm)


def given_settings(args) -> dict:
    """The run settings the options chose (None: not given)."""
    return {k: getattr(args, k, None) for k in RUN_SETTINGS}


def train_on(args, comm) -> int:
    """``npformer train`` as one rank of ``comm`` (SingleProcess without a launcher)."""
    from npformer.run import report, run_fingerprint, start_run, train_run
    from npformer.train.state import validate_saves

    save_every = args.eval_every if args.save_every is None else args.save_every
    try:
        with users_values():  # before the data is prepared
            validate_saves(args.out, save_every, args.keep_last)
        run = start_run(given_settings(args), args.task, out=args.out, resume=args.resume, steps=args.steps,
                        minutes=args.minutes, backend=args.backend, workers=args.workers, comm=comm)
        mine = run_fingerprint(run.state, run.cfg, run.settings, run.source) if comm.size > 1 else None
    except UserError as e:  # every rank learns of it at the start-up check, and stops
        comm.require_same(e)
        raise  # (any other error is a bug: launch stops every rank, naming this one)
    comm.require_same(mine)
    if run.note and comm.rank == 0:
        print(f"npformer train: {run.note}", file=sys.stderr, flush=True)
    state, settings, source = run.state, run.settings, run.source

    t0 = time.perf_counter()
    start_step = train_run(run, minutes=args.minutes, out=args.out, eval_every=args.eval_every,
                           save_every=save_every, keep_last=args.keep_last, log_every=args.log_every,
                           progress=not args.no_progress)
    minutes = (time.perf_counter() - t0) / 60
    if comm.rank != 0:  # rank 0 reports
        return 0
    result = report(run, start_step, minutes, out=args.out)
    if args.json:
        print(json.dumps(result))
        return 0
    loss = "n/a" if result["final_loss"] is None else f"{result['final_loss']:.4f}"
    print(f"{settings['task']}: step {state.step} ({state.step - start_step} this run) in "
          f"{minutes:.2f} min; final loss {loss}; held-out loss {result['val_loss']:.4f}")
    if result["dev_bleu"] is not None:
        print(f"dev BLEU {result['dev_bleu']:.2f}, chrF {result['dev_chrf']:.2f} on {result['dev_bleu_sentences']} "
              "fixed dev sentences (greedy; test: npformer evaluate)")
    if result["exact_match"] is not None:
        print(f"held-out exact match: {100 * result['exact_match']:.1f}% of {source.heldout_size} sequences")
    if result["eval_share"] is not None:
        print(f"evaluations: {100 * result['eval_share']:.1f}% of the time")
    best = result["best"]
    if result.get("checkpoint"):
        print(f"checkpoints: {result['checkpoint']}; {best['checkpoint']}, the best by "
              f"{METRIC_NAMES.get(best['by'], best['by'])} ({best['value']:.4g} at step {best['step']})"
              if best else f"checkpoint: {result['checkpoint']}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a translation model (default: the bundled EN->ES corpus) "
                       "or a synthetic task (copy, reverse)",
                       description="Train a Transformer; progress on stderr, results on stdout. Two uses: "
                       "translation (--data PATH, or the bundled English->Spanish corpus) and the synthetic "
                       "tasks (--task). Where defaults differ, help shows 'translation / task'.")
    t, c = TASK_DEFAULTS, CORPUS_DEFAULTS

    def default(key):  # "translation / task" where the two uses differ
        return f"{c[key]}" if c[key] == t[key] else f"{c[key]} / {t[key]}"

    what = p.add_argument_group("what to learn")
    source = what.add_mutually_exclusive_group()
    source.add_argument("--data", metavar="PATH", help="translate: a UTF-8 TSV of source<TAB>target lines "
                        "(default without --task: the bundled English->Spanish Bible corpus)")
    source.add_argument("--task", choices=("copy", "reverse"), help="a synthetic task: copy or reverse "
                        "random token sequences")

    task = p.add_argument_group("synthetic tasks only (--task)")
    task.add_argument("--vocab-size", type=int_at_least(1),
                      help=f"V including the 4 special ids (default {t['vocab_size']})")
    task.add_argument("--min-len", type=int_at_least(1), help=f"shortest sequence (default {t['min_len']})")
    task.add_argument("--batch-size", type=int_at_least(1),
                      help=f"sequences per batch (default {t['batch_size']}); or --max-tokens")

    both = p.add_argument_group("model and batches (default: translation / task where they differ)")
    both.add_argument("--preset", type=preset_name,
                      help=f"model size: tiny, small, base, big (default {default('preset')})")
    add_shape_args(both)
    both.add_argument("--max-len", type=int_at_least(1), help="longest sequence in tokens; translation drops "
                      f"longer pairs (default {default('max_len')})")
    both.add_argument("--label-smoothing", type=number_at_least(0),
                      help=f"eps_ls (default {default('label_smoothing')})")

    optim = p.add_argument_group("optimisation (default: translation / task where they differ)")
    optim.add_argument("--seed", type=int_at_least(0), help="parameters, dropout and data (default 0)")
    optim.add_argument("--clip", type=number_at_least(0), help="clip the global gradient norm to this; "
                       f"0 = no clipping (default none / {t['clip']})")

    add_recipe_args(p.add_argument_group("the recipe: derived for translation (npformer/train/recipe.py), "
                                         "fixed for the tasks; each option overrides it"),
                    task_defaults={**TASK_DEFAULTS, "merges": "none"})

    budget = p.add_argument_group("budget: --steps is the total (counting resumed steps); "
                                  "--minutes limits this invocation")
    budget.add_argument("--steps", type=int_at_least(1), help=f"train until this step (default: none / "
                        f"{t['steps']}; translation needs --steps or --minutes)")
    budget.add_argument("--minutes", type=number_at_least(0, strict=True), help="wall-clock budget in minutes")

    out = p.add_argument_group("output")
    out.add_argument("--eval-every", type=int_at_least(0), default=500,
                     help="evaluate on held-out data every N steps (default 500)")
    out.add_argument("--save-every", type=int_at_least(0), default=None,
                     help="write RUN_DIR/last.npz every N steps (default: --eval-every)")
    out.add_argument("--keep-last", type=int_at_least(0), default=0, metavar="K",
                     help="also keep the last K saves as RUN_DIR/step-<t>.npz, for `npformer average` "
                          "(default 0: only last.npz)")
    out.add_argument("--log-every", type=int_at_least(1), default=10,
                     help="add a train record (mean loss, lr, gradient norm, tokens/s) to the run's history "
                          "every N steps (default 10)")
    out.add_argument("--out", metavar="RUN_DIR", help="write checkpoints last.npz and best.npz here")
    out.add_argument("--resume", action="store_true", help="continue RUN_DIR/last.npz with its settings")
    out.add_argument("--no-progress", action="store_true", help="no progress bar or log lines on stderr")
    out.add_argument("--json", action="store_true", help="print the final metrics as one JSON line")

    add_backend_args(p.add_argument_group("device"))
    p.set_defaults(func=cmd_train, dtype=None)  # dtype None: the default, or the resumed run's
