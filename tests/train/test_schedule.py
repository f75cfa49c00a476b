"""The schedules at steps whose values are easy to work out by hand."""
import pytest

from hypothesis import given, strategies as st

from npformer.train.schedule import Schedule, linear_lr, noam_lr


def test_values_at_known_steps():
    # d_model = 512, warmup = 4000 (the paper): d_model^-0.5 = 1/sqrt(512)
    inv = 512 ** -0.5
    assert noam_lr(1, 512) == pytest.approx(inv * 4000 ** -1.5)         # warming up: step * w^-1.5
    assert noam_lr(4000, 512) == pytest.approx(inv / 4000 ** 0.5)       # the peak, both branches equal
    assert noam_lr(8000, 512) == pytest.approx(inv / 8000 ** 0.5)       # decaying: step^-0.5
    assert noam_lr(4000, 512) == pytest.approx(7.0e-4, rel=1e-2)        # the paper's peak, about 7e-4
    # d_model = 64, warmup = 100, factor 2: peak 2 / sqrt(64 * 100) = 0.025
    assert noam_lr(100, 64, warmup=100, factor=2.0) == pytest.approx(0.025)
    assert noam_lr(400, 64, warmup=100, factor=2.0) == pytest.approx(0.0125)  # 1/sqrt(4) of the peak
    assert noam_lr(50, 64, warmup=100, factor=2.0) == pytest.approx(0.0125)   # half way up


def test_rises_then_falls():
    lrs = [noam_lr(s, 64, warmup=10) for s in range(1, 40)]
    assert max(lrs) == lrs[9]
    assert all(a < b for a, b in zip(lrs[:9], lrs[1:10]))
    assert all(a > b for a, b in zip(lrs[9:], lrs[10:]))


@pytest.mark.parametrize("step", [0, -1])
def test_step_counts_from_one(step):
    with pytest.raises(ValueError, match="from 1"):
        noam_lr(step, 512)
    with pytest.raises(ValueError, match="from 1"):
        linear_lr(step, 0.0, 1e-3)


def test_linear_values():
    assert linear_lr(1, 0.0, 1e-3, warmup=4) == pytest.approx(2.5e-4)    # a quarter of the way up
    assert linear_lr(4, 0.0, 1e-3, warmup=4) == pytest.approx(1e-3)      # the peak
    assert linear_lr(10, 0.25, 1e-3, warmup=4) == pytest.approx(7.5e-4)  # a quarter of the budget used
    assert linear_lr(10, 1.0, 1e-3, warmup=4) == 0.0                     # the budget's end


@given(st.integers(1, 10_000), st.integers(1, 500), st.floats(0, 1), st.floats(0, 1))
def test_linear_never_rises_once_warm_and_stays_within_the_peak(step, warmup, p, q):
    lo, hi = sorted((p, q))
    assert 0.0 <= linear_lr(step, hi, 2e-3, warmup) <= linear_lr(step, lo, 2e-3, warmup) <= 2e-3


def test_schedule_objects_check_their_settings():
    assert Schedule("noam", 100, 2.0, 64)(100) == pytest.approx(noam_lr(100, 64, 100, 2.0))
    assert Schedule("linear", 10, peak=1e-3)(20, 0.5) == pytest.approx(5e-4)
    assert Schedule("linear", 10, peak=1e-3)(20, 1.5) == 0.0  # past the budget: clamped, never negative
    for bad, match in ((dict(kind="cosine"), "kind"), (dict(kind="linear"), "peak"),
                       (dict(kind="linear", peak=-1.0), "positive"), (dict(warmup=0), "warmup"),
                       (dict(factor=float("nan")), "positive")):
        with pytest.raises(ValueError, match=match):
            Schedule(**bad)


def test_rates_must_be_positive_finite_numbers_and_progress_in_0_to_1():
    for bad in (0.0, -0.5, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="noam_lr: factor must be a positive number"):
            noam_lr(1, 512, factor=bad)
        with pytest.raises(ValueError, match="linear_lr: the peak must be a positive number"):
            linear_lr(1, 0.0, bad)
    for bad in (-0.5, -1e-9, 1.0 + 1e-9, 1.5):
        with pytest.raises(ValueError, match=r"linear_lr: progress must be in \[0, 1\]"):
            linear_lr(1, bad, 1e-3)
    assert linear_lr(1, 0.0, 1e-3) == 1e-3  # the default warmup is 1 step: the peak at once
    assert linear_lr(1, 1.0, 1e-3) == 0.0
    assert noam_lr(4000, 512) == 512 ** -0.5 * 4000 ** -0.5  # default warmup 4000, factor 1


def test_a_schedule_is_frozen_defaults_to_the_papers_and_calls_its_kind():
    from dataclasses import FrozenInstanceError, asdict
    noam = Schedule()
    assert asdict(noam) == dict(kind="noam", warmup=4000, factor=1.0, d_model=512, peak=None)
    with pytest.raises(FrozenInstanceError):
        noam.warmup = 10
    assert noam.needs_budget is False and Schedule("linear", warmup=2, peak=1e-3).needs_budget is True
    for step in (1, 10, 4000, 9000):
        assert noam(step) == noam(step, 0.7) == noam_lr(step, 512, 4000, 1.0)  # progress ignored
    linear = Schedule("linear", warmup=2, peak=1e-3)
    assert linear(4) == linear_lr(4, 0.0, 1e-3, 2) == 1e-3  # progress 0 unless told
    assert linear(1, 0.5) == linear_lr(1, 0.5, 1e-3, 2) and linear(3, 1.5) == 0.0  # progress past 1: the end


def test_describe_names_the_kind_and_its_figures():
    # the line train prints and stores with a run: a wrong kind here misleads whoever reads the log
    noam = Schedule("noam", warmup=100, factor=2.0, d_model=64).describe()
    assert noam == "the paper's schedule: warmup 100, factor 2 (peak 2.50e-02)"
    linear = Schedule("linear", warmup=50, peak=2e-3).describe()
    assert linear == "linear: warmup 50 to 2.00e-03, then down to 0 at the end of the budget"
