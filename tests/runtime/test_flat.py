"""npformer/runtime/flat.py: arrays as views of one buffer."""
import numpy as np
import pytest

from npformer.runtime.flat import FlatDict


def test_views_of_one_buffer_in_order(be):
    a, b = be.asarray(np.arange(6.0).reshape(2, 3)), be.asarray(np.array([7.0, 8.0]))
    d = FlatDict({"a": a, "b": b})
    assert list(d) == ["a", "b"] and d["a"].shape == (2, 3) and d.flat.shape == (8,)
    np.testing.assert_array_equal(be.to_host(d.flat), [0, 1, 2, 3, 4, 5, 7, 8])
    d.flat *= 2  # one pass over the buffer changes every array
    np.testing.assert_array_equal(be.to_host(d["b"]), [14.0, 16.0])
    d["a"] += 1  # in place through a view
    assert be.to_host(d.flat)[0] == 1.0
    a[0, 0] = 99  # the buffer is a copy: the given arrays are not tied to it
    assert be.to_host(d.flat)[0] == 1.0


def test_assignment_writes_into_the_buffer_and_keys_are_fixed(be):
    d = FlatDict({"a": be.xp.zeros(3), "b": be.xp.zeros(2)})
    view = d["a"]
    d["a"] = be.xp.ones(3)
    assert d["a"] is view and be.to_host(d.flat).tolist() == [1, 1, 1, 0, 0]
    with pytest.raises(KeyError, match="keys are fixed"):
        d["c"] = be.xp.ones(1)


def test_refuses_mixed_dtypes_and_nothing():
    with pytest.raises(TypeError, match="one dtype"):
        FlatDict({"a": np.zeros(2, dtype="float32"), "b": np.zeros(2)})
    with pytest.raises(ValueError, match="no arrays"):
        FlatDict({})


def test_same_layout_and_copies_are_plain_dicts():
    import copy
    d = FlatDict({"a": np.zeros((2, 2)), "b": np.zeros(3)})
    assert d.same_layout({"a": np.ones((2, 2)), "b": np.ones(3)})
    assert not d.same_layout({"b": np.ones(3), "a": np.ones((2, 2))})
    c = copy.deepcopy(d)
    assert type(c) is dict and not np.shares_memory(c["a"], d.flat)


def test_a_layout_orders_the_buffer_and_is_checked(be):
    params = {"a": be.xp.zeros((2, 2)), "b": be.xp.zeros(3)}
    grads = {"b": be.asarray(np.array([4.0, 5.0, 6.0])), "a": be.asarray(np.arange(4.0).reshape(2, 2))}
    d = FlatDict(grads, layout=params)
    assert list(d) == ["a", "b"] and FlatDict(params).same_layout(d)
    np.testing.assert_array_equal(be.to_host(d.flat), [0, 1, 2, 3, 4, 5, 6])
    with pytest.raises(ValueError, match=r"'b' has shape \(2,\), the layout has \(3,\)"):
        FlatDict({"a": be.xp.zeros((2, 2)), "b": be.xp.zeros(2)}, layout=params)
    with pytest.raises(ValueError, match=r"differing keys: \['c'\]"):
        FlatDict({"a": be.xp.zeros((2, 2)), "b": be.xp.zeros(3), "c": be.xp.zeros(1)}, layout=params)
