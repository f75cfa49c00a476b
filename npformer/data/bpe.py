"""Byte-pair encoding (BPE) with one vocabulary shared by source and target.

The paper (§5.1) encodes English and German "using byte-pair encoding, which has
a shared source-target vocabulary of about 37000 tokens" (Sennrich et al., 2016,
"Neural Machine Translation of Rare Words with Subword Units"). This module is a
from-scratch implementation of that algorithm for the English->Spanish corpus.

The idea
--------
Start with every word spelled as a sequence of single characters. Count, over
the whole corpus (each word weighted by how often it occurs), every pair of
adjacent symbols. Replace the most frequent pair, everywhere, by a new symbol
that is the concatenation of the two, and record that "merge". Repeat. After
``k`` merges the vocabulary holds the characters plus ``k`` new symbols:
frequent words have become single tokens, rare words are spelled from a few
frequent pieces (``▁transl`` ``ation``), and nothing is ever out of vocabulary.

To *encode* a new word we replay the learned merges in the order they were
learned (lowest rank first), which reproduces the training segmentation.

Pre-tokenisation and the word-start marker
------------------------------------------
Merges never cross word boundaries, so text is first cut into *pieces*:

1. :func:`normalize` the text: Unicode NFC (so "é" typed as ``e`` + combining
   acute and "é" typed as one code point become the same string), then split on
   any run of Unicode whitespace (``str.split()``) and re-join with single
   spaces. Leading and trailing whitespace disappears. This is the only
   information encoding loses: ``decode(encode(t)) == normalize(t)`` for every
   string ``t``.
2. Cut the normalised text into runs of word characters (``\\w+``: letters,
   digits, underscore, in any script) and single other characters
   (punctuation, symbols, emoji): ``"Hello, world!"`` -> ``Hello`` ``,``
   ``world`` ``!``.
3. A piece that was preceded by a space starts with the word-start marker
   ``▁`` (U+2581, as in SentencePiece). The marker is a symbol of its own that
   BPE can merge like any other, so ``▁the`` (the word "the") and ``the``
   (the end of "bathe", or "the" glued to punctuation as in "(the") are different
   tokens. The first word of a text is treated as preceded by a space.

Decoding just concatenates the token strings, turns each marker into a space,
and drops the one leading space, which restores the normalised text exactly:
``"Hello, world!"`` -> ``▁Hello`` ``,`` ``▁world`` ``!`` -> ``"Hello, world!"``.

Byte fallback
-------------
The base alphabet is every character seen while learning. A character outside
it (an emoji, a CJK ideograph, a rare accent) is not mapped to ``<unk>``,
which would lose it; instead it is written as its UTF-8 bytes using 256
reserved byte tokens ``<0x00>`` ... ``<0xFF>`` (ids 4..259), and decoding
reassembles the bytes into characters. Byte tokens are never merged. A literal
``▁`` in the input is always byte-encoded, so it can never be confused with
the marker. ``<unk>`` therefore never comes out of :meth:`BPETokenizer.encode`;
it keeps its id so that model code has a fixed place for it.

Vocabulary layout (ids)
-----------------------
======================  =====================================================
0, 1, 2, 3              ``<pad>``, ``<s>`` (BOS), ``</s>`` (EOS), ``<unk>``
4 .. 259                byte tokens ``<0x00>`` .. ``<0xFF>``
260                     the word-start marker ``▁``
261 ..                  the alphabet, sorted by code point
then                    one token per merge, in the order learned
======================  =====================================================

(If two different merges happen to spell the same string, e.g. ``ab``+``c``
and ``a``+``bc``, they share one id, so ``vocab_size`` can be slightly smaller
than ``261 + len(alphabet) + len(merges)``.)

Determinism
-----------
Learning is a pure function of the multiset of words: the most frequent pair
wins, and ties are broken by the pair's token strings in lexicographic
(code point) order. The order of the input texts does not matter, and there is
no randomness, so two runs always learn the same merges.

Speed
-----
A naive implementation recounts all pairs after every merge, which is far too
slow for thousands of merges. :meth:`BPETokenizer.learn` instead keeps

* ``pair_counts``: frequency of each adjacent pair over the corpus,
* ``where``: for each pair, a set of distinct words that contain it (a
  superset: a word is not removed when it loses the pair, it is just skipped
  when it turns out to have nothing to merge),
* a max-heap of ``(count, pair)`` entries with *lazy invalidation*: when a
  count goes up a new entry is pushed; when it goes down the old entry is left
  in place and is recognised as stale (its count disagrees with
  ``pair_counts``) when it reaches the top, at which point it is re-pushed with
  the true count.

Each merge then touches only the words that contain the merged pair.
"""
from __future__ import annotations

import heapq
import json
import os
import re
import unicodedata
from collections import Counter, defaultdict
from typing import Iterable, Sequence

from npformer.errors import UserError
from npformer.special_tokens import BOS, BOS_ID, EOS, EOS_ID, PAD, PAD_ID, SPECIAL_TOKENS, UNK, UNK_ID

__all__ = [
    "BPETokenizer", "normalize", "pretokenize",
    "PAD_ID", "BOS_ID", "EOS_ID", "UNK_ID",
    "PAD", "BOS", "EOS", "UNK", "MARKER",
]

BYTE_OFFSET = 4                     # id of <0x00>; <0xFF> is BYTE_OFFSET + 255
MARKER = "\u2581"                   # "▁", the word-start marker
MARKER_ID = BYTE_OFFSET + 256       # 260
FIRST_ALPHABET_ID = MARKER_ID + 1   # 261

FORMAT_NAME = "npformer-bpe"
FORMAT_VERSION = 1

# A piece is an optional leading space (the future marker) followed by either a
# run of word characters or one character that is neither a word character nor
# a space. On normalised text every character falls into exactly one match.
_PIECE_RE = re.compile(r" ?(?:\w+|[^\w ])")

_MAX_CACHE = 1 << 20  # encoded pieces kept in memory before the cache is reset


def normalize(text: str) -> str:
    """The canonical form of ``text`` that encoding preserves.

    ``" ".join(unicodedata.normalize("NFC", text).split())``: NFC first, then
    every run of Unicode whitespace becomes one space and leading/trailing
    whitespace is dropped. For every string ``t``,
    ``tok.decode(tok.encode(t)) == normalize(t)``.
    """
    return " ".join(unicodedata.normalize("NFC", text).split())


def pretokenize(text: str) -> list[str]:
    """Cut ``normalize(text)`` into the pieces BPE works on.

    Each returned piece starts with ``" "`` if it begins a whitespace-separated
    word (this space becomes the ``▁`` marker symbol); the first piece of the
    text counts as such. ``"".join(pieces)[1:] == normalize(text)`` when the
    text is not empty.

    >>> pretokenize("Hello,  world!")
    [' Hello', ',', ' world', '!']
    """
    norm = normalize(text)
    return _PIECE_RE.findall(" " + norm) if norm else []


def _byte_token(b: int) -> str:
    return f"<0x{b:02X}>"


def _is_alphabet_char(ch: str) -> bool:
    """Characters that may get their own alphabet token.

    Excluded: the marker itself (a literal ``▁`` must stay distinguishable from
    the marker), whitespace (never inside a piece after normalisation), and
    lone surrogates (cannot be written to a UTF-8 JSON file).
    """
    return (len(ch) == 1 and ch != MARKER and not ch.isspace()
            and unicodedata.category(ch) != "Cs")


class BPETokenizer:
    """A learned BPE vocabulary: encode text to ids and decode ids to text.

    Build one with :meth:`learn` (from raw text), :meth:`from_dict` or
    :meth:`load`. The constructor takes an alphabet and an ordered list of
    merges (pairs of token strings) and rebuilds everything else from them.
    """

    def __init__(self, alphabet: Iterable[str] = (),
                 merges: Iterable[tuple[str, str]] = ()):
        alphabet = list(alphabet)
        if len(set(alphabet)) != len(alphabet):
            raise ValueError("alphabet: characters must be unique")
        for ch in alphabet:
            if not isinstance(ch, str) or not _is_alphabet_char(ch):
                raise ValueError(f"alphabet: invalid entry {ch!r} (need one "
                                 "non-space character other than the marker)")
        self._alphabet = sorted(alphabet)
        self._vocab: list[str] = (list(SPECIAL_TOKENS)
                                  + [_byte_token(b) for b in range(256)]
                                  + [MARKER] + self._alphabet)
        self._token_to_id: dict[str, int] = {}
        for i, tok in enumerate(self._vocab):
            self._token_to_id.setdefault(tok, i)
        if len(self._token_to_id) != len(self._vocab):
            raise ValueError("alphabet: an entry clashes with a reserved token")
        self._char_to_id = {ch: self._token_to_id[ch] for ch in self._alphabet}
        self._merges: list[tuple[str, str]] = []
        # (left id, right id) -> (rank, merged id); ranks start at 0
        self._ranks: dict[tuple[int, int], tuple[int, int]] = {}
        for merge in merges:
            self._add_merge(merge)
        self._cache: dict[str, tuple[int, ...]] = {}

    def _add_merge(self, merge) -> int:
        """Append one merge rule; returns the id of the merged token."""
        if (not isinstance(merge, (list, tuple)) or len(merge) != 2
                or not all(isinstance(s, str) for s in merge)):
            raise ValueError(f"merges[{len(self._merges)}]: expected a pair of "
                             f"strings, got {merge!r}")
        left, right = merge
        ids = []
        for s in (left, right):
            i = self._token_to_id.get(s)
            if i is None or i < MARKER_ID:
                raise ValueError(
                    f"merges[{len(self._merges)}]: {s!r} is not a mergeable "
                    "token defined by the alphabet or an earlier merge")
            ids.append(i)
        key = (ids[0], ids[1])
        if key in self._ranks:
            raise ValueError(f"merges[{len(self._merges)}]: duplicate merge "
                             f"{merge!r}")
        merged = left + right
        new_id = self._token_to_id.get(merged)
        if new_id is not None and new_id < MARKER_ID:
            # cannot come out of learn(): pieces never contain "<pad>" etc.
            raise ValueError(f"merges[{len(self._merges)}]: {merge!r} would "
                             f"spell the reserved token {merged!r}")
        if new_id is None:
            new_id = len(self._vocab)
            self._vocab.append(merged)
            self._token_to_id[merged] = new_id
        self._ranks[key] = (len(self._merges), new_id)
        self._merges.append((left, right))
        return new_id

    # ------------------------------------------------------------------ learn
    @classmethod
    def learn(cls, texts: Iterable[str], num_merges: int = 8000,
              min_frequency: int = 2) -> "BPETokenizer":
        """Learn up to ``num_merges`` merges from ``texts`` (read once).

        Stops early when the most frequent pair occurs fewer than
        ``min_frequency`` times. Deterministic: ties between equally frequent
        pairs go to the lexicographically smallest ``(left, right)`` pair of
        token strings.
        """
        if num_merges < 0:
            raise ValueError("num_merges must be >= 0")
        if min_frequency < 1:
            raise ValueError("min_frequency must be >= 1")

        # 1. Word (piece) frequencies. Counter.update runs in C: fast.
        piece_counts: Counter[str] = Counter()
        for text in texts:
            piece_counts.update(pretokenize(text))

        # 2. Base alphabet: every character seen (minus the excluded ones).
        chars: set[str] = set()
        for piece in piece_counts:
            chars.update(piece)
        tok = cls(alphabet=sorted(ch for ch in chars if _is_alphabet_char(ch)))

        # 3. Every distinct piece as a list of symbol ids, with its frequency.
        words: list[list[int]] = []
        freqs: list[int] = []
        for piece, f in piece_counts.items():
            words.append(tok._initial_symbols(piece))
            freqs.append(f)
        del piece_counts

        # 4. Pair statistics over the whole corpus.
        pair_counts: dict[tuple[int, int], int] = defaultdict(int)
        where: dict[tuple[int, int], set[int]] = defaultdict(set)
        for wi, (w, f) in enumerate(zip(words, freqs)):
            for pair in _mergeable_pairs(w):
                pair_counts[pair] += f
                where[pair].add(wi)

        vocab = tok._vocab  # grows as merges are added

        def entry(pair, count):
            # heapq is a min-heap: negate the count; then the strings break ties
            return (-count, vocab[pair[0]], vocab[pair[1]], pair)

        heap = [entry(p, c) for p, c in pair_counts.items()]
        heapq.heapify(heap)

        # 5. Merge loop.
        while len(tok._merges) < num_merges and heap:
            neg, _, _, pair = heapq.heappop(heap)
            count = pair_counts.get(pair, 0)
            if count != -neg:           # stale entry (count has dropped)
                if count > 0:
                    heapq.heappush(heap, entry(pair, count))
                continue
            if count < min_frequency:   # the best pair is too rare: done
                break
            a, b = pair
            new_id = tok._add_merge((vocab[a], vocab[b]))
            del pair_counts[pair]
            delta: dict[tuple[int, int], int] = defaultdict(int)
            for wi in where.pop(pair):
                old = words[wi]
                if a not in old:          # stale index entry (cheap C check)
                    continue
                new = _merge_word(old, a, b, new_id)
                if len(new) == len(old):  # stale index entry: pair is gone
                    continue
                words[wi] = new
                f = freqs[wi]
                for p in _mergeable_pairs(old):
                    delta[p] -= f
                for p in _mergeable_pairs(new):
                    delta[p] += f
                    if new_id in p:       # a pair this merge may have created
                        where[p].add(wi)
            for p, d in delta.items():
                if d == 0 or p == pair:
                    continue
                c = pair_counts.get(p, 0) + d
                if c > 0:
                    pair_counts[p] = c
                    if d > 0:           # went up: the heap needs a fresh entry
                        heapq.heappush(heap, entry(p, c))
                else:
                    pair_counts.pop(p, None)
        return tok

    # ----------------------------------------------------------------- encode
    def _initial_symbols(self, piece: str) -> list[int]:
        """A piece as marker + character ids, with byte fallback."""
        out = []
        if piece.startswith(" "):
            out.append(MARKER_ID)
            piece = piece[1:]
        char_to_id = self._char_to_id
        for ch in piece:
            i = char_to_id.get(ch)
            if i is not None:
                out.append(i)
            else:
                out.extend(BYTE_OFFSET + b
                           for b in ch.encode("utf-8", "surrogatepass"))
        return out

    def _encode_piece(self, piece: str) -> tuple[int, ...]:
        """Apply the merges to one piece, lowest rank first (cached)."""
        ids = self._cache.get(piece)
        if ids is not None:
            return ids
        syms = self._initial_symbols(piece)
        ranks = self._ranks
        while len(syms) > 1:
            best = None
            for pair in zip(syms, syms[1:]):
                r = ranks.get(pair)
                if r is not None and (best is None or r[0] < best[0]):
                    best, best_pair = r, pair
            if best is None:
                break
            syms = _merge_word(syms, best_pair[0], best_pair[1], best[1])
        ids = tuple(syms)
        if len(self._cache) >= _MAX_CACHE:
            self._cache.clear()
        self._cache[piece] = ids
        return ids

    def encode(self, text: str, add_bos: bool = False,
               add_eos: bool = False) -> list[int]:
        """Token ids of ``normalize(text)``, optionally wrapped in BOS/EOS."""
        out = [BOS_ID] if add_bos else []
        cache = self._cache
        for piece in pretokenize(text):
            ids = cache.get(piece)
            out.extend(ids if ids is not None else self._encode_piece(piece))
        if add_eos:
            out.append(EOS_ID)
        return out

    def encode_batch(self, texts: Iterable[str], add_bos: bool = False,
                     add_eos: bool = False) -> list[list[int]]:
        """:meth:`encode` for each text."""
        return [self.encode(t, add_bos=add_bos, add_eos=add_eos) for t in texts]

    def tokenize(self, text: str) -> list[str]:
        """The token strings of ``encode(text)`` (handy for inspection)."""
        return [self._vocab[i] for i in self.encode(text)]

    # ----------------------------------------------------------------- decode
    def decode(self, ids: Iterable[int]) -> str:
        """Text of a sequence of ids.

        PAD, BOS and EOS are skipped (decoding does not stop at EOS; the caller
        trims). Markers become spaces and one leading space is dropped. Runs of
        byte tokens are decoded as UTF-8; invalid byte sequences (a model can
        produce them) become U+FFFD. UNK decodes as ``"<unk>"``.
        """
        vocab = self._vocab
        n = len(vocab)
        parts: list[str] = []
        pending = bytearray()
        for i in ids:
            i = int(i)
            if not 0 <= i < n:
                raise ValueError(f"token id {i} is outside the vocabulary "
                                 f"(size {n})")
            if BYTE_OFFSET <= i < MARKER_ID:
                pending.append(i - BYTE_OFFSET)
                continue
            if pending:
                parts.append(_decode_bytes(pending))
                pending.clear()
            if i in (PAD_ID, BOS_ID, EOS_ID):
                continue
            parts.append(vocab[i].replace(MARKER, " ") if i != UNK_ID else UNK)
        if pending:
            parts.append(_decode_bytes(pending))
        text = "".join(parts)
        return text[1:] if text.startswith(" ") else text

    # ------------------------------------------------------------ vocabulary
    @property
    def vocab_size(self) -> int:
        """Number of ids: the model's embedding and output layers use this."""
        return len(self._vocab)

    @property
    def merges(self) -> list[tuple[str, str]]:
        """The merge rules, in the order learned (rank 0 first)."""
        return list(self._merges)

    @property
    def alphabet(self) -> list[str]:
        """The base characters, sorted by code point."""
        return list(self._alphabet)

    def id_to_token(self, i: int) -> str:
        """The token string of id ``i`` (``▁`` marks a word start)."""
        i = int(i)
        if not 0 <= i < len(self._vocab):
            raise ValueError(f"token id {i} is outside the vocabulary "
                             f"(size {len(self._vocab)})")
        return self._vocab[i]

    def token_to_id(self, token: str) -> int:
        """The id of a token string, or ``UNK_ID`` if there is no such token."""
        return self._token_to_id.get(token, UNK_ID)

    def __repr__(self) -> str:
        return (f"BPETokenizer(vocab_size={self.vocab_size}, "
                f"merges={len(self._merges)}, alphabet={len(self._alphabet)})")

    # ---------------------------------------------------------- persistence
    def to_dict(self) -> dict:
        """A JSON-serialisable description that :meth:`from_dict` restores."""
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "special_tokens": list(SPECIAL_TOKENS),
            "marker": MARKER,
            "alphabet": list(self._alphabet),
            "merges": [[a, b] for a, b in self._merges],
            "vocab": list(self._vocab),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "BPETokenizer":
        """Rebuild a tokenizer from :meth:`to_dict` output.

        Raises ``ValueError`` naming the offending field if ``d`` is malformed
        or inconsistent (the stored ``vocab`` must equal the one rebuilt from
        ``alphabet`` and ``merges``).
        """
        if not isinstance(d, dict):
            raise ValueError(f"tokenizer description must be a dict, got "
                             f"{type(d).__name__}")
        for key in ("format", "version", "special_tokens", "marker",
                    "alphabet", "merges", "vocab"):
            if key not in d:
                raise ValueError(f"missing field {key!r}")
        if d["format"] != FORMAT_NAME:
            raise ValueError(f"field 'format': expected {FORMAT_NAME!r}, got "
                             f"{d['format']!r}")
        if d["version"] != FORMAT_VERSION:
            raise ValueError(f"field 'version': unsupported version "
                             f"{d['version']!r} (expected {FORMAT_VERSION})")
        if list(d["special_tokens"]) != list(SPECIAL_TOKENS):
            raise ValueError(f"field 'special_tokens': expected "
                             f"{list(SPECIAL_TOKENS)}, got {d['special_tokens']!r}")
        if d["marker"] != MARKER:
            raise ValueError(f"field 'marker': expected {MARKER!r}, got "
                             f"{d['marker']!r}")
        for key in ("alphabet", "merges", "vocab"):
            if not isinstance(d[key], list):
                raise ValueError(f"field {key!r}: expected a list, got "
                                 f"{type(d[key]).__name__}")
        try:  # the messages below name the field ("alphabet: ...", "merges[i]: ...")
            tok = cls(alphabet=d["alphabet"])
            for m in d["merges"]:
                tok._add_merge(m)
        except (ValueError, TypeError) as e:
            raise ValueError(f"malformed field {e}") from None
        if d["vocab"] != tok._vocab:
            raise ValueError("field 'vocab': does not match the vocabulary "
                             "rebuilt from 'alphabet' and 'merges'")
        return tok

    def save(self, path: str | os.PathLike) -> None:
        """Write :meth:`to_dict` as UTF-8 JSON."""
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, ensure_ascii=False)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "BPETokenizer":
        """Read a file written by :meth:`save`. A file that is missing, unreadable
        or not such a tokenizer raises ``UserError`` naming it (the reader of a
        user's file; :meth:`from_dict` itself raises ``ValueError``)."""
        expected = "expected a tokenizer written by BPETokenizer.save"
        try:
            with open(path, encoding="utf-8") as f:
                d = json.load(f)
        except OSError as e:
            raise UserError(f"{path}: cannot read the file ({e.strerror or e}); {expected}") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise UserError(f"{path}: not valid UTF-8 JSON ({e}); {expected}") from None
        try:
            return cls.from_dict(d)
        except (KeyError, TypeError, ValueError) as e:
            raise UserError(f"{path}: not a valid tokenizer ({e}); {expected}") from None


# ---------------------------------------------------------------- helpers
def _mergeable_pairs(word: Sequence[int]) -> list[tuple[int, int]]:
    """Adjacent pairs of a word, leaving out pairs with a byte token."""
    if not word or min(word) >= MARKER_ID:   # the usual case: no byte tokens
        return list(zip(word, word[1:]))
    return [(a, b) for a, b in zip(word, word[1:])
            if a >= MARKER_ID and b >= MARKER_ID]


def _merge_word(word: Sequence[int], a: int, b: int, new: int) -> list[int]:
    """Replace every non-overlapping ``a b`` (scanning left to right) by ``new``."""
    out = []
    i, n = 0, len(word)
    while i < n:
        if i + 1 < n and word[i] == a and word[i + 1] == b:
            out.append(new)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return out


def _decode_bytes(buf: bytes | bytearray) -> str:
    """UTF-8 bytes from byte tokens to text (lone surrogates pass through)."""
    try:
        return bytes(buf).decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return bytes(buf).decode("utf-8", "replace")
