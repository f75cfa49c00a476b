"""Many arrays as views of one contiguous buffer.

A model has a few hundred parameter arrays. An element-wise pass over all of
them (Adam, the gradient norm, summing gradients across devices) costs one
kernel launch, or one message, per array when they live apart; on a GPU the
launches, not the arithmetic, then set the time. Kept as views of one flat
buffer, the same pass is one kernel over ``flat``, and each array is still
there by its name, with its shape, for the code that reads it.

    FlatDict({"W": (3, 4) array, "b": (4,) array})
        .flat       (16,) buffer:  W's 12 entries, then b's 4
        ["W"]       flat[0:12].reshape(3, 4)   a view: writing it writes flat
        ["b"]       flat[12:16]
"""
from __future__ import annotations

from npformer.backend import backend_of


class FlatDict(dict):
    """A dict of arrays that are views of one 1-D buffer ``self.flat`` (a copy of the
    given arrays, in their order; all must share one dtype and device)."""

    def __init__(self, arrays: dict):
        if not arrays:
            raise ValueError("FlatDict: no arrays given")
        dtypes = {str(a.dtype) for a in arrays.values()}
        if len(dtypes) != 1:
            raise TypeError(f"FlatDict: arrays must share one dtype, got {sorted(dtypes)}")
        xp = backend_of(*arrays.values()).xp
        self.flat = xp.concatenate([a.reshape(-1) for a in arrays.values()])  # (sum of sizes,)
        views, start = {}, 0
        for k, a in arrays.items():
            views[k] = self.flat[start:start + a.size].reshape(a.shape)
            start += a.size
        super().__init__(views)

    @classmethod
    def zeros_like(cls, arrays: dict) -> "FlatDict":
        """A FlatDict with ``arrays``' keys, shapes and dtype, all zeros."""
        xp = backend_of(*arrays.values()).xp
        return cls({k: xp.zeros(a.shape, dtype=a.dtype) for k, a in arrays.items()})

    def __setitem__(self, k, value):
        """``d[k] = a`` writes ``a`` into k's view; the keys and the buffer stay as they are."""
        if k not in self:
            raise KeyError(f"FlatDict: no array {k!r}; the keys are fixed when it is built")
        view = dict.__getitem__(self, k)
        if value is not view:  # ``d[k] += g`` hands back the view itself, already updated
            view[...] = value

    def same_layout(self, other: dict) -> bool:
        """Whether ``other`` has the same keys, in the same order, with the same shapes."""
        return list(self) == list(other) and all(self[k].shape == other[k].shape for k in self)

    def __reduce__(self):  # a copy (copy.deepcopy, pickle) is a plain dict of arrays
        return dict, (dict(self),)
