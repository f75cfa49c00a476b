"""Learning-rate schedules: the paper's (§5.3), and a linear decay over a budget.

``noam``, the paper's (often called the "Noam" schedule):

    lrate = factor * d_model^-0.5 * min(step^-0.5, step * warmup^-1.5)

The learning rate rises linearly for the first ``warmup`` steps, peaks at
step = warmup with lrate = factor * (d_model * warmup)^-0.5, and then decays
with the inverse square root of the step. The two branches meet at the peak:
step^-0.5 = step * warmup^-1.5  <=>  step = warmup. The paper uses
warmup = 4000 and factor 1.

``linear``, for a run with a known budget (a step count or a number of minutes):

    lrate = peak * min(1, step / warmup) * (1 - progress)

where progress in [0, 1] is the part of the budget already used. It rises for
``warmup`` steps like the paper's, then falls in a straight line and reaches 0
when the budget does. The inverse square root never gets small in a short run;
ending at 0 lets the last steps settle into a minimum instead of bouncing
around it, which is what averaging the last checkpoints (§6.1) buys in a long
run. With a time budget, progress is measured on the clock, so the decay fits
whatever number of steps the machine manages.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

KINDS = ("noam", "linear")


def noam_lr(step: int, d_model: int, warmup: int = 4000, factor: float = 1.0) -> float:
    """The paper's learning rate for ``step`` (counted from 1, the first update)."""
    _check_step(step, warmup)
    if not (math.isfinite(factor) and factor > 0):
        raise ValueError(f"noam_lr: factor must be a positive number, got {factor}")
    return factor * d_model ** -0.5 * min(step ** -0.5, step * warmup ** -1.5)


def linear_lr(step: int, progress: float, peak: float, warmup: int = 1) -> float:
    """Warmup to ``peak``, then a straight line to 0 at progress 1."""
    _check_step(step, warmup)
    if not (math.isfinite(peak) and peak > 0):
        raise ValueError(f"linear_lr: the peak must be a positive number, got {peak}")
    if not 0.0 <= progress <= 1.0:
        raise ValueError(f"linear_lr: progress must be in [0, 1], got {progress}")
    return peak * min(1.0, step / warmup) * (1.0 - progress)


def _check_step(step: int, warmup: int) -> None:
    if warmup < 1:
        raise ValueError(f"learning-rate schedule: warmup must be >= 1, got {warmup}")
    if step < 1:
        raise ValueError(f"learning-rate schedule: step counts from 1, got {step}")


@dataclass(frozen=True)
class Schedule:
    """A learning-rate schedule: ``schedule(step, progress) -> lrate``.

    ``kind="noam"`` uses ``factor`` and ``d_model`` (progress is ignored);
    ``kind="linear"`` uses ``peak`` and needs the run to have a budget.
    """
    kind: str = "noam"
    warmup: int = 4000
    factor: float = 1.0
    d_model: int = 512
    peak: float | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"schedule: kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind == "linear" and self.peak is None:
            raise ValueError("schedule: the linear schedule needs its peak learning rate")
        self(self.warmup, 0.0)  # every other check: a bad setting fails here, not at step 1

    @property
    def needs_budget(self) -> bool:
        return self.kind == "linear"

    def __call__(self, step: int, progress: float = 0.0) -> float:
        if self.kind == "noam":
            return noam_lr(step, self.d_model, self.warmup, self.factor)
        return linear_lr(step, min(1.0, progress), self.peak, self.warmup)

    def describe(self) -> str:
        if self.kind == "noam":
            return (f"the paper's schedule: warmup {self.warmup}, factor {self.factor:g} "
                    f"(peak {noam_lr(self.warmup, self.d_model, self.warmup, self.factor):.2e})")
        return f"linear: warmup {self.warmup} to {self.peak:.2e}, then down to 0 at the end of the budget"
