"""The ``train`` exercise: a short training run with the learner's own backward passes.

Every exercise that passed its check in the learner's folder is swapped in (the
others run as the reference), and the tiny model trains for a few steps in
float32 with dropout on, from one seed; the reference run uses the same seed and
batches. The per-step losses must agree to float32 rounding (relative 1e-5): an
op that passed in float64 on small shapes can still fail here, in float32, on a
model's shapes, or when called many times.
"""
from __future__ import annotations

import numpy as np

from npformer.exercise import guard
from npformer.exercise.catalog import EXERCISES
from npformer.verify.diagnose import Finding
from npformer.exercise.grader import Report, finish, normalise

STEPS, LR, RTOL = 6, 1e-3, 1e-5


def _batches(cfg, n=2, B=6, S=9, T=8):
    from npformer.data.batching import Batch
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        src = rng.integers(3, cfg.vocab_size, (B, S))
        tgt = rng.integers(3, cfg.vocab_size, (B, T + 1))
        tgt[:, 0] = cfg.bos_id
        for b in range(B):
            src[b, S - b % 3:] = cfg.pad_id
            tgt[b, T + 1 - b % 2:] = cfg.pad_id
        out.append(Batch(src, tgt[:, :-1], tgt[:, 1:], int((tgt[:, 1:] != cfg.pad_id).sum()), np.arange(B)))
    return out


def losses(backend=None, steps: int = STEPS, seed: int = 0) -> list:
    """The per-step losses of the tiny model, float32, dropout on, with whatever ops are bound now."""
    from npformer.model.config import preset
    from npformer.train.state import init_state
    from npformer.train.trainer import train_step
    cfg = preset("tiny", vocab_size=48, max_len=32)
    state = init_state(cfg, seed=seed, backend=backend, dtype="float32", workers=1)
    batches = _batches(cfg)
    return [train_step(state, cfg, batches[i % len(batches)], LR)[0] for i in range(steps)]


def check_train(folder: str, backend=None, steps: int = STEPS, seed: int = 0, quiet: bool = False,
                functions: dict | None = None) -> Report:
    """Run the train exercise on ``folder``'s passed exercises (or on ``functions``: id -> functions)."""
    from npformer.backend import get_backend
    from npformer.exercise import files
    be = get_backend(backend)
    if functions is None:
        functions = {i: files.load(i, folder) for i in files.passed(folder)}
    fns = {}
    for i, f in functions.items():
        fns.update(normalise(EXERCISES[i], f))
    report = Report("train", False, "failed", seed, be.name)
    report.notes.append(f"your functions in the run: {', '.join(fns) or 'none yet (every op is the reference)'}")
    want = losses(be, steps, seed)
    try:
        with guard.swapped(fns):
            got = losses(be, steps, seed)
    except Exception as e:  # noqa: BLE001 -- the learner's code failing in training is a finding
        report.findings.append(Finding("training", "the run", "a step", f"raised {type(e).__name__}: {e} "
                                       "(in float32: does your code assume float64, or one shape?)", "exception"))
        return finish(report, quiet)
    for k, (a, b) in enumerate(zip(want, got), 1):
        err = abs(a - b) / max(abs(a), 1e-12)
        report.rows.append(("train", f"step {k}: reference {a:.6f}, yours {b:.6f}", "loss", err))
        if err > RTOL and not report.findings:
            report.findings.append(Finding("loss", f"step {k}", f"step {k} and after", f"{b:.6f} against the "
                                           f"reference's {a:.6f}: one of your ops ({', '.join(fns)}) differs in "
                                           "float32 or on the model's shapes; check each again", "train"))
    return finish(report, quiet)
