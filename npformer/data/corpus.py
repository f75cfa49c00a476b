"""Parallel corpora: reading ``source<TAB>target`` files and fixed splits.

The bundled default corpus, ``bible_en_es.tsv.gz`` (next to this file), holds
31,013 verse-aligned English->Spanish pairs: the World English Bible and the
Reina-Valera 1909, both public domain.  ``CORPUS.md`` says where they come from
and how ``tools/extract_sword.py`` rebuilds the file.

A corpus file is UTF-8 text, plain or gzip-compressed (name ending ``.gz``),
one pair per line: ``source<TAB>target``.  Blank lines are skipped; anything
else that is not exactly two non-empty tab-separated fields is an error that
names the file and the line. A corpus is the user's file, so everything wrong
with it is an ``npformer.errors.UserError`` (one line and exit code 2 from the
``npformer`` command); ``split_corpus``'s checks of its arguments are
``ValueError``.

Splits are fixed by a seed: the same file, sizes and seed always give the same
train/dev/test sets, each kept in corpus order.

Only the standard library is used.
"""

from __future__ import annotations

import gzip
import os
import random
import zlib
from pathlib import Path

from npformer.errors import UserError

__all__ = ["DEFAULT_CORPUS", "HELDOUT_SHARE", "read_tsv", "split_corpus", "load_corpus"]

DEFAULT_CORPUS = Path(__file__).with_name("bible_en_es.tsv.gz")

#: The largest share of a corpus that :func:`load_corpus` holds out for each of
#: dev and test: the default 500 and 1,000 pairs would eat most of a small corpus
#: (half of 3,000 pairs), so training keeps at least 90% of any corpus.
HELDOUT_SHARE = 0.05

Pair = tuple[str, str]


def read_tsv(path) -> list[Pair]:
    """Read ``source<TAB>target`` pairs from a UTF-8 file (``.gz`` = gzip).

    Returns the pairs in file order, each field stripped of surrounding
    whitespace.  Blank lines are skipped.

    Raises:
        UserError: the file does not exist or is unreadable (a directory, no
            permission, a broken gzip stream), a line is not valid UTF-8, or a
            line does not hold exactly one tab with text on both sides; the
            message names the file and the 1-based line number.
    """
    path = Path(os.fspath(path))
    if not path.exists():
        raise UserError(f"corpus file not found: {path}; expected a UTF-8 'source<TAB>target' text file")
    if path.is_dir():
        raise UserError(f"{path}: is a directory, expected a 'source<TAB>target' text file")
    gz = path.name.endswith(".gz")
    pairs: list[Pair] = []
    lineno = 0
    try:
        with (gzip.open(path, "rb") if gz else open(path, "rb")) as f:
            for lineno, raw in enumerate(f, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise UserError(f"{path} line {lineno}: not valid UTF-8 "
                                    f"(byte {e.start + 1} of the line: "
                                    f"{raw[e.start:e.start + 1]!r})") from None
                if lineno == 1 and line.startswith("\ufeff"):
                    line = line[1:]                  # byte-order mark
                line = line.rstrip("\r\n")
                if not line.strip():
                    continue
                fields = line.split("\t")
                if len(fields) != 2:
                    raise UserError(
                        f"{path} line {lineno}: expected 'source<TAB>target' with exactly "
                        f"one tab, got {len(fields)} field{'s' if len(fields) != 1 else ''}")
                src, tgt = fields[0].strip(), fields[1].strip()
                if not src or not tgt:
                    side = "source" if not src else "target"
                    raise UserError(f"{path} line {lineno}: expected 'source<TAB>target' "
                                    f"with text on both sides, the {side} is empty")
                pairs.append((src, tgt))
    except PermissionError as e:
        raise UserError(f"{path}: cannot read the file ({e.strerror})") from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        where = f" after line {lineno}" if lineno else ""
        raise UserError(f"{path}: not a readable gzip file{where} ({e})") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, expected a text file") from None
    return pairs


def split_corpus(pairs, n_dev: int = 500, n_test: int = 1000,
                 seed: int = 1234) -> dict[str, list[Pair]]:
    """Split pairs into fixed ``"train"``, ``"dev"`` and ``"test"`` lists.

    The indices ``0..len(pairs)-1`` are shuffled with ``random.Random(seed)``;
    the first ``n_test`` shuffled indices are the test set, the next ``n_dev``
    the dev set, the rest the training set.  Each set keeps corpus order.
    The same input, sizes and seed always give the same split.

    Raises:
        ValueError: a size is negative or not an integer, or
            ``n_dev + n_test`` leaves no training pair.
    """
    pairs = list(pairs)
    for name, n in (("n_dev", n_dev), ("n_test", n_test)):
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {n!r}")
    if n_dev + n_test >= len(pairs):
        raise ValueError(f"n_dev + n_test = {n_dev} + {n_test} = {n_dev + n_test} must be "
                         f"smaller than the number of pairs ({len(pairs)}) to leave "
                         f"training data")
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    test = sorted(order[:n_test])
    dev = sorted(order[n_test:n_test + n_dev])
    train = sorted(order[n_test + n_dev:])
    return {"train": [pairs[i] for i in train],
            "dev": [pairs[i] for i in dev],
            "test": [pairs[i] for i in test]}


def load_corpus(path=None, n_dev: int = 500, n_test: int = 1000,
                seed: int = 1234) -> dict[str, list[Pair]]:
    """Read a corpus (the bundled default when ``path`` is None) and split it.

``n_dev`` and ``n_test`` are each capped at ``HELDOUT_SHARE`` (5%) of the
    pairs, but at least 1: a 1,000-pair corpus gets 50 dev and 50 test pairs
    with the default sizes, a 10,000-pair one 500 and 500, and from 20,000
    pairs on (the bundled corpus has 31,013) the defaults hold. Smaller sizes
    asked for are kept.

    Returns ``{"train": [...], "dev": [...], "test": [...]}`` (see
    :func:`split_corpus`). Raises ``UserError`` for a file :func:`read_tsv`
    refuses or one too small to split (fewer than 3 pairs with the defaults).
    """
    path = DEFAULT_CORPUS if path is None else path
    pairs = read_tsv(path)
    cap = max(1, int(len(pairs) * HELDOUT_SHARE))
    n_dev, n_test = min(n_dev, cap), min(n_test, cap)
    if n_dev >= 0 and n_test >= 0 and n_dev + n_test >= len(pairs):  # (negative sizes: split_corpus says so)
        raise UserError(f"{path}: {len(pairs)} sentence pair(s); expected at least {n_dev + n_test + 1}, "
                        f"to hold out {n_dev} for dev and {n_test} for test and train on the rest")
    return split_corpus(pairs, n_dev=n_dev, n_test=n_test, seed=seed)
