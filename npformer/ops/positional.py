"""Sinusoidal positional encoding. Paper §3.5.

    PE(pos, 2i)   = sin(pos / 10000^(2i / d_model))
    PE(pos, 2i+1) = cos(pos / 10000^(2i / d_model))

Forward: y = x + PE[offset : offset + T]      x (B, T, d_model), PE (max_len, d_model)
offset is 0 for a whole sequence; incremental decoding feeds the positions
offset .. offset + T - 1 of a longer sequence and so adds those rows of PE.
Backward: PE is a constant, so dx = dy.
"""
from typing import NamedTuple


class PositionalCache(NamedTuple):
    pass  # the backward is the identity


def sinusoidal_table(max_len, d_model, xp, dtype="float32"):
    """The (max_len, d_model) table PE, computed in float64 then cast once."""
    if d_model % 2:
        raise ValueError(f"positional encoding: d_model must be even, got {d_model}")
    pos = xp.arange(max_len, dtype="float64")[:, None]  # (max_len, 1)
    two_i = xp.arange(0, d_model, 2, dtype="float64")[None, :]  # (1, d_model/2)
    angle = pos / 10000.0 ** (two_i / d_model)  # (max_len, d_model/2)
    pe = xp.empty((max_len, d_model), dtype="float64")
    pe[:, 0::2] = xp.sin(angle)
    pe[:, 1::2] = xp.cos(angle)
    return pe.astype(dtype)


def positional_forward(x, table, offset=0):
    """x + PE[offset : offset + T]; ``offset`` is used by incremental decoding."""
    T = x.shape[-2]
    if offset + T > table.shape[0]:
        raise ValueError(f"positional encoding: sequence of length {offset + T} is longer than the "
                         f"table's {table.shape[0]} positions (max_len)")
    return x + table[offset:offset + T].astype(x.dtype, copy=False), PositionalCache()


def positional_backward(dy, cache: PositionalCache):
    """Returns ``dx`` (= dy)."""
    return dy
