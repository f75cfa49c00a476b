"""The §5.3 schedule at steps whose values are easy to work out by hand."""
import pytest

from npformer.train.schedule import noam_lr


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
