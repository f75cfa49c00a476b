"""npformer/verify/model_cases.py: the fixed dropout draws the model gradient checks rely on."""
import numpy as np
import pytest

from npformer.verify.model_cases import ReplayedDraws


def test_replayed_draws_repeat_after_rewind_as_copies(be):
    draws = ReplayedDraws(be, seed=4)
    a, b = draws.random((2, 3), "float64"), draws.random((4,), "float64")
    a[...] = -1.0  # dropout overwrites its draw in place: the replay must not see that
    a2, b2 = draws.rewind().random((2, 3), "float64"), draws.random((4,), "float64")
    np.testing.assert_array_equal(be.to_host(b2), be.to_host(b))
    assert (be.to_host(a2) >= 0).all()
    np.testing.assert_array_equal(be.to_host(a2), be.to_host(be.rng(4).random((2, 3), dtype="float64")))


def test_replayed_draws_refuse_a_different_call_sequence(be):
    draws = ReplayedDraws(be, seed=0)
    draws.random((2, 3), "float32")
    with pytest.raises(ValueError, match=r"call 0 asks for float32 \(3, 2\)"):
        draws.rewind().random((3, 2), "float32")
