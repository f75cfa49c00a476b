"""Synthetic sequence tasks: learn to copy or to reverse a random sequence.

A first smoke test for a sequence-to-sequence model (the Annotated Transformer
starts with the copy task). Each example is

    x = (x_1, ..., x_L)     L ~ Uniform{min_len, ..., max_len},  x_i ~ Uniform{4, ..., V-1}
    copy:    y = x
    reverse: y = (x_L, ..., x_1)

Ids 0..3 are PAD, BOS, EOS and UNK as in ``npformer.special_tokens``, so symbols
start at 4. Batches have the same form as ``npformer.data.batching``:
src = x, tgt_in = BOS y, tgt_out = y EOS, PAD-padded int64 arrays.

Determinism and resuming: the batch of training step t is a pure function of
(seed, t), drawn from ``np.random.default_rng([seed, TRAIN_STREAM, t])``, so a
resumed run sees exactly the batches it would have seen. The held-out set
comes from another stream, ``[seed, HELDOUT_STREAM]``, independent of every
training batch (a short sequence may still occur in both by chance).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from npformer.data.batching import Batch, make_batches, pad_sequences
from npformer.special_tokens import UNK_ID
from npformer.model.params import params_backend

FIRST_SYMBOL = UNK_ID + 1  # 4: ids below are PAD, BOS, EOS, UNK
TRAIN_STREAM, HELDOUT_STREAM = 0, 1

TARGETS: dict[str, Callable[[list], list]] = {
    "copy": lambda x: list(x),
    "reverse": lambda x: list(reversed(x)),
}


@dataclass(frozen=True)
class SequenceTask:
    name: str          # "copy" or "reverse"
    vocab_size: int    # V, including the 4 special ids
    min_len: int = 4
    max_len: int = 12

    def __post_init__(self):
        if self.name not in TARGETS:
            raise ValueError(f"task: unknown task {self.name!r}; expected one of {', '.join(TARGETS)}")
        if self.vocab_size <= FIRST_SYMBOL:
            raise ValueError(f"task: vocab_size must exceed {FIRST_SYMBOL} (the special ids), "
                             f"got {self.vocab_size}")
        if not 1 <= self.min_len <= self.max_len:
            raise ValueError(f"task: need 1 <= min_len <= max_len, got {self.min_len}, {self.max_len}")

    def sample(self, rng: np.random.Generator) -> tuple[list, list]:
        """One pair (x, y) of id lists."""
        L = int(rng.integers(self.min_len, self.max_len + 1))
        x = rng.integers(FIRST_SYMBOL, self.vocab_size, size=L).tolist()
        return x, TARGETS[self.name](x)

    def batch(self, seed: int, step: int, batch_size: int | None = None,
              max_tokens: int | None = None) -> Batch:
        """The training batch of ``step``: ``batch_size`` pairs, or as many pairs
        as fit in ``max_tokens`` padded positions (B x longest, as in make_batches)."""
        if (batch_size is None) == (max_tokens is None):
            raise ValueError("task batch: give exactly one of batch_size and max_tokens")
        rng = np.random.default_rng([seed, TRAIN_STREAM, step])
        xs, ys, longest = [], [], 0
        while batch_size is None or len(xs) < batch_size:
            x, y = self.sample(rng)
            width = max(longest, len(y) + 1)  # tgt_in / tgt_out gain BOS / EOS
            if max_tokens is not None and xs and (len(xs) + 1) * width > max_tokens:
                break
            xs.append(x)
            ys.append(y)
            longest = width
        [batch] = make_batches(xs, ys, max_tokens=len(xs) * longest)  # one batch by construction
        return batch

    def batches(self, seed: int, batch_size: int | None = None,
                max_tokens: int | None = None) -> Callable[[int], Batch]:
        """``step -> Batch`` for the trainer."""
        return lambda step: self.batch(seed, step, batch_size, max_tokens)

    def heldout(self, seed: int, n: int) -> tuple[list, list]:
        """``n`` evaluation pairs ``(xs, ys)`` from a stream no training batch uses."""
        rng = np.random.default_rng([seed, HELDOUT_STREAM])
        pairs = [self.sample(rng) for _ in range(n)]
        return [x for x, _ in pairs], [y for _, y in pairs]


def evaluate_exact_match(params, cfg, heldout: tuple[Sequence, Sequence], decode_fn,
                         batch_size: int = 256) -> float:
    """Fraction of held-out pairs whose decoded output equals the target exactly.

    ``decode_fn(params, cfg, src, max_len=...) -> list[list[int]]`` (ids without
    BOS, EOS stripped), e.g. ``npformer.decode.greedy.greedy_decode``. It may
    generate one token more than the longest target, so a model that fails to
    emit EOS after the right tokens produces a longer sequence and counts as wrong.
    """
    xs, ys = heldout
    if len(xs) != len(ys) or not xs:
        raise ValueError(f"exact match: need equally many sources and targets, at least one; "
                         f"got {len(xs)} and {len(ys)}")
    be = params_backend(params)
    correct = 0
    for start in range(0, len(xs), batch_size):
        chunk_x, chunk_y = xs[start:start + batch_size], ys[start:start + batch_size]
        src = be.asarray(pad_sequences(chunk_x, cfg.pad_id))  # (B, S)
        longest = max(len(y) for y in chunk_y)
        hyps = decode_fn(params, cfg, src, max_len=longest + 1)
        correct += sum(list(h) == list(y) for h, y in zip(hyps, chunk_y))
    return correct / len(xs)
