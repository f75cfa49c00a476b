"""Length-grouped batches sized by token count (paper §5.1).

"Sentence pairs were batched together by approximate sequence length. Each
training batch contained a set of sentence pairs containing approximately
25000 source tokens and 25000 target tokens."

Why group by length: every sentence in a batch is padded to the batch's
longest one, and the padding is computed on and then thrown away. Sorting the
pairs by length before cutting batches keeps similar lengths together, so
little is wasted. Why size by tokens rather than sentences: the cost (and the
memory) of a step grows with ``batch_size x length``, so a fixed token budget
gives short-sentence batches many rows and long-sentence batches few, with
steady memory use.

The arrays of one pair (source ``x``, target ``y``, both lists of token ids
without BOS/EOS) are

    src     = x                  length S = len(x)
    tgt_in  = <s> y              length T = len(y) + 1   (decoder input)
    tgt_out = y </s>             length T                (what it must predict)

so that at position ``t`` the decoder, having read ``tgt_in[:t+1]``, is trained
to output ``tgt_out[t]`` (teacher forcing, shifted right by one; §3.1).

A pair's *length* here is ``max(S, T)``, the width it forces on the padded
arrays. A batch of ``B`` pairs has padded size ``B x max length``, and
:func:`make_batches` keeps that ``<= max_tokens``. A pair that alone exceeds
``max_tokens`` still gets a batch of its own (it is never silently dropped);
use ``max_len`` (or :func:`filter_by_length`) to drop over-long pairs.

All of this is host-side bookkeeping, so it uses NumPy directly; the training
loop moves each batch to the compute device.
"""
from __future__ import annotations

import logging
import random
from typing import NamedTuple, Sequence

import numpy as np

from npformer.data.bpe import BOS_ID, EOS_ID, PAD_ID

__all__ = ["Batch", "make_batches", "filter_by_length", "pad_sequences"]

log = logging.getLogger(__name__)


class Batch(NamedTuple):
    """One training batch of ``B`` sentence pairs (int64 arrays, PAD-padded)."""
    src: np.ndarray       # (B, S) source ids
    tgt_in: np.ndarray    # (B, T) BOS + target ids   (decoder input)
    tgt_out: np.ndarray   # (B, T) target ids + EOS   (labels)
    n_tokens: int         # non-PAD entries of tgt_out: the loss normaliser
    index: np.ndarray     # (B,) positions of these pairs in the input lists


def pad_sequences(seqs: Sequence[Sequence[int]], pad_id: int = PAD_ID,
                  length: int | None = None) -> np.ndarray:
    """Stack sequences into an int64 array of shape ``(len(seqs), length)``.

    Each row is the sequence followed by ``pad_id`` up to ``length``
    (default: the longest sequence). Longer sequences are an error.
    """
    longest = max((len(s) for s in seqs), default=0)
    if length is None:
        length = longest
    elif longest > length:
        raise ValueError(f"a sequence of length {longest} does not fit in "
                         f"length {length}")
    out = np.full((len(seqs), length), pad_id, dtype=np.int64)
    for row, s in enumerate(seqs):
        out[row, :len(s)] = s
    return out


def _pair_lengths(src: Sequence[int], tgt: Sequence[int]) -> tuple[int, int]:
    """(S, T): widths of the pair's src and tgt_in/tgt_out rows."""
    return len(src), len(tgt) + 1


def _kept_indices(src_ids, tgt_ids, max_len: int) -> list[int]:
    return [i for i, (s, t) in enumerate(zip(src_ids, tgt_ids))
            if max(_pair_lengths(s, t)) <= max_len]


def filter_by_length(src_ids: Sequence[Sequence[int]],
                     tgt_ids: Sequence[Sequence[int]],
                     max_len: int) -> tuple[list, list, int]:
    """Drop pairs that do not fit in ``max_len`` positions.

    A pair is kept when ``len(src) <= max_len`` and ``len(tgt) + 1 <= max_len``
    (the ``+ 1`` is the BOS/EOS that the target arrays gain), i.e. when neither
    array row is longer than ``max_len``. Returns
    ``(kept_src, kept_tgt, n_dropped)``, order preserved.
    """
    _check_parallel(src_ids, tgt_ids)
    keep = _kept_indices(src_ids, tgt_ids, max_len)
    return ([src_ids[i] for i in keep], [tgt_ids[i] for i in keep],
            len(src_ids) - len(keep))


def make_batches(src_ids: Sequence[Sequence[int]],
                 tgt_ids: Sequence[Sequence[int]],
                 max_tokens: int,
                 shuffle_seed: int | None = None,
                 max_len: int | None = None) -> list[Batch]:
    """Cut parallel id lists into length-grouped batches.

    1. If ``max_len`` is given, pairs longer than it are dropped as in
       :func:`filter_by_length`; the number dropped is logged (INFO, logger
       ``npformer.data.batching``). ``Batch.index`` always refers to positions
       in the lists passed in here.
    2. Sort the pairs by length ``max(S, T)`` (then ``S``, ``T``, position, so
       the order is fully determined).
    3. Walk the sorted pairs, adding each to the current batch while
       ``n_pairs x longest <= max_tokens``; otherwise start a new batch.
    4. If ``shuffle_seed`` is given, shuffle the *order* of the batches (not
       their contents) with ``random.Random(shuffle_seed)``; otherwise they come
       shortest first. Pass e.g. ``seed + epoch`` for a new order each epoch.

    Every kept pair appears in exactly one batch.
    """
    _check_parallel(src_ids, tgt_ids)
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    if max_len is not None:
        order = _kept_indices(src_ids, tgt_ids, max_len)
        n_dropped = len(src_ids) - len(order)
        if n_dropped:
            log.info("make_batches: dropped %d of %d pairs longer than "
                     "max_len=%d", n_dropped, len(src_ids), max_len)
    else:
        order = list(range(len(src_ids)))

    lengths = {i: _pair_lengths(src_ids[i], tgt_ids[i]) for i in order}
    order.sort(key=lambda i: (max(lengths[i]), lengths[i][0], lengths[i][1], i))

    groups: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        n = max(lengths[i])   # >= longest, since the pairs are sorted
        if current and (len(current) + 1) * max(longest, n) > max_tokens:
            groups.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, n)
    if current:
        groups.append(current)

    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(groups)
    return [_build_batch(src_ids, tgt_ids, g) for g in groups]


def _build_batch(src_ids, tgt_ids, idx: list[int]) -> Batch:
    tgts = [list(tgt_ids[i]) for i in idx]
    tgt_out = [t + [EOS_ID] for t in tgts]
    return Batch(
        src=pad_sequences([src_ids[i] for i in idx]),
        tgt_in=pad_sequences([[BOS_ID] + t for t in tgts]),
        tgt_out=pad_sequences(tgt_out),
        n_tokens=sum(map(len, tgt_out)),
        index=np.asarray(idx, dtype=np.int64),
    )


def _check_parallel(src_ids, tgt_ids) -> None:
    if len(src_ids) != len(tgt_ids):
        raise ValueError(f"src_ids and tgt_ids differ in length: "
                         f"{len(src_ids)} vs {len(tgt_ids)}")
