"""``npformer train``: train a Transformer, report held-out metrics, save checkpoints.

    npformer train --minutes 30 --out runs/es          # translation: the bundled EN->ES corpus, small preset
    npformer train --data my.tsv --steps 5000 --out runs/mine
    npformer train --task reverse                      # a synthetic task: ~99%+ exact match, tiny preset
    npformer train --task reverse --out runs/rev --resume --steps 4000
    npformer train --norm pre --warmup 1 --out runs/pre                 # pre-LN, no warmup
    npformer train --minutes 60 --save-every 20 --keep-last 5 --out runs/small60   # for npformer average

Two uses, each with its own defaults: translation (``--data PATH``, or the
bundled corpus when neither ``--data`` nor ``--task`` is given; see
``CORPUS_DEFAULTS`` in options.py) and the synthetic tasks (``--task copy`` or
``--task reverse``; ``TASK_DEFAULTS`` below). An option that belongs to the
other use is refused.

Where batches come from is a *data source*: ``batches(step)``, an
``evaluate(params, cfg)`` for held-out metrics, and the vocabulary. The
synthetic tasks are one source and a corpus is another; both plug into the
same training loop.

A run's settings (task, model, batching, optimisation, seed) are stored in its
checkpoint. ``--resume`` continues ``RUN_DIR/last.npz`` with those settings
and refuses options that contradict them; ``--steps`` counts all steps, so
``--steps 4000 --resume`` extends a 2000-step run to 4000.

Progress goes to stderr. With ``--json`` the last stdout line is one JSON object:
task, steps, minutes, final_loss, val_loss, exact_match (tasks), dev_bleu and
dev_chrf (translation with sacreBLEU installed), tokens_per_s, heldout_size,
workers, ranks, settings (the run's, derived ones included), and checkpoint
(with --out). Metrics a run does not have are null.

Under an MPI launcher (``mpiexec -n P npformer train ...``) the P processes
train one model together (npformer/train/ranks.py). Before the first step they
compare their settings, model, vocabulary, first batch and starting state, and
refuse to start unless all agree; rank 0 alone prints and writes checkpoints.
"""
from __future__ import annotations

import json
import os
import sys
import time
from typing import Callable, NamedTuple

from npformer.commands.options import (CORPUS_DEFAULTS, add_backend_args, add_recipe_args, validate_schedule_options,
                                       derive_recipe, int_at_least, model_config, number_at_least, schedule_of)

# Settings that define a run: stored in its checkpoint, fixed on --resume.
RUN_SETTINGS = ("task", "data", "merges", "preset", "norm", "vocab_size", "min_len", "max_len", "p_drop",
                "label_smoothing", "batch_size", "max_tokens", "seed", "schedule", "lr", "lr_factor", "warmup", "clip",
                "dtype")

# Defaults of the synthetic tasks: the tiny preset learns to reverse 4..12-token
# sequences over 20 symbols to >= 99% held-out exact match in 3000 steps.
# Dropout 0.1 and clipping at 1 keep the late steps stable; without them exact
# match keeps dipping below 100%.
TASK_DEFAULTS = dict(preset="tiny", norm="post", vocab_size=24, min_len=4, max_len=12, p_drop=0.1, label_smoothing=0.1,
                     batch_size=64, max_tokens=None, seed=0, schedule="noam", lr=None, lr_factor=0.5, warmup=300,
                     clip=1.0, dtype="float32", steps=3000)
HELDOUT_SIZE = 500
DEV_BLEU_SENTENCES = 200

# Options that make sense for one use only: given for the other, they are refused.
TASK_ONLY = {"vocab_size": "translation learns its vocabulary (--merges)",
             "min_len": "translation keeps every pair up to --max-len",
             "batch_size": "translation batches by --max-tokens"}
TRANSLATION_ONLY = {"merges": "the synthetic tasks have no BPE (--vocab-size)"}


class DataSource(NamedTuple):
    batches: Callable              # step (from 1) -> Batch; a pure function of the step
    evaluate: Callable             # (params, cfg) -> {"val_loss": ..., ...} on held-out data
    tokenizer: dict | None         # stored in the checkpoint (None for synthetic tasks)
    heldout_size: int


def task_source(s: dict, workers=None) -> DataSource:
    """Random copy / reverse sequences (npformer.train.tasks)."""
    from npformer.data.batching import make_batches
    from npformer.decode.greedy import greedy_decode
    from npformer.train.tasks import SequenceTask, evaluate_exact_match
    from npformer.train.trainer import evaluate_loss

    task = SequenceTask(s["task"], s["vocab_size"], s["min_len"], s["max_len"])
    heldout = task.heldout(s["seed"], HELDOUT_SIZE)
    heldout_batches = make_batches(*heldout, max_tokens=64 * (s["max_len"] + 1))

    def evaluate(params, cfg):
        return {"val_loss": evaluate_loss(params, cfg, heldout_batches, workers),
                "exact_match": evaluate_exact_match(params, cfg, heldout, greedy_decode)}

    return DataSource(task.batches(s["seed"], s["batch_size"], s["max_tokens"]), evaluate, None, HELDOUT_SIZE)


def corpus_source(s: dict, tokenizer: dict | None = None, workers=None) -> DataSource:
    """Sentence pairs from a TSV (default: the bundled Bible EN->ES), a shared BPE
    vocabulary learned on the training split (or the resumed run's), batches by
    length and token count, and dev loss + dev BLEU (greedy, first 200 pairs)."""
    from npformer.data.bpe import BPETokenizer
    from npformer.data.pipeline import batch_schedule, prepare
    from npformer.translation import dev_evaluator
    tok = BPETokenizer.from_dict(tokenizer) if tokenizer is not None else None
    data = prepare(s["data"], num_merges=s["merges"], tokenizer=tok, splits_wanted=("train", "dev"))
    s["vocab_size"] = data.tokenizer.vocab_size
    batches = batch_schedule(*data.ids["train"], max_tokens=s["max_tokens"], seed=s["seed"], max_len=s["max_len"])
    evaluators = {}

    def evaluate(params, cfg):
        if "dev" not in evaluators:
            evaluators["dev"] = dev_evaluator(data, cfg, s["max_tokens"], DEV_BLEU_SENTENCES, workers=workers)
        return evaluators["dev"](params)

    return DataSource(batches, evaluate, data.tokenizer.to_dict(), len(data.splits["dev"]))


def run_settings(args, saved: dict | None) -> dict:
    """Defaults, then the checkpoint's settings (on --resume), then the options given."""
    given = {k: getattr(args, k) for k in RUN_SETTINGS if getattr(args, k, None) is not None}
    if args.batch_size is not None and args.max_tokens is not None:
        raise ValueError("--batch-size and --max-tokens both size a batch; give one of them")
    task = saved["task"] if saved is not None else (args.task or "translate")
    for name, why in (TASK_ONLY if task == "translate" else TRANSLATION_ONLY).items():
        if name in given:
            use = "the synthetic tasks (--task)" if task == "translate" else "translation"
            raise ValueError(f"--{name.replace('_', '-')} is for {use}: {why}")
    if args.batch_size is not None or args.max_tokens is not None:  # one replaces the other
        given.setdefault("batch_size", None)
        given.setdefault("max_tokens", None)
    if saved is None:
        defaults = CORPUS_DEFAULTS if task == "translate" else TASK_DEFAULTS
        return {**defaults, **given}
    # runs saved before these options were all post-LN with the paper's schedule
    saved = {"norm": "post", "schedule": "noam", "lr": None, **saved}
    clash = [f"--{k.replace('_', '-')} {given[k]} (the run has {saved.get(k)})"
             for k in given if given[k] != saved.get(k)]
    if clash:
        raise ValueError("--resume keeps the run's settings; these differ: " + ", ".join(clash))
    return dict(saved)


def budget_steps(args, settings: dict, resumed: bool) -> int | None:
    """The step to train until: --steps, else none with --minutes, else the run's default."""
    steps = args.steps if args.steps is not None or args.minutes is not None else settings["steps"]
    if steps is None and args.minutes is None:
        raise ValueError("the resumed run had only a time budget; give --steps or --minutes" if resumed else
                         "translation trains until --steps N or for --minutes M; give one (or both)")
    return steps


def make_source(settings: dict, tokenizer: dict | None, workers=None) -> DataSource:
    if settings["task"] == "translate":
        return corpus_source(settings, tokenizer, workers)
    return task_source(settings, workers)


def cmd_train(args) -> int:
    from npformer.runtime.distributed import launch
    from npformer.train.trainer import TrainingDiverged
    with launch(args.backend, "train", agreed=(TrainingDiverged,)) as comm:
        return train_on(args, comm)


def run_fingerprint(state, cfg, settings: dict, source: DataSource) -> dict:
    """What the ranks of one run must share (train/ranks.py ``fingerprint``)."""
    from npformer.runtime.distributed.communicator import digest
    from npformer.train.ranks import fingerprint
    batch = source.batches(state.step + 1)
    return fingerprint(state, cfg, settings=settings, vocabulary=digest(source.tokenizer),
                       data=digest([digest(batch.src), digest(batch.tgt_in), digest(batch.tgt_out)]))


def train_on(args, comm) -> int:
    """``npformer train`` as one rank of ``comm`` (SingleProcess without a launcher)."""
    from npformer.train.trainer import throughput, train

    last = os.path.join(args.out, "last.npz") if args.out else None
    save_every = args.eval_every if args.save_every is None else args.save_every
    try:
        state, cfg, settings, source, steps, layout_note = set_up(args, comm, last)
        mine = run_fingerprint(state, cfg, settings, source) if comm.size > 1 else None
    except Exception as e:  # every rank learns of it at the start-up check, and stops
        comm.require_same(e)
        raise
    comm.require_same(mine)
    if layout_note and comm.rank == 0:
        print(f"npformer train: {layout_note}", file=sys.stderr, flush=True)
    workers = state.workers

    start_step, t0 = state.step, time.perf_counter()
    train(state, cfg, source.batches, steps=steps, minutes=args.minutes, schedule=schedule_of(settings, cfg.d_model),
          clip=settings["clip"],
          eval_fn=lambda params: source.evaluate(params, cfg), eval_every=args.eval_every,
          out_dir=args.out, save_every=save_every, log_every=args.log_every, progress=not args.no_progress,
          checkpoint_extra={"settings": settings, "layout": {"ranks": comm.size, "workers": workers.n}},
          tokenizer=source.tokenizer, keep_last=args.keep_last)
    minutes = (time.perf_counter() - t0) / 60
    if comm.rank != 0:  # rank 0 reports
        return 0

    trained = [r for r in state.history if r["kind"] == "train" and r["step"] > start_step]
    final_eval = [r for r in state.history if r["kind"] == "eval"][-1]
    result = {
        "task": settings["task"], "steps": state.step, "minutes": round(minutes, 3),
        "final_loss": trained[-1]["loss"] if trained else None,
        "val_loss": final_eval["val_loss"], "exact_match": final_eval.get("exact_match"),
        "dev_bleu": final_eval.get("dev_bleu"), "dev_chrf": final_eval.get("dev_chrf"),
        "tokens_per_s": throughput(trained),
        "heldout_size": source.heldout_size, "workers": workers.n, "ranks": comm.size,
        "settings": {k: settings.get(k) for k in RUN_SETTINGS},
    }
    if args.out:
        result["checkpoint"] = last
    if args.json:
        print(json.dumps(result))
    else:
        loss = "n/a" if result["final_loss"] is None else f"{result['final_loss']:.4f}"
        print(f"{settings['task']}: step {state.step} ({state.step - start_step} this run) in "
              f"{minutes:.2f} min; final loss {loss}; held-out loss {result['val_loss']:.4f}")
        if result["dev_bleu"] is not None:
            print(f"dev BLEU {result['dev_bleu']:.2f}, chrF {result['dev_chrf']:.2f} "
                  f"(greedy, first {DEV_BLEU_SENTENCES} dev pairs; test: npformer evaluate)")
        if result["exact_match"] is not None:
            print(f"held-out exact match: {100 * result['exact_match']:.1f}% of {source.heldout_size} sequences")
        if args.out:
            print(f"checkpoint: {last}")
    return 0


def layout_change(saved: dict | None, ranks: int, workers: int) -> str | None:
    """What resuming a run saved by ``saved`` ranks x workers on ``ranks`` x ``workers`` changes."""
    if not saved or (saved["ranks"], saved["workers"]) == (ranks, workers):
        return None
    was, now = f"{saved['ranks']} rank(s) x {saved['workers']} thread(s)", f"{ranks} x {workers}"
    if saved["ranks"] * saved["workers"] == ranks * workers:
        return f"resuming a run trained on {was} on {now}: the same {ranks * workers} shards per batch, " \
               "so it continues as if uninterrupted"
    return (f"resuming a run trained on {was} on {now}: each batch is split into {ranks * workers} shards "
            f"instead of {saved['ranks'] * saved['workers']}, so dropout draws other (equally valid) masks "
            "than an uninterrupted run would; the gradients are the same up to float rounding")


def set_up(args, comm, last):
    """``(state, cfg, settings, source, steps, note)`` of a new or resumed run."""
    from npformer.train.ranks import workers_per_rank
    from npformer.train.trainer import init_state, load_state

    if args.keep_last and not (args.out and (args.eval_every if args.save_every is None else args.save_every)):
        raise ValueError("--keep-last needs --out RUN_DIR and checkpoints to keep (--save-every > 0)")
    if args.out and os.path.exists(args.out) and not os.path.isdir(args.out):
        raise ValueError(f"--out: {args.out} exists and is not a directory")
    workers = workers_per_rank(args.workers, args.backend, comm)
    note = None
    if args.resume:
        if not args.out:
            raise ValueError("--resume needs --out RUN_DIR (it continues RUN_DIR/last.npz)")
        state, ck = load_state(last, backend=args.backend, workers=workers, comm=comm)
        note = layout_change(ck.extra.get("layout"), comm.size, workers.n)
        if "settings" not in ck.extra:
            raise ValueError(f"--resume: {last} has no run settings; it was not written by `npformer train`")
        settings = run_settings(args, ck.extra["settings"])
        steps = budget_steps(args, settings, resumed=True)
        source = make_source(settings, ck.tokenizer, workers)
        cfg = ck.config
    else:
        if last and os.path.exists(last):
            raise ValueError(f"--out: {last} exists; pass --resume to continue it, or choose another RUN_DIR")
        settings = run_settings(args, None)
        steps = budget_steps(args, settings, resumed=False)
        if settings["task"] == "translate":
            note = "the recipe for this corpus and budget:\n  " + "\n  ".join(
                derive_recipe(settings, args.minutes, steps))
        validate_schedule_options(settings)
        source = make_source(settings, None, workers)
        cfg = model_config(settings)
        state = init_state(cfg, seed=settings["seed"], backend=args.backend, dtype=settings["dtype"],
                           workers=workers, comm=comm)
        if args.out:  # now, not at the first save: a directory we cannot create must not cost a run
            try:
                os.makedirs(args.out, exist_ok=True)
            except OSError as e:
                raise ValueError(f"--out: cannot create {args.out} ({e.strerror})") from None
            if not os.access(args.out, os.W_OK):
                raise ValueError(f"--out: cannot write to {args.out}")
    settings["steps"] = steps
    return state, cfg, settings, source, steps, note


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
    both.add_argument("--preset", help=f"model size: tiny, small, base, big (default {default('preset')})")
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
