"""Gradients in a few large contiguous buffers, for an all-reduce that sends a few
big messages instead of one per parameter (the base preset has 253).

The parameter dict's arrays are laid out, in the dict's order, one after the
other in flat buffers of about ``bucket_bytes`` each (an array larger than
that gets a buffer of its own): each bucket is a ``FlatDict`` (npformer/runtime/flat.py).
``views[k]`` is parameter k's gradient as a reshaped view into its buffer, so
that after ``fill`` the all-reduce of the buffers in place *is* the all-reduce
of every gradient, with no copy back; the optimizer then reads the views.

``fill(parts)`` writes the sum of the worker threads' gradient dicts into the
views: ((g_1 + g_2) + g_3) + ..., the order in which ``parallel.sum_into``
adds them, so ranks and threads give the same floats.
"""
from __future__ import annotations

from npformer.backend import backend_of
from npformer.runtime.flat import FlatDict

# PyTorch's DistributedDataParallel uses 25 MiB buckets: big enough that a ring
# all-reduce runs at bandwidth, small enough to keep a few of them in flight.
BUCKET_BYTES = 25 << 20


class Buckets:
    """Flat buffers holding the gradients of the parameters in ``template`` (a dict
    of arrays of one dtype, on one backend); ``views`` has the same keys."""

    def __init__(self, template: dict, bucket_bytes: int = BUCKET_BYTES):
        if not template:
            raise ValueError("buckets: no arrays given")
        be = backend_of(*template.values())
        dtypes = {a.dtype for a in template.values()}
        if len(dtypes) != 1:
            raise TypeError(f"buckets: the arrays must share one dtype, got {sorted(map(str, dtypes))}")
        dtype = dtypes.pop()
        self.shapes = {k: tuple(a.shape) for k, a in template.items()}
        groups, used = [], bucket_bytes  # start a new bucket at once
        for k, a in template.items():
            if used and used + a.size * dtype.itemsize > bucket_bytes:
                groups.append([])
                used = 0
            groups[-1].append(k)
            used += a.size * dtype.itemsize
        self.parts = [FlatDict.zeros_like({k: template[k] for k in keys}) for keys in groups]
        self.buffers = [part.flat for part in self.parts]
        self.views = {k: view for part in self.parts for k, view in part.items()}
        self.dtype, self.backend = dtype, be

    def __repr__(self) -> str:
        return f"Buckets({len(self.views)} arrays in {len(self.buffers)} buffers, {self.nbytes} bytes)"

    @property
    def nbytes(self) -> int:
        return sum(b.nbytes for b in self.buffers)

    def matches(self, arrays: dict) -> bool:
        """Whether ``arrays`` have exactly the keys (in this order), shapes, dtype and
        backend laid out here: every rank's buffers then hold the same entries at the
        same offsets, which is what summing them element by element needs."""
        return (list(arrays) == list(self.shapes) and backend_of(*arrays.values()) is self.backend
                and all(tuple(a.shape) == self.shapes[k] and a.dtype == self.dtype for k, a in arrays.items()))

    def fill(self, parts: list[dict], workers=None) -> dict:
        """``views[k] = parts[0][k] + parts[1][k] + ...`` for every key (zeros when
        ``parts`` is empty: a rank without sentences in this batch); returns ``views``."""
        for part in parts:
            if set(part) != set(self.views):
                differ = sorted(set(part) ^ set(self.views))
                raise ValueError(f"buckets: gradient keys differ from the layout's: {differ[:5]}")
        xp = self.backend.xp

        def fill_keys(keys):
            for k in keys:
                view = self.views[k]
                if not parts:
                    view[...] = 0
                elif len(parts) == 1:
                    view[...] = parts[0][k]
                else:
                    xp.add(parts[0][k], parts[1][k], out=view)
                    for part in parts[2:]:
                        view += part[k]
        if workers is None:
            fill_keys(list(self.views))
        else:
            workers.each_group(fill_keys, self.views)
        return self.views
