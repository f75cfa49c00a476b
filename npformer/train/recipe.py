"""The translation recipe: settings derived from the corpus and the budget.

``npformer train`` (translation) and ``npformer demo`` share one recipe. Some
settings are fixed (the preset, label smoothing, the longest pair); the rest
depend on how much text there is and how much training the budget buys, and
are derived here. Every derived setting comes with the reason it was chosen,
which the commands print, and every one of them can be overridden by its
option.

What is derived, from W = the training split's words (both sides), and E = the
epochs the budget is expected to cover:

* ``merges`` (BPE): about 4 * sqrt(W), rounded to 500, within [1000, 32000].
  A small corpus cannot fill a large vocabulary: rare subwords are seen too few
  times to learn, and every extra row of the shared embedding also costs a
  column of the output projection at every target position. The bundled
  corpus (1.4M words) gets 4500, a corpus of 150k words 1500, and the paper's
  WMT English-German (about 200M words) the cap.
* ``p_drop``: 0 when E < 3, else the paper's 0.1. A model that sees each pair
  once or twice cannot overfit it, and dropout would only slow the learning.
* ``max_tokens`` (padded positions per batch): 2000, but small enough that an
  epoch is at least 300 updates, and never below what 32 pairs of the
  corpus's mean length take. On a small corpus more, smaller updates learn
  more from the same tokens than fewer large ones; below a few dozen pairs a
  batch's gradient is too noisy for the recipe's learning rate.
* ``n_layers`` (N, each stack's depth): one layer fewer than the preset's (at
  least 2) below 1M training words or below 3,000 expected steps, else the
  preset's. A shallower model overfits a small corpus less, and in a short
  run its 1.4 times as many steps are worth more than the depth. A
  ``--preset`` given by name keeps its own N.
* the schedule: linear decay to 0 over the budget (``npformer.train.schedule``)
  with a peak of 0.032 / sqrt(d_model) (2e-3 for ``small``) and a warmup of 5%
  of the expected steps (50 to 4000), with pre-LN (``norm="pre"``), which
  trains stably at that rate with a short warmup. The paper's post-LN and
  schedule stay available: ``--norm post --schedule noam``.

The last two rules come from ten-minute runs (docs/tuning.md, "Corpora it was
not tuned on"): each raised BLEU on the software-message corpus by 6 to 9
points and exact match on the spelling-to-pronunciation task by 9 points, and
N = 2 took the ten-minute demo from about 18 to 22 BLEU. The 32-pair floor
took the 3,000-pair cut of the bundled corpus from 5.66 BLEU (500-token
batches of about 15 pairs) to 11.12. The 60-minute run
(~6,300 steps expected) keeps N = 3; where between 1,400 and 6,300 steps the
depth starts to pay has not been measured, and 3,000 is a round number between.

E and the expected steps come from the budget: a step budget gives them
directly; a time budget uses the preset's typical throughput on a 2-core CPU
(``TOKENS_PER_S``). They are estimates, so they are logged as such; a faster
machine only shifts E, which matters only near the dropout threshold.
"""
from __future__ import annotations

import math
from typing import Sequence

# Target tokens per second of one training step on a 2-core x86 CPU (float32,
# NumPy, 2 workers), per preset: the throughput the time budget is converted with.
TOKENS_PER_S = {"tiny": 20000, "small": 3000, "base": 400, "big": 100}
SUBWORDS_PER_WORD = 1.3  # a BPE vocabulary of a few thousand merges splits words about this much
TARGET_SHARE = 0.85       # of a batch's padded positions (B x longest side), the real target tokens
DROPOUT_EPOCHS = 3        # below this many expected epochs, no dropout
BATCH_TOKENS = 2000
EPOCH_STEPS = 300         # max_tokens is lowered until an epoch is at least this many updates
MIN_BATCH_PAIRS = 32      # but a batch holds at least this many pairs of the mean length
SMALL_CORPUS_WORDS = 1_000_000  # below this many training words, one layer fewer than the preset's
SHORT_RUN_STEPS = 3000          # or below this many expected steps
LR_SCALE = 0.032          # peak = LR_SCALE / sqrt(d_model)

# The settings this module derives: absent or None in ``given`` means "derive it".
DERIVED = ("merges", "n_layers", "p_drop", "max_tokens", "norm", "schedule", "lr", "warmup")


def corpus_words(pairs: Sequence[tuple[str, str]]) -> tuple[int, int, int]:
    """(words of both sides, words of the target side, words of each pair's longer
    side) of a list of pairs, in one pass."""
    words = tgt = longer = 0
    for s, t in pairs:
        n_src, n_tgt = len(s.split()), len(t.split())
        words, tgt, longer = words + n_src + n_tgt, tgt + n_tgt, longer + max(n_src, n_tgt)
    return words, tgt, longer


def derive(pairs: Sequence[tuple[str, str]], preset: str, *, minutes: float | None = None,
           steps: int | None = None, given: dict | None = None,
           preset_chosen: bool = False) -> tuple[dict, dict]:
    """``(settings, reasons)``: the derived settings for training on ``pairs`` (the
    training split) with the budget ``minutes`` and/or ``steps``. Settings in
    ``given`` (not None) are kept as they are, with the reason "given";
    ``preset_chosen``: the user named the preset, which then keeps its depth."""
    from npformer.model.config import preset as preset_config
    if minutes is None and steps is None:
        raise ValueError("recipe: give the budget, minutes or steps")
    given = {k: v for k, v in (given or {}).items() if v is not None}
    words, tgt_words, longer_words = corpus_words(pairs)
    if words == 0:
        raise ValueError("recipe: the training split has no words")
    out, why = {}, {}

    def choose(name, value, reason):
        if name in given:
            out[name], why[name] = given[name], "given"
        else:
            out[name], why[name] = value, reason

    merges = min(32000, max(1000, 500 * round(4 * math.sqrt(words) / 500)))
    choose("merges", merges, f"4 x sqrt({words:,} training words), rounded to 500, within [1000, 32000]")
    epoch_tokens = tgt_words * SUBWORDS_PER_WORD
    epoch_cap = 10 * round(epoch_tokens / TARGET_SHARE / EPOCH_STEPS / 10)
    # a batch's padded positions are its pairs times their longer side
    pair_tokens = longer_words * SUBWORDS_PER_WORD / len(pairs)
    floor = 10 * math.ceil(MIN_BATCH_PAIRS * pair_tokens / 10)
    if epoch_cap >= BATCH_TOKENS or floor >= BATCH_TOKENS:
        choose("max_tokens", BATCH_TOKENS, f"{BATCH_TOKENS}")
    elif epoch_cap >= floor:
        choose("max_tokens", epoch_cap, f"{BATCH_TOKENS}, lowered so that an epoch (~{epoch_tokens:,.0f} "
                                        f"target tokens) is {EPOCH_STEPS} steps")
    else:
        choose("max_tokens", floor, f"{BATCH_TOKENS}, lowered toward {EPOCH_STEPS} steps an epoch but kept at "
                                    f"{MIN_BATCH_PAIRS} pairs of ~{pair_tokens:.0f} tokens")
    step_tokens = out["max_tokens"] * TARGET_SHARE
    budgets = []
    if steps is not None:
        budgets.append((steps * step_tokens, f"{steps} steps"))
    if minutes is not None:
        rate = TOKENS_PER_S.get(preset, TOKENS_PER_S["small"])
        budgets.append((minutes * 60 * rate, f"{minutes:g} min at ~{rate:,} target tokens/s"))
    budget_tokens, budget_text = min(budgets)
    epochs = budget_tokens / epoch_tokens
    expected_steps = max(1, round(budget_tokens / step_tokens))
    config = preset_config(preset)
    depth, d_model = config.n_layers, config.d_model
    short = [f"{words:,} training words < {SMALL_CORPUS_WORDS:,}"] if words < SMALL_CORPUS_WORDS else []
    short += [f"~{expected_steps:,} steps expected < {SHORT_RUN_STEPS:,}"] if expected_steps < SHORT_RUN_STEPS else []
    if preset_chosen:
        choose("n_layers", depth, f"the {preset} preset's, as --preset was given")
    elif short and depth > 2:
        choose("n_layers", depth - 1, f"one fewer than the {preset} preset's {depth}: " + " and ".join(short))
    else:
        choose("n_layers", depth, f"the {preset} preset's" + ("" if depth <= 2 else
               f" ({words:,} training words, ~{expected_steps:,} steps expected)"))
    choose("p_drop", 0.0 if epochs < DROPOUT_EPOCHS else 0.1,
           f"~{epochs:.1f} epochs expected ({budget_text}); "
           + (f"below {DROPOUT_EPOCHS} the model cannot overfit, so no dropout" if epochs < DROPOUT_EPOCHS
              else "the paper's 0.1 against overfitting"))
    choose("norm", "pre", "pre-LN: stable at the recipe's rate with a short warmup")
    choose("schedule", "linear", "warmup, then down to 0 at the end of the budget")
    if out["schedule"] == "noam":  # the paper's schedule has no peak of its own: --lr-factor scales it
        choose("lr", None, "unused: the paper's schedule is scaled by --lr-factor")
    else:
        choose("lr", LR_SCALE / math.sqrt(d_model), f"{LR_SCALE} / sqrt(d_model={d_model})")
    choose("warmup", min(4000, max(50, round(0.05 * expected_steps))),
           f"5% of the ~{expected_steps:,} steps expected, within [50, 4000]")
    return out, why


def describe(settings: dict, reasons: dict) -> list[str]:
    """One line per derived setting: its value and why."""
    return [f"{name} = {_fmt(settings[name])}  ({reasons[name]})" for name in DERIVED if name in settings]


def _fmt(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)
