"""Checkpoint averaging (paper §6.1): "for the base models, we used a single
model obtained by averaging the last 5 checkpoints".

    theta_avg = (1/K) sum_k theta_k        for every parameter, over K checkpoints

Averaging only makes sense between points of one run, so every checkpoint
must have the same config and the same tokenizer (vocabulary); anything else
is refused (``UserError``: they are the user's files) before the sum. The sum runs in float64 and the result is cast
back to the first checkpoint's dtype. Adam's moments are not averaged: the
result is for decoding, not for resuming.
"""
from __future__ import annotations

import numpy as np

from npformer import checkpoint
from npformer.checkpoint import Checkpoint
from npformer.errors import UserError


def average_checkpoints(paths) -> tuple[dict, Checkpoint]:
    """``(averaged parameters as NumPy arrays, the checkpoint of the latest step)``."""
    paths = list(paths)
    if len(paths) < 2:
        raise UserError(f"average: expected at least 2 checkpoints, got {len(paths)}")
    first = checkpoint.load(paths[0])
    sums = {k: a.astype(np.float64) for k, a in first.params.items()}
    newest = first
    for path in paths[1:]:
        ck = checkpoint.load(path)
        try:
            checkpoint.validate_same_config(first.config, ck.config, path)
        except UserError as e:
            raise UserError(f"average: {e} (expected: as in {paths[0]}); only checkpoints of one run "
                            "can be averaged") from None
        if ck.tokenizer != first.tokenizer:
            raise UserError(f"average: {path} has another vocabulary (tokenizer) than {paths[0]}; "
                            "only checkpoints of one run can be averaged")
        for k, a in ck.params.items():
            sums[k] += a
        newest = ck if ck.step > newest.step else newest
    dtypes = {k: a.dtype for k, a in first.params.items()}
    params = {k: (s / len(paths)).astype(dtypes[k]) for k, s in sums.items()}
    return params, newest


def save_average(paths, out) -> str:
    """Average ``paths`` and write the result to ``out`` with the latest checkpoint's
    config, step, history and tokenizer, and the averaged paths in extra."""
    params, last = average_checkpoints(paths)
    extra = {**last.extra, "averaged": [str(p) for p in paths]}
    return checkpoint.save(out, params, last.config, step=last.step, history=last.history,
                           tokenizer=last.tokenizer, extra=extra)
