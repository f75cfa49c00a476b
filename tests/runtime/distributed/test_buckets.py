"""Gradient buckets: every array laid out once, as a view, in few buffers; the
threads' gradients summed in the order parallel.sum_into adds them."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from npformer.runtime.distributed.buckets import Buckets
from npformer.train.parallel import sum_into
from npformer.runtime.workers import Workers

shapes = st.lists(st.lists(st.integers(1, 7), min_size=0, max_size=3).map(tuple), min_size=1, max_size=12)


def arrays_of(shapes, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return {f"p{i}": rng.standard_normal(s).astype(dtype) for i, s in enumerate(shapes)}


@settings(max_examples=40, deadline=None)
@given(shapes=shapes, bucket_bytes=st.integers(4, 400))
def test_layout_holds_every_array_once_as_a_view_in_order(shapes, bucket_bytes):
    template = arrays_of(shapes)
    b = Buckets(template, bucket_bytes)
    assert list(b.views) == list(template)
    assert [k for part in b.parts for k in part] == list(template)
    for k, a in template.items():
        v = b.views[k]
        assert v.shape == a.shape and v.dtype == a.dtype and v.flags.c_contiguous
        assert any(np.shares_memory(v, buf) for buf in b.buffers)
    # Buffers are filled up to bucket_bytes; only a single big array exceeds it.
    for part, buf in zip(b.parts, b.buffers):
        assert buf is part.flat
        assert buf.nbytes <= bucket_bytes or len(part) == 1
        assert sum(v.size for v in part.values()) == buf.size
    assert b.nbytes == sum(a.nbytes for a in template.values())
    # Writing the buffers writes the views: nothing overlaps, nothing is left out.
    for i, buf in enumerate(b.buffers):
        buf[...] = np.arange(buf.size) + 1000 * i
    seen = np.concatenate([v.ravel() for v in b.views.values()])
    assert np.array_equal(np.sort(seen), np.sort(np.concatenate(b.buffers)))


@pytest.mark.parametrize("n_parts", [0, 1, 2, 3])
def test_fill_sums_the_parts_like_sum_into(n_parts):
    template = arrays_of([(3, 4), (5,), (2, 2, 2)])
    parts = [arrays_of([(3, 4), (5,), (2, 2, 2)], seed=s) for s in range(1, n_parts + 1)]
    b = Buckets(template, bucket_bytes=64)
    got = b.fill([dict(p) for p in parts], Workers(1))
    if n_parts == 0:
        assert all(not v.any() for v in got.values())
        return
    expected = sum_into({k: a.copy() for k, a in parts[0].items()}, parts[1:], Workers(1))
    for k in template:
        assert np.array_equal(got[k], expected[k]), k  # bit for bit: the same order of additions
        assert got[k] is b.views[k]


def test_buckets_are_reused_and_refuse_what_does_not_fit():
    template = arrays_of([(3, 4), (5,)])
    b = Buckets(template)
    assert len(b.buffers) == 1 and b.matches(template)
    assert not b.matches(arrays_of([(3, 4), (6,)]))
    assert not b.matches({k: a.astype(np.float64) for k, a in template.items()})
    with pytest.raises(ValueError, match="keys differ"):
        b.fill([{"p0": template["p0"]}])
    with pytest.raises(TypeError, match="one dtype"):
        Buckets({"a": np.zeros(2, np.float32), "b": np.zeros(2, np.float64)})
    with pytest.raises(ValueError, match="no arrays"):
        Buckets({})
