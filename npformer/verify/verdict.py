"""The verdict: from relative errors and findings to passed, failed or borderline.

One gradient of one case is judged by its relative error ``err`` against central
differences (float64):

    err <= TOL_PASS (1e-7)          right
    err >= TOL_BUG  (1e-3)          a bug; ``diagnose`` says which pattern
    TOL_PASS < err < TOL_BUG        measured again at two other step sizes h: an error
                                    that falls to TOL_PASS at one of them was
                                    finite-difference noise (passed, with a note); one
                                    that does not is "borderline", small but real

A report passes when it has no finding; it fails when a finding other than a
borderline one is left; otherwise it is borderline.
"""
from __future__ import annotations

import numpy as np

from npformer.verify.diagnose import TOL_BUG, TOL_PASS, Finding

RECHECK_STEPS = (1e-5, 1e-7)   # the other step sizes h an in-between error is measured at


def settle(err: float, finding: Finding | None, err_at_step, h: float) -> tuple:
    """(err, finding, note) for one gradient measured at step ``h``. ``err_at_step(h)`` measures
    it again at another step; only an in-between error is measured again."""
    if finding is None or not TOL_PASS < err < TOL_BUG:
        return err, finding, None
    errs = {step: err_at_step(step) for step in RECHECK_STEPS}
    best = min(errs, key=errs.get)
    if errs[best] <= TOL_PASS:
        note = f"{err:.1e} at h = {h:g}, {errs[best]:.1e} at h = {best:g}: finite-difference noise, not an error"
        return errs[best], None, note
    measured = ", ".join(f"{v:.1e} at h = {step:g}" for step, v in errs.items())
    return err, Finding(finding.gradient, finding.case, finding.where,
                        f"a small error ({err:.1e}) that does not move with the step h ({measured}): small but "
                        "real, like an eps in the wrong place or a term of second order; "
                        f"the closest pattern: {finding.diagnosis}", "borderline", err), None


def closest_per_entry(mine, numeric: list):
    """Per entry, the numerical value closest to the learner's among several step sizes: a step
    that crosses a kink (a ReLU input within h of 0) spoils one entry's difference, and a real
    error disagrees at every step size."""
    best = numeric[0]
    for other in numeric:   # the first against itself changes nothing; a tie keeps the earlier step
        best = np.where(np.abs(other - mine) < np.abs(best - mine), other, best)
    return best


def verdict(findings: list) -> tuple[bool, str]:
    """(passed, "passed" | "failed" | "borderline") of a report's findings."""
    if not findings:
        return True, "passed"
    return False, "failed" if any(f.tag != "borderline" for f in findings) else "borderline"


def same(a, b) -> bool:
    """Equal to rounding, NaN where NaN: the learner's result is a known mistake's."""
    if np.shape(a) != np.shape(b) or not np.array_equal(np.isnan(a), np.isnan(b)):
        return False
    a, b = np.nan_to_num(a), np.nan_to_num(b)
    return float(np.abs(a - b).max(initial=0.0)) <= 1e-9 * max(float(np.abs(b).max(initial=0.0)), 1e-300)
