"""The learning-rate schedule of paper §5.3 (often called the "Noam" schedule).

    lrate = d_model^-0.5 * min(step^-0.5, step * warmup_steps^-1.5)

The learning rate rises linearly for the first ``warmup_steps`` steps, peaks at
step = warmup_steps with lrate = (d_model * warmup_steps)^-0.5, and then decays
with the inverse square root of the step. The two branches meet at the peak:
step^-0.5 = step * warmup^-1.5  <=>  step = warmup. The paper uses
warmup_steps = 4000; ``factor`` scales the whole curve (1 in the paper), which
small models and short runs often want larger.
"""
from __future__ import annotations

import math


def noam_lr(step: int, d_model: int, warmup: int = 4000, factor: float = 1.0) -> float:
    """The learning rate for ``step`` (counted from 1, the first update)."""
    if step < 1:
        raise ValueError(f"noam_lr: step counts from 1, got {step}")
    if warmup < 1:
        raise ValueError(f"noam_lr: warmup must be >= 1, got {warmup}")
    if not (math.isfinite(factor) and factor > 0):
        raise ValueError(f"noam_lr: factor must be a positive number, got {factor}")
    return factor * d_model ** -0.5 * min(step ** -0.5, step * warmup ** -1.5)
