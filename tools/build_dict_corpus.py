#!/usr/bin/env python3
"""Build a corpus of dictionary phrases: German idioms, collocations and example sentences -> English.

A bilingual dictionary is a parallel corpus of its own kind. Its entries are
not running text but the phrases a dictionary explains: idioms ("zu jeder
Schandtat bereit sein" -> "to be game for anything"), collocations ("Mittel
für ein Projekt bereitstellen" -> "to finance a project") and short example
sentences, about 5 words a side, in every domain at once, where many pairs
must be translated by meaning rather than word by word. It checks a recipe
tuned on Bible verses against short, idiomatic, varied segments, and in the
other direction (German to English).

The data is the German-English dictionary of the Ding project (TU Chemnitz,
GPL-2+) as Debian's ``trans-de-en`` package ships it, ``/usr/share/trans/de-en``:
one entry a line, German and English sides split by " :: ", the sub-entries of
a side by " | " in the same order on both sides::

    Leidenschaft {f} | Leidenschaften {pl} | aus Leidenschaft :: passion | passions | of passion

Each aligned sub-entry is a candidate pair. Kept:

* sub-entries of lines whose two sides have the same number of them;
* no ";" on either side (synonyms listed side by side are not aligned with
  each other) and no "/" (alternatives such as "sheer/pure");
* the grammar and usage notes removed: ``{f}``, ``[ugs.]``, ``(...)``, ``<...>``,
  and abbreviations written ``/AHU/``;
* at least ``--min-words`` (default 3) German words, which drops the headwords
  and keeps the phrases;
* one pair per German phrase, the first in the file.

``--pairs`` (default 40,000) pairs are drawn with a fixed seed from the about
46,000 that qualify, so the size is near that of the other corpora.

The commands (npformer does not ship this corpus; build it where you like)::

    python tools/build_dict_corpus.py --download /tmp/dict/deb --out /tmp/dict/dict_de_en.tsv.gz
    npformer train --data /tmp/dict/dict_de_en.tsv.gz --minutes 10 --out runs/dict

``--download DIR`` runs ``apt-get download trans-de-en`` into DIR and unpacks it
with ``dpkg-deb -x``; ``--package`` takes the ``.deb`` or the ``de-en`` file
itself. Only the standard library is used, plus ``apt-get``/``dpkg-deb``.
"""
from __future__ import annotations

import argparse
import gzip
import random
import re
import subprocess
from pathlib import Path

PACKAGE = "trans-de-en"
FILE_IN_PACKAGE = "usr/share/trans/de-en"
# grammar ({f}), usage ([ugs.]), glosses ((...)), spelling variants (<...>) and abbreviations (/AHU/)
NOTE = re.compile(r"\{[^}]*\}|\[[^\]]*\]|<[^>]*>|\([^)]*\)|/[A-Z][A-Za-z.]*/")


def clean(text: str) -> str:
    """A sub-entry without its notes, whitespace collapsed."""
    return " ".join(NOTE.sub(" ", text).split())


def pairs_of(lines, min_words: int = 3) -> list[tuple[str, str]]:
    """(German, English) for every qualifying aligned sub-entry, in file order."""
    out, seen = [], set()
    for line in lines:
        if line.startswith("#") or " :: " not in line:
            continue
        german, english = line.rstrip("\n").split(" :: ", 1)
        des, ens = german.split(" | "), english.split(" | ")
        if len(des) != len(ens):
            continue
        for d, e in zip(des, ens):
            if ";" in d + e:
                continue
            d, e = clean(d), clean(e)
            if len(d.split()) < min_words or not e or "/" in d + e or d in seen:
                continue
            seen.add(d)
            out.append((d, e))
    return out


def unpack(deb: Path, into: Path) -> Path:
    subprocess.run(["dpkg-deb", "-x", str(deb), str(into)], check=True)
    return into / FILE_IN_PACKAGE


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--package", type=Path, help=f"the {PACKAGE} .deb, or its de-en file itself")
    src.add_argument("--download", type=Path, metavar="DIR", help=f"apt-get download {PACKAGE} into DIR first")
    ap.add_argument("--out", type=Path, required=True, help="the TSV to write (gzip when it ends in .gz)")
    ap.add_argument("--pairs", type=int, default=40000, help="pairs drawn (default 40000; 0 = all)")
    ap.add_argument("--min-words", type=int, default=3, help="fewest German words a phrase keeps (default 3)")
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args(argv)
    if args.pairs < 0:
        ap.error(f"--pairs: expected a count >= 0, got {args.pairs}")
    if args.download:
        args.download.mkdir(parents=True, exist_ok=True)
        subprocess.run(["apt-get", "download", PACKAGE], cwd=args.download, check=True)
        debs = sorted(args.download.glob(f"{PACKAGE}_*.deb"))
        if not debs:
            raise SystemExit(f"build_dict_corpus: apt-get download left no {PACKAGE} .deb in {args.download}")
        package = debs[-1]
    else:
        package = args.package
    if not package.exists():
        ap.error(f"--package: no such file {str(package)!r}")
    source = unpack(package, package.parent / "unpacked") if package.suffix == ".deb" else package
    with open(source, encoding="utf-8") as f:
        pairs = pairs_of(f, args.min_words)
    if args.pairs and args.pairs < len(pairs):
        pairs = random.Random(args.seed).sample(pairs, args.pairs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if args.out.suffix == ".gz" else open
    with opener(args.out, "wt", encoding="utf-8") as f:
        f.writelines(f"{d}\t{e}\n" for d, e in pairs)
    de_words = sum(len(d.split()) for d, _ in pairs) / max(1, len(pairs))
    en_words = sum(len(e.split()) for _, e in pairs) / max(1, len(pairs))
    print(f"build_dict_corpus: {len(pairs):,} phrase pairs ({de_words:.1f} German, {en_words:.1f} English "
          f"words on average) -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
