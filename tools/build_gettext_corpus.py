#!/usr/bin/env python3
"""Build a parallel corpus of software messages from gettext catalogs in Debian packages.

Free software translates its user interface with gettext: every package ships,
per language, ``.mo`` catalogs that map each English message (``msgid``) to its
translation (``msgstr``). Messages of office, graphics and system programs make
a corpus unlike the bundled Bible in every way that matters to a training
recipe: another domain (menus, dialogs, help lines), short segments (about 8
words a side, against the Bible's 27), and a size chosen by the packages.

The commands (npformer does not ship these corpora; build them where you like)::

    python tools/build_gettext_corpus.py --lang es --download /tmp/gettext/deb \\
        --out /tmp/gettext/software_en_es.tsv.gz
    python tools/build_gettext_corpus.py --lang de --download /tmp/gettext/deb \\
        --out /tmp/gettext/software_en_de.tsv.gz

``--download DIR`` runs ``apt-get download`` for ``--packages`` (by default
LibreOffice's translations for the language, GIMP, Inkscape and coreutils) into
DIR, the registry's ordinary client; ``--debs DIR`` reads ``.deb`` files
already there instead. Packages are unpacked with ``dpkg-deb -x``; catalogs are
read with the standard library's ``gettext``. The result loads with
``npformer train --data PATH``.

Cleaning (the file is ``source<TAB>target``, UTF-8, gzip, one message a line):

* the catalog header, untranslated messages (msgstr empty or equal to the
  msgid), plural forms other than the singular, and message contexts
  (``ctx\\x04msgid`` keeps the msgid) are dropped or stripped;
* keyboard accelerators are removed (``_File``, ``&File``, ``(_F)``), and
  whitespace collapsed;
* kept only: messages of at least ``--min-words`` words (default 3) on the
  English side, one line, without format placeholders or markup (``%s``,
  ``{0}``, ``<b>``, ``$VAR``, backslashes), which a translator copies rather
  than translates;
* one pair per English message (the first catalog read wins, in sorted path
  order, so a rebuild gives the same file).

Only the standard library is used, plus ``apt-get``/``dpkg-deb`` for
``--download``.
"""
from __future__ import annotations

import argparse
import gettext
import gzip
import re
import subprocess
import sys
import tempfile
from pathlib import Path

# Packages with large catalogs in many languages ({lang} is the language code).
DEFAULT_PACKAGES = ("libreoffice-l10n-{lang}", "gimp-data", "inkscape", "coreutils")
ACCELERATOR = re.compile(r"\(_[A-Za-z]\)|_(?=\w)|&(?=\w)")
PLACEHOLDER = re.compile(r"%|\{|\}|<[^>]*>|\$|\\|\t")


def clean(text: str) -> str:
    """A message without keyboard accelerators, its whitespace collapsed."""
    return " ".join(ACCELERATOR.sub("", text).split())


def catalog_pairs(mo_path: Path) -> list[tuple[str, str]]:
    """(msgid, msgstr) of one ``.mo`` catalog: the singular of each entry, context removed."""
    with open(mo_path, "rb") as f:
        catalog = gettext.GNUTranslations(f)._catalog
    pairs = []
    for key, target in catalog.items():
        if isinstance(key, tuple):  # plural forms: (msgid, n)
            if key[1] != 0:
                continue
            key = key[0]
        key = key.split("\x04", 1)[-1]  # "context\x04msgid"
        if key and target and target != key:
            pairs.append((key, target))
    return pairs


def keep(source: str, target: str, min_words: int) -> bool:
    return (len(source.split()) >= min_words and "\n" not in source + target
            and not PLACEHOLDER.search(source) and not PLACEHOLDER.search(target))


def corpus_from_catalogs(paths, min_words: int = 3) -> list[tuple[str, str]]:
    """The cleaned pairs of every catalog in ``paths`` (sorted), one per English message."""
    seen, out = set(), []
    for path in sorted(paths):
        for raw_src, raw_tgt in catalog_pairs(path):
            if not keep(raw_src, raw_tgt, min_words):
                continue
            src, tgt = clean(raw_src), clean(raw_tgt)
            if src and tgt and src not in seen:
                seen.add(src)
                out.append((src, tgt))
    return out


def unpack(debs: list[Path], into: Path) -> None:
    for deb in debs:
        subprocess.run(["dpkg-deb", "-x", str(deb), str(into / deb.stem)], check=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lang", required=True, help="target language code of the catalogs, e.g. es, de, fr")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--download", type=Path, metavar="DIR", help="apt-get download --packages into DIR first")
    src.add_argument("--debs", type=Path, metavar="DIR", help="read the .deb files in DIR")
    ap.add_argument("--packages", nargs="+", default=list(DEFAULT_PACKAGES),
                    help="Debian packages to read ({lang} becomes --lang); default: %(default)s")
    ap.add_argument("--min-words", type=int, default=3, help="fewest English words of a kept message (default 3)")
    ap.add_argument("--out", type=Path, required=True, help="the corpus to write (.tsv.gz)")
    args = ap.parse_args(argv)
    if not re.fullmatch(r"[a-z]{2,3}(_[A-Z]{2})?", args.lang):
        ap.error(f"--lang: expected a language code such as es or pt_BR, got {args.lang!r}")
    packages = [p.format(lang=args.lang) for p in args.packages]
    folder = args.download or args.debs
    if args.download:
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(["apt-get", "download", *packages], cwd=folder, check=True)
    debs = sorted(folder.glob("*.deb"))
    if not debs:
        ap.error(f"no .deb files in {folder}")
    with tempfile.TemporaryDirectory() as tmp:
        unpack(debs, Path(tmp))
        catalogs = [p for p in Path(tmp).rglob("*.mo") if p.parent.name == "LC_MESSAGES"
                    and p.parent.parent.name == args.lang]
        if not catalogs:
            ap.error(f"the packages in {folder} hold no catalogs for language {args.lang!r}")
        pairs = corpus_from_catalogs(catalogs, args.min_words)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(args.out, "wt", encoding="utf-8") as f:
        for s, t in pairs:
            f.write(f"{s}\t{t}\n")
    words = sum(len(s.split()) for s, _ in pairs) / max(len(pairs), 1)
    print(f"{len(pairs)} pairs from {len(catalogs)} catalogs of {len(debs)} packages "
          f"({words:.1f} English words a message) -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
