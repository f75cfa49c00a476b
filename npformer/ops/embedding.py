"""Token embedding lookup, scaled by sqrt(d_model). Paper §3.4.

Forward
    y[b, t, :] = scale * E[ids[b, t], :]     ids (B, T) int, E (V, d_model) -> y (B, T, d_model)
The model passes scale = sqrt(d_model).

Backward. y is a selection of rows of E, so row v of E receives the sum of the
upstream gradients of every position whose token is v:
    dE[v, :] = scale * sum_{(b,t): ids[b,t] = v} dy[b, t, :]
This is a scatter-add. ``dE[ids] += dy`` with fancy indexing is WRONG when a
token repeats (only one of the writes survives), so we use the backend's
scatter_add, which accumulates repeats. ids are integers: they get no gradient.
"""
from typing import NamedTuple

from npformer.backend import backend_of


class EmbeddingCache(NamedTuple):
    ids: object    # (B, T) token ids
    V: int         # vocabulary size (rows of E)
    scale: float


def embedding_forward(ids, E, scale=1.0):
    """``(y, cache)``. The ids' range is checked where they live on the host; on a
    device that check would read them back at every call, so callers check their
    host arrays before sending them (model/transformer.py, ``validate_ids``)."""
    V = E.shape[0]
    if ids.dtype.kind not in "iu":
        raise TypeError(f"embedding: ids must be integer token ids, got {ids.dtype}")
    on_host = not backend_of(ids, E).on_device
    if on_host and ids.size and (int(ids.min()) < 0 or int(ids.max()) >= V):  # -1 would pick row V-1
        raise ValueError(f"embedding: ids must be in [0, {V}) (V = E.shape[0]), got values in "
                         f"[{int(ids.min())}, {int(ids.max())}]")
    scale = float(scale)  # a NumPy float64 scalar would upcast float32 embeddings
    y = E[ids]  # (B, T, d_model)
    if scale != 1.0:
        y = y * scale
    return y, EmbeddingCache(ids, V, scale)


def embedding_backward(dy, cache: EmbeddingCache):
    """Returns ``dE`` of shape (V, d_model)."""
    ids, V, scale = cache
    be = backend_of(dy)
    d = dy.shape[-1]
    dE = be.xp.zeros((V, d), dtype=dy.dtype)  # (V, d_model)
    values = dy.reshape(-1, d)  # (B*T, d_model)
    if scale != 1.0:
        values = values * scale
    be.scatter_add(dE, ids.reshape(-1), values)
    return dE
