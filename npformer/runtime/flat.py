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

Two flat buffers meet element by element (Adam pairs ``params.flat`` with
``grads.flat``; an all-reduce sums one rank's buffer into another's), so they
must share one layout: the same keys in the same order with the same shapes.
A dict's order is whatever built it (the backward returns its gradients
output layer first), so a buffer that must meet another is built in that
other's layout, ``FlatDict(grads, layout=params)``, and the consumers check
``require_same_layout`` before they touch ``.flat``.
"""
from __future__ import annotations

from npformer.backend import backend_of


class FlatDict(dict):
    """A dict of arrays that are views of one 1-D buffer ``self.flat`` (a copy of the
    given arrays; all must share one dtype and device).

    The buffer is laid out in the order of ``layout`` (a dict with the same keys and
    shapes, e.g. the parameters), or in ``arrays``' own order when none is given."""

    def __init__(self, arrays: dict, layout: dict | None = None):
        if not arrays:
            raise ValueError("FlatDict: no arrays given")
        if layout is not None:
            validate_same_keys_and_shapes(layout, arrays, "FlatDict: the arrays")
            arrays = {k: arrays[k] for k in layout}
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

    def require_same_layout(self, other: dict, what: str) -> None:
        """Raise ``ValueError`` unless ``other`` is a FlatDict laid out as this one, so
        that ``self.flat[i]`` and ``other.flat[i]`` are the same entry of the same array."""
        if not isinstance(other, FlatDict):
            raise ValueError(f"{what}: expected a FlatDict laid out as the parameters, got a "
                             f"{type(other).__name__}; build it with FlatDict(arrays, layout=params)")
        validate_same_keys_and_shapes(self, other, what)
        if list(self) != list(other):
            i = next(i for i, (a, b) in enumerate(zip(self, other)) if a != b)
            raise ValueError(f"{what}: the flat buffer is laid out in another order than the parameters' "
                             f"(entry {i} is {list(other)[i]!r}, expected {list(self)[i]!r}), so their "
                             "elements would pair with other parameters' elements; build it with "
                             "FlatDict(arrays, layout=params)")

    def __reduce__(self):  # a copy (copy.deepcopy, pickle) is a plain dict of arrays
        return dict, (dict(self),)


def validate_same_keys_and_shapes(layout: dict, arrays: dict, what: str) -> None:
    """Raise ``ValueError`` unless ``arrays`` has exactly ``layout``'s keys, each with its shape."""
    if set(arrays) != set(layout):
        differ = sorted(set(arrays) ^ set(layout))
        raise ValueError(f"{what}: the keys differ from the layout's; differing keys: {differ[:5]}")
    for k, a in layout.items():
        if tuple(arrays[k].shape) != tuple(a.shape):
            raise ValueError(f"{what}: {k!r} has shape {tuple(arrays[k].shape)}, the layout has {tuple(a.shape)}")
