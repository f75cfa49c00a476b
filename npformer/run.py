"""One training run, from its settings to its report: what ``npformer train`` and
``npformer demo`` share. The commands parse options and print; this module does
the rest.

    settings  defaults, then a resumed run's settings, then the options given  (resolve_settings)
              + for a new translation run, the recipe's derived values          (derive_recipe)
    source    where the batches come from and how the run is evaluated         (make_source)
    cfg       the model the settings describe                                  (model_config)
    state     fresh (init_state) or resumed from RUN_DIR/last.npz              (start_run)
    ranks     compare one fingerprint before the first step                    (run_fingerprint)
    train     npformer.train.trainer.train on the run's batches and evaluation  (train_run)
    report    the figures a command prints                                     (report)

Two uses, each with its own defaults: translation (a TSV corpus, by default the
bundled one; ``CORPUS_DEFAULTS``) and the synthetic tasks (``--task copy`` or
``reverse``; ``TASK_DEFAULTS``). A setting that belongs to the other use is
refused.

A *data source* is ``batches(step)`` (a pure function of the step, so a resume
continues exactly), ``evaluate(params, cfg)`` for held-out metrics, and the
vocabulary. The synthetic tasks are one source, a corpus another; both plug
into the same training loop.

Every refusal of the user's settings, data, output directory or run to resume
is a ``UserError`` raised here, before the first step; the checks that live
below (a model config, a synthetic task, a schedule) are run on the settings by
``check_settings`` first, their ValueError turned into a UserError.

This sits above ``npformer.translation`` (a corpus run's dev BLEU decodes with
it), below the commands.
"""
from __future__ import annotations

import os
from typing import Callable, NamedTuple

from npformer.errors import UserError

# Settings that define a run: stored in its checkpoint, fixed on resume.
RUN_SETTINGS = ("task", "data", "merges", "preset", "n_layers", "d_ff", "norm", "vocab_size", "min_len", "max_len",
                "p_drop", "label_smoothing", "batch_size", "max_tokens", "seed", "schedule", "lr", "lr_factor",
                "warmup", "clip", "dtype")

# Translation's fixed settings (the bundled corpus, or a TSV): the small preset,
# pairs of up to 100 subwords, label smoothing 0.1. The rest (BPE merges,
# dropout, batch size, LayerNorm placement and the learning-rate schedule) is
# derived from the corpus and the budget by npformer/train/recipe.py;
# ``lr_factor`` is the paper's schedule's, used when ``schedule="noam"`` is chosen.
CORPUS_DEFAULTS = dict(task="translate", data=None, preset="small", n_layers=None, d_ff=None, vocab_size=None,
                       min_len=None, max_len=100,
                       label_smoothing=0.1, batch_size=None, seed=0, lr_factor=0.5, clip=None, dtype="float32",
                       steps=None)

# The synthetic tasks: the tiny preset learns to reverse 4..12-token sequences
# over 20 symbols to >= 99% held-out exact match in 3000 steps. Dropout 0.1 and
# clipping at 1 keep the late steps stable; without them exact match keeps
# dipping below 100%.
TASK_DEFAULTS = dict(preset="tiny", n_layers=None, d_ff=None, norm="post",
                     vocab_size=24, min_len=4, max_len=12, p_drop=0.1, label_smoothing=0.1,
                     batch_size=64, max_tokens=None, seed=0, schedule="noam", lr=None, lr_factor=0.5, warmup=300,
                     clip=1.0, dtype="float32", steps=3000)
HELDOUT_SIZE = 500
# Dev BLEU: greedy on a fixed sample of the dev pairs, the same in every evaluation
# and every run of a corpus (a permutation by this seed; its first n pairs). n is
# chosen at a run's first evaluation so that an evaluation costs at most 5% of the
# run (train/trainer.py's EVAL_SHARE), but no fewer than DEV_BLEU_MIN pairs (a BLEU
# of fewer says little); the run keeps it, resumes included.
DEV_SAMPLE_SEED = 0
DEV_BLEU_MIN = 50
DEV_BLEU_SENTENCES = 200  # when no time budget is given

# Settings that make sense for one use only: given for the other, they are refused.
TASK_ONLY = {"vocab_size": "translation learns its vocabulary (--merges)",
             "min_len": "translation keeps every pair up to --max-len",
             "batch_size": "translation batches by --max-tokens"}
TRANSLATION_ONLY = {"merges": "the synthetic tasks have no BPE (--vocab-size)"}


def option(name: str) -> str:
    """The command-line spelling of a setting: ``max_len`` -> ``--max-len`` (``n_layers`` is ``--layers``)."""
    return "--layers" if name == "n_layers" else "--" + name.replace("_", "-")


# --- settings --------------------------------------------------------------
def resolve_settings(given: dict, saved: dict | None = None, task: str | None = None) -> dict:
    """A run's settings: the defaults of its use, then ``saved`` (a resumed run's,
    which ``given`` may not contradict), then ``given`` (the settings the user
    chose; None values are left out). ``task``: "copy"/"reverse", or None for
    translation."""
    given = {k: v for k, v in given.items() if k in RUN_SETTINGS and v is not None}
    if "batch_size" in given and "max_tokens" in given:
        raise UserError("--batch-size and --max-tokens both size a batch; give one of them")
    task = saved["task"] if saved is not None else (task or "translate")
    for name, why in (TASK_ONLY if task == "translate" else TRANSLATION_ONLY).items():
        if name in given:
            use = "the synthetic tasks (--task)" if task == "translate" else "translation"
            raise UserError(f"{option(name)} is for {use}: {why}")
    if "batch_size" in given or "max_tokens" in given:  # one replaces the other
        given.setdefault("batch_size", None)
        given.setdefault("max_tokens", None)
    if saved is None:
        defaults = CORPUS_DEFAULTS if task == "translate" else TASK_DEFAULTS
        return {**defaults, **given, "task": task}
    # runs saved before these settings existed were all post-LN with the paper's schedule
    saved = {"norm": "post", "schedule": "noam", "lr": None, **saved}
    clash = [f"{option(k)} {given[k]} (the run has {saved.get(k)})" for k in given if given[k] != saved.get(k)]
    if clash:
        raise UserError("--resume keeps the run's settings; these differ: " + ", ".join(clash))
    return dict(saved)


def budget_steps(steps: int | None, minutes: float | None, settings: dict, resumed: bool) -> int | None:
    """The step to train until: ``steps``, else none with ``minutes``, else the run's default."""
    steps = steps if steps is not None or minutes is not None else settings["steps"]
    if steps is None and minutes is None:
        raise UserError("the resumed run had only a time budget; give --steps or --minutes" if resumed else
                        "translation trains until --steps N or for --minutes M; give one (or both)")
    return steps


def derive_recipe(settings: dict, minutes: float | None, steps: int | None,
                  preset_chosen: bool = False) -> list[str]:
    """Fill in the settings of a new translation run that are None with the recipe's
    values for its corpus and budget; returns one line per setting saying why.
    ``preset_chosen``: the user named the preset (which then keeps its depth)."""
    from npformer.data.corpus import load_corpus
    from npformer.train.recipe import DERIVED, derive, describe
    derived, reasons = derive(load_corpus(settings["data"])["train"], settings["preset"], minutes=minutes,
                              steps=steps, given={k: settings.get(k) for k in DERIVED},
                              preset_chosen=preset_chosen)
    settings.update(derived)
    return describe(derived, reasons)


def validate_schedule_options(settings: dict) -> None:
    """``lr`` belongs to the linear schedule, ``lr_factor`` to the paper's."""
    if settings.get("schedule") == "noam" and settings.get("lr") is not None:
        raise UserError("--lr is the peak of the linear schedule; the paper's schedule (--schedule noam) "
                        "is scaled with --lr-factor")
    if settings.get("schedule") == "linear" and settings.get("lr") is None:  # the recipe derives it for translation
        raise UserError("--schedule linear decays from a peak learning rate; give it with --lr")


# Any valid vocabulary size: a new translation run learns its own only after the
# corpus is encoded, and the rest of its model is checked before that.
PROBE_VOCAB_SIZE = 8000


def check_settings(settings: dict) -> None:
    """Refuse settings that make no model, task or schedule (a dropout of 1.5, a
    task vocabulary without room for the special ids, a linear schedule without
    its peak) before any data is learned or a step taken. The checks are
    ``TransformerConfig``'s, ``SequenceTask``'s and ``Schedule``'s own, whose
    ValueError is the user's here."""
    from npformer.train.tasks import SequenceTask
    try:
        if settings["task"] != "translate":
            SequenceTask(settings["task"], settings["vocab_size"], settings["min_len"], settings["max_len"])
        cfg = model_config({**settings, "vocab_size": settings["vocab_size"] or PROBE_VOCAB_SIZE})
        schedule_of(settings, cfg.d_model)
    except ValueError as e:
        raise UserError(str(e)) from e


def schedule_of(settings: dict, d_model: int):
    """The learning-rate Schedule of a run's settings."""
    from npformer.train.schedule import Schedule
    return Schedule(settings.get("schedule", "noam"), settings["warmup"], settings["lr_factor"], d_model,
                    settings.get("lr"))


def model_config(settings: dict):
    """The TransformerConfig of a run's settings: its preset (with N and d_ff
    where given), norm placement, V, dropout and label smoothing, and a
    positional table long enough for its longest sequence."""
    from npformer.model.config import preset
    overrides = dict(vocab_size=settings["vocab_size"], p_drop=settings["p_drop"],
                     eps_ls=settings["label_smoothing"], norm=settings.get("norm", "post"),
                     **{k: settings[k] for k in ("n_layers", "d_ff") if settings.get(k) is not None})
    cfg = preset(settings["preset"], **overrides)
    return cfg.replace(max_len=max(cfg.max_len, settings["max_len"] + 1))  # + 1: BOS / EOS


# --- data sources ------------------------------------------------------------
class DataSource(NamedTuple):
    batches: Callable              # step (from 1) -> Batch; a pure function of the step
    evaluate: Callable             # (params, cfg, seconds) -> {"val_loss": ..., ...} on held-out data
    tokenizer: dict | None         # stored in the checkpoint (None for synthetic tasks)
    heldout_size: int
    corpus: object = None          # the TranslationData of a corpus (its splits and BPE), else None
    best_key: str = "val_loss"     # the metric of evaluate that picks best.npz
    maximize: bool = False         # ... the higher the better (BLEU), not the lower (a loss)


def task_source(s: dict, workers=None) -> DataSource:
    """Random copy / reverse sequences (npformer.train.tasks)."""
    from npformer.data.batching import make_batches
    from npformer.decode.greedy import greedy_decode
    from npformer.train.tasks import SequenceTask, evaluate_exact_match
    from npformer.train.trainer import evaluate_loss

    task = SequenceTask(s["task"], s["vocab_size"], s["min_len"], s["max_len"])
    heldout = task.heldout(s["seed"], HELDOUT_SIZE)
    heldout_batches = make_batches(*heldout, max_tokens=64 * (s["max_len"] + 1))

    def evaluate(params, cfg, seconds=None):
        return {"val_loss": evaluate_loss(params, cfg, heldout_batches, workers),
                "exact_match": evaluate_exact_match(params, cfg, heldout, greedy_decode)}

    return DataSource(task.batches(s["seed"], s["batch_size"], s["max_tokens"]), evaluate, None, HELDOUT_SIZE)


class DevEvaluation:
    """``(params, seconds) -> {"val_loss", "dev_bleu", "dev_chrf", "bleu_sentences"}``
    on a corpus' dev split.

    The loss is teacher-forced over every dev pair, label-smoothed as trained.
    BLEU and chrF are ``translation.score``'s (sacreBLEU, as ``npformer
    evaluate``) of greedy outputs (at most 1.2 x the source + 5 tokens) for the
    first n pairs of the dev split shuffled by ``DEV_SAMPLE_SEED``. n is chosen
    once, at the first evaluation: the loss and the first ``DEV_BLEU_MIN``
    outputs are timed, and n is what the rest of 90% of ``seconds`` decodes at
    that pace (at least ``DEV_BLEU_MIN``, at most the dev split; 200 when no
    ``seconds`` are given). Every later evaluation decodes the
    same n pairs, so their BLEU compare; ``sentences`` gives n from the start (a
    resumed run's). Without sacreBLEU there is no BLEU (nothing hand-rolled
    stands in for it), or with ``bleu`` False: the loss alone."""

    def __init__(self, data, cfg, max_tokens: int, workers=None, sentences: int | None = None,
                 bleu: bool = True):
        import time
        import numpy as np
        from npformer.data.pipeline import eval_batches
        from npformer.runtime.workers import as_workers
        from npformer.translation import scoring_available
        self.data, self.cfg, self.workers = data, cfg, as_workers(workers)
        self.batches = eval_batches(*data.ids["dev"], max_tokens=max_tokens, max_len=cfg.max_len - 1)
        dev = data.splits["dev"]
        order = np.random.default_rng(DEV_SAMPLE_SEED).permutation(len(dev))
        self.pairs = [dev[i] for i in order] if bleu and scoring_available() else []
        self.n = None if sentences is None else min(sentences, len(self.pairs))
        self.clock = time.perf_counter

    def __call__(self, params, seconds: float | None = None) -> dict:
        from npformer.train.trainer import evaluate_loss
        from npformer.translation import Translator, score
        t0 = self.clock()
        metrics = {"val_loss": evaluate_loss(params, self.cfg, self.batches, self.workers)}
        if not self.pairs:
            return metrics
        model = Translator(params, self.cfg, self.data.tokenizer)
        hyps = []
        if self.n is None:
            self.n = min(DEV_BLEU_SENTENCES, len(self.pairs))
            if seconds is not None:  # time the first outputs, then size n to the time left
                t1 = self.clock()
                hyps = self.decode(model, self.pairs[:min(len(self.pairs), DEV_BLEU_MIN)])
                now = self.clock()
                pace = max(now - t1, 1e-9) / len(hyps)
                # 90%: scoring, and outputs that differ from the first ones', take some of the rest
                affordable = len(hyps) + int(max(0.0, 0.9 * seconds - (now - t0)) / pace)
                self.n = min(len(self.pairs), max(DEV_BLEU_MIN, affordable, len(hyps)))
        hyps = (hyps + self.decode(model, self.pairs[len(hyps):self.n]))[:self.n]
        scores = score(hyps, [t for _, t in self.pairs[:self.n]])
        return {**metrics, "dev_bleu": scores["bleu"], "dev_chrf": scores["chrf"], "bleu_sentences": self.n}

    def decode(self, model, pairs) -> list[str]:
        from npformer.translation import DECODING, translate
        return translate(model, [src for src, _ in pairs], beam_size=1, no_repeat_ngram=0, workers=self.workers,
                         max_len_a=DECODING["max_len_a"], max_len_b=DECODING["max_len_b"])


def corpus_source(s: dict, tokenizer: dict | None = None, workers=None, history=(),
                  dev_bleu: bool = True) -> DataSource:
    """Sentence pairs from a TSV (default: the bundled Bible EN->ES), a shared BPE
    vocabulary learned on the training split (or the resumed run's), batches by
    length and token count, and the dev loss and dev BLEU (``DevEvaluation``;
    a resumed run's ``history`` keeps its sample size). best.npz is the best by
    dev BLEU, or by dev loss without sacreBLEU or ``dev_bleu``. Sets ``s["vocab_size"]``."""
    from npformer.data.bpe import BPETokenizer
    from npformer.data.pipeline import batch_schedule, prepare
    from npformer.translation import scoring_available
    try:
        tok = BPETokenizer.from_dict(tokenizer) if tokenizer is not None else None
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"--resume: the run's checkpoint holds an invalid tokenizer ({e})") from None
    data = prepare(s["data"], num_merges=s["merges"], tokenizer=tok, splits_wanted=("train", "dev"))
    s["vocab_size"] = data.tokenizer.vocab_size
    batches = batch_schedule(*data.ids["train"], max_tokens=s["max_tokens"], seed=s["seed"], max_len=s["max_len"])
    sentences = next((r["bleu_sentences"] for r in reversed(history) if "bleu_sentences" in r), None)
    evaluators = {}

    def evaluate(params, cfg, seconds=None):
        if "dev" not in evaluators:  # built at the first evaluation: it needs the model's cfg
            evaluators["dev"] = DevEvaluation(data, cfg, s["max_tokens"], workers, sentences, bleu)
        return evaluators["dev"](params, seconds)

    bleu = dev_bleu and scoring_available()
    return DataSource(batches, evaluate, data.tokenizer.to_dict(), len(data.splits["dev"]), data,
                      best_key="dev_bleu" if bleu else "val_loss", maximize=bleu)


def make_source(settings: dict, tokenizer: dict | None = None, workers=None, history=(),
                dev_bleu: bool = True) -> DataSource:
    if settings["task"] == "translate":
        return corpus_source(settings, tokenizer, workers, history, dev_bleu)
    return task_source(settings, workers)


def run_fingerprint(state, cfg, settings: dict, source: DataSource) -> dict:
    """What the ranks of one run must share (train/ranks.py ``fingerprint``): the
    model and its starting state, the settings, the vocabulary, and the whole
    first batch (source, decoder input and targets)."""
    from npformer.runtime.distributed.communicator import digest
    from npformer.train.ranks import fingerprint
    batch = source.batches(state.step + 1)
    return fingerprint(state, cfg, settings=settings, vocabulary=digest(source.tokenizer),
                       data=digest([digest(batch.src), digest(batch.tgt_in), digest(batch.tgt_out)]))


# --- starting a run -----------------------------------------------------------
class Run(NamedTuple):
    state: object                  # npformer.train.state.TrainState
    cfg: object                    # TransformerConfig
    settings: dict
    source: DataSource
    steps: int | None              # the step to train until (None: the time budget alone)
    note: str | None               # what the user should know before it starts (the recipe, a layout change)


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


def prepare_out_dir(out: str) -> None:
    """Create RUN_DIR now, not at the first save: a directory that cannot be
    created or written must not cost a run."""
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        raise UserError(f"--out: cannot create {out} ({e.strerror})") from None
    if not os.access(out, os.W_OK):
        raise UserError(f"--out: cannot write to {out}")


def start_run(given: dict, task: str | None = None, *, out: str | None = None, resume: bool = False,
              steps: int | None = None, minutes: float | None = None, backend=None,
              workers: int | None = None, comm=None, dev_bleu: bool = True) -> Run:
    """A new run (fresh parameters) or, with ``resume``, ``out/last.npz`` continued
    with its own settings; everything a bad setting can fail on fails here,
    before the first step. ``given``: the settings chosen (``RUN_SETTINGS`` keys,
    None for not given); ``steps``/``minutes``: the budget; ``workers``: the
    threads of this rank (``--workers``; None: its share of the cores), whose
    pool is built here; ``comm``: the ranks (None: this process alone); ``dev_bleu``: False
    evaluates a translation run by its dev loss alone (no decoding)."""
    from npformer.runtime.distributed.communicator import SingleProcess
    from npformer.train.ranks import workers_per_rank
    from npformer.train.state import init_state, load_state
    comm = comm or SingleProcess()
    workers = workers_per_rank(workers, backend, comm)
    last = os.path.join(out, "last.npz") if out else None
    if out and os.path.exists(out) and not os.path.isdir(out):
        raise UserError(f"--out: {out} exists and is not a directory")
    note = None
    if resume:
        if not out:
            raise UserError("--resume needs --out RUN_DIR (it continues RUN_DIR/last.npz)")
        if not os.path.exists(last):
            raise UserError(f"--resume: {last} does not exist; expected the last.npz that npformer train "
                            f"--out {out} wrote")
        state, ck = load_state(last, backend=backend, workers=workers, comm=comm)
        note = layout_change(ck.extra.get("layout"), state.comm.size, state.workers.n)
        if "settings" not in ck.extra:
            raise UserError(f"--resume: {last} has no run settings; it was not written by `npformer train`")
        settings = resolve_settings(given, ck.extra["settings"])
        steps = budget_steps(steps, minutes, settings, resumed=True)
        source = make_source(settings, ck.tokenizer, state.workers, ck.history, dev_bleu)
        cfg = ck.config
    else:
        if last and os.path.exists(last):
            raise UserError(f"--out: {last} exists; pass --resume to continue it, or choose another RUN_DIR")
        settings = resolve_settings(given, None, task)
        steps = budget_steps(steps, minutes, settings, resumed=False)
        if settings["task"] == "translate":
            note = "the recipe for this corpus and budget:\n  " + "\n  ".join(
                derive_recipe(settings, minutes, steps, preset_chosen=given.get("preset") is not None))
        validate_schedule_options(settings)
        check_settings(settings)
        if out:
            prepare_out_dir(out)
        source = make_source(settings, None, workers, dev_bleu=dev_bleu)
        cfg = model_config(settings)
        state = init_state(cfg, seed=settings["seed"], backend=backend, dtype=settings["dtype"],
                           workers=workers, comm=comm)
    settings["steps"] = steps
    return Run(state, cfg, settings, source, steps, note)


# --- training it -----------------------------------------------------------------
def train_run(run: Run, *, minutes: float | None = None, out: str | None = None, eval_every: int = 0,
              save_every: int = 0, keep_last: int = 0, log_every: int = 10, progress: bool = True) -> int:
    """Train ``run`` (npformer.train.trainer.train) until its step budget or for
    ``minutes``, evaluating on its source every ``eval_every`` steps and writing its
    checkpoints (settings and layout with them) to ``out``; returns the step it started at."""
    from npformer.train.trainer import train
    state, cfg, settings, source = run.state, run.cfg, run.settings, run.source
    start_step = state.step
    train(state, cfg, source.batches, steps=run.steps, minutes=minutes,
          schedule=schedule_of(settings, cfg.d_model), clip=settings["clip"],
          eval_fn=lambda params, seconds: source.evaluate(params, cfg, seconds), eval_every=eval_every,
          best_key=source.best_key, maximize=source.maximize,
          out_dir=out, save_every=save_every, log_every=log_every, progress=progress,
          checkpoint_extra={"settings": settings, "layout": {"ranks": state.comm.size, "workers": state.workers.n}},
          tokenizer=source.tokenizer, keep_last=keep_last)
    return start_step


# --- the report -----------------------------------------------------------------
def report(run: Run, start_step: int, minutes: float, out: str | None = None) -> dict:
    """The figures of a finished ``train`` call: task, steps, minutes, final_loss,
    val_loss, exact_match (tasks), dev_bleu, dev_chrf and dev_bleu_sentences
    (translation with sacreBLEU), eval_share (the share of the call's time its
    evaluations took), tokens_per_s, heldout_size, workers, ranks, settings; with
    a run directory ``out``, checkpoint (its last.npz); and best: the evaluation
    that best.npz holds (by: the metric that chose it, step, value, checkpoint).
    Metrics a run does not have are None."""
    from npformer.train.trainer import best_record, throughput
    state, settings, source = run.state, run.settings, run.source
    trained = [r for r in state.history if r["kind"] == "train" and r["step"] > start_step]
    evals = [r for r in state.history if r["kind"] == "eval"]
    final_eval = evals[-1]
    eval_s = [r["eval_s"] for r in evals if r["step"] > start_step and "eval_s" in r]
    best = best_record(state.history, source.best_key, source.maximize)
    result = {
        "task": settings["task"], "steps": state.step, "minutes": round(minutes, 3),
        "final_loss": trained[-1]["loss"] if trained else None,
        "val_loss": final_eval["val_loss"], "exact_match": final_eval.get("exact_match"),
        "dev_bleu": final_eval.get("dev_bleu"), "dev_chrf": final_eval.get("dev_chrf"),
        "dev_bleu_sentences": final_eval.get("bleu_sentences"),
        "eval_share": round(sum(eval_s) / (60 * minutes), 4) if eval_s and minutes > 0 else None,
        "tokens_per_s": throughput(trained),
        "heldout_size": source.heldout_size, "workers": state.workers.n, "ranks": state.comm.size,
        "settings": {k: settings.get(k) for k in RUN_SETTINGS},
        "best": None if best is None else {
            "by": source.best_key, "step": best["step"], "value": best[source.best_key],
            "checkpoint": os.path.join(out, "best.npz") if out else None},
    }
    if out:
        result["checkpoint"] = os.path.join(out, "last.npz")
    return result
