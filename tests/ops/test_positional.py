"""Sinusoidal positional encoding (npformer/ops/positional.py): the paper's formula, dx = dy."""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from npformer import ops
from npformer.verify.gradcheck import check_gradients

HYP = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


def pe_reference(max_len, d_model):
    """PE(pos, 2i) = sin(pos / 10000^(2i/d_model)), PE(pos, 2i+1) = cos(same), one entry at a time."""
    pe = np.zeros((max_len, d_model))
    for pos in range(max_len):
        for i in range(d_model // 2):
            angle = pos / 10000 ** (2 * i / d_model)
            pe[pos, 2 * i] = math.sin(angle)
            pe[pos, 2 * i + 1] = math.cos(angle)
    return pe


@HYP
@given(max_len=st.integers(1, 60), half=st.integers(1, 16))
def test_sinusoidal_table_matches_the_formula(be, max_len, half):
    d_model = 2 * half
    pe = be.to_host(ops.sinusoidal_table(max_len, d_model, be.xp, "float64"))
    assert pe.shape == (max_len, d_model)
    np.testing.assert_allclose(pe, pe_reference(max_len, d_model), rtol=0, atol=1e-12)


def test_sinusoidal_table_dtype_and_first_row(be):
    pe = ops.sinusoidal_table(10, 8, be.xp, "float32")
    assert pe.dtype == np.float32
    np.testing.assert_array_equal(be.to_host(pe)[0], [0, 1] * 4)  # sin(0) = 0, cos(0) = 1
    assert np.abs(be.to_host(pe)).max() <= 1.0


def test_sinusoidal_table_rejects_odd_d_model(be):
    with pytest.raises(ValueError, match="must be even"):
        ops.sinusoidal_table(10, 7, be.xp)


@HYP
@given(B=st.integers(2, 3), T=st.integers(1, 5), half=st.integers(1, 4), seed=st.integers(0, 2**32 - 1))
def test_positional_gradients_match_finite_differences(be, B, T, half, seed):
    d_model = 2 * half
    x = be.asarray(np.random.default_rng(seed).standard_normal((B, T, d_model)))
    inputs = dict(x=x, table=ops.sinusoidal_table(8, d_model, be.xp, "float64"))
    result = check_gradients(ops.positional_forward, ops.positional_backward, inputs, "positional",
                             seed=seed, constants=("table",))
    assert result.passed, f"max_rel_error={result.max_rel_error:.2e} errors={result.errors} problems={result.problems}"


def test_positional_forward_adds_the_right_rows(be):
    table = ops.sinusoidal_table(10, 6, be.xp, "float64")
    x = np.random.default_rng(0).standard_normal((2, 4, 6))
    y, _ = ops.positional_forward(be.asarray(x), table)
    np.testing.assert_allclose(be.to_host(y), x + pe_reference(4, 6), atol=1e-12)
    y, _ = ops.positional_forward(be.asarray(x[:, :1]), table, offset=5)  # incremental decoding
    np.testing.assert_allclose(be.to_host(y), x[:, :1] + pe_reference(6, 6)[5], atol=1e-12)
    with pytest.raises(ValueError, match="longer than"):
        ops.positional_forward(be.asarray(x), table, offset=7)


def test_positional_table_serves_up_to_max_len_positions_and_no_more(be):
    # the last position of the table is usable (an off-by-one would refuse a max_len-token sentence),
    # and the error names the sequence's length and the table's max_len, not other numbers
    table = ops.sinusoidal_table(10, 6, be.xp, "float64")
    x = np.random.default_rng(1).standard_normal((2, 4, 6))
    y, _ = ops.positional_forward(be.asarray(x), table, offset=6)  # positions 6..9: the table's last rows
    np.testing.assert_allclose(be.to_host(y), x + pe_reference(10, 6)[6:], atol=1e-12)
    y, _ = ops.positional_forward(be.asarray(x[:, :1]), table, offset=9)  # the last position alone
    np.testing.assert_allclose(be.to_host(y), x[:, :1] + pe_reference(10, 6)[9], atol=1e-12)
    with pytest.raises(ValueError, match=r"sequence of length 11 is longer than the table's 10 positions"):
        ops.positional_forward(be.asarray(x), table, offset=7)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_positional_contract_keeps_dtype_and_shapes(be, op_contract, dtype):
    # a float64 table must not upcast float32 activations
    inputs = dict(x=be.asarray(np.random.default_rng(0).standard_normal((2, 3, 4)), dtype=dtype),
                  table=ops.sinusoidal_table(8, 4, be.xp, "float64"))
    y, grads = op_contract(ops.positional_forward, ops.positional_backward, inputs, constants=("table",))
    assert set(grads) == {"x"}
