#!/usr/bin/env python3
"""Build the bundled English->Spanish corpus from two SWORD Bible modules.

The default corpus of npformer (``npformer/data/bible_en_es.tsv.gz``) is a
verse-aligned pairing of two public-domain Bibles:

* English: World English Bible (module ``engWEB2015eb``), Debian package
  ``sword-text-web``;
* Spanish: Reina-Valera 1909 (module ``spaRV1909eb``), Debian package
  ``sword-text-sparv``.

Getting the modules (no installation needed, any Debian/Ubuntu machine)::

    mkdir /tmp/sword && cd /tmp/sword
    apt-get update
    apt-get download sword-text-web sword-text-sparv
    dpkg -x sword-text-web_*.deb web
    dpkg -x sword-text-sparv_*.deb sparv

    python tools/extract_sword.py \\
        --web   /tmp/sword/web/usr/share/sword \\
        --sparv /tmp/sword/sparv/usr/share/sword \\
        --out   npformer/data/bible_en_es.tsv.gz

``--web``/``--sparv`` may name the SWORD root (the folder holding ``mods.d/``
and ``modules/``), the ``dpkg -x`` target folder, or the module data folder
itself (``.../modules/texts/ztext/<name>/``); the module's ``.conf`` is looked
up in the matching ``mods.d/``.

The work is done in ``sword/``: ``ztext.py`` reads a zText module's verse
entries, ``versification.py`` knows the chapter and verse layout, ``osis.py``
turns OSIS markup into plain text, and ``align.py`` pairs the two Bibles'
verses by content.

What the two modules need
-------------------------
* The WEB module is versified as NRSVA (NRSV + deuterocanon), the RV1909 one
  as KJV.  For the 66 protocanonical books NRSV differs from KJV only in two
  chapters: 3 John 1 has 15 verses (KJV 14) and Revelation 12 has 18 (KJV
  17).  The deuterocanonical books follow Malachi in the NRSVA Old Testament;
  we skip them.  WEB 3 John 1:15 is appended to 1:14 and WEB Rev 12:18 is
  prepended to 13:1, which is where KJV (and RV1909) carry that text.
* Text that is not part of a book (the WEB's Greek-Daniel additions appended
  to Daniel 12:13, the glossary appended to Revelation 22:21) sits after the
  book's closing ``<div type="book" eID=.../>`` marker inside the last verse:
  we cut a verse's text there.
* Psalm superscriptions: RV1909 has them as plain text at the start of verse
  1; the WEB marks them ``<title type="psalm" canonical="true">`` in verse 1.
  We keep that title in WEB verse 1 so both sides carry it (other titles, such
  as the Hebrew-letter headings of Psalm 119, are dropped).
* RV1909 prints the first word of every chapter in capitals ("EN el
  principio", "Y ACONTECIÓ"); we turn that word back into normal case
  (Capitalised at a sentence start or for a name, else lower case).
* RV1909 marks translator-supplied words ``<transChange>`` and often leaves
  no space around them ("ejército<transChange>se llamaba</transChange>
  <w>Sísara"); we put the spaces back (but keep enclitics: "díjo"+"le").
  Its Pauline epistles end with the traditional subscription ("Fué escrita
  de Corinto...") which is not verse text: removed.
* Although it says KJV, RV1909 follows the Hebrew verse division in a few
  chapters (Num 13 and 30, 1 Sam 24, 1 Chr 21, 2 Chr 33, Job 38-40, Hos 12,
  Jonah 2, 1 Kgs 22, ...), so pairing by reference alone would misalign
  ~250 verses.  The default ``--align checked`` aligns each book a second
  time by content (a word lexicon learnt from the data + verse lengths; see
  ``checked_alignment``) and keeps the pairs both methods accept, re-pairing
  the shifted chapters; ``--align reference`` pairs by reference only.

Only the standard library is used.
"""

from __future__ import annotations

import argparse
import gzip
import re
import sys
from pathlib import Path

from sword.align import checked_alignment
from sword.osis import EPISTLES, case_votes, fix_dropcap, osis_to_text, strip_subscription
from sword.versification import KJV_NT, KJV_OT, NRSV_TO_KJV, check_kjv_table, versification
from sword.ztext import locate_module, read_testament


def extract(root: Path, label: str, log) -> dict:
    """Return {(book, chapter, verse): text} in KJV numbering, plus conf."""
    data, conf = locate_module(root)
    v11n = conf.get("Versification", "KJV")
    enc = conf.get("Encoding", "Latin-1")
    codec = {"UTF-8": "utf-8", "LATIN-1": "latin-1"}.get(enc.upper())
    if codec is None:
        raise SystemExit(f"{label}: Encoding={enc} not supported")
    if conf.get("SourceType", "") not in ("OSIS", ""):
        log(f"warning: {label}: SourceType={conf['SourceType']}; stripping tags as OSIS")
    log(f"{label}: module {conf.get('_name')} version {conf.get('Version')}, "
        f"ModDrv={conf.get('ModDrv')}, CompressType={conf.get('CompressType')}, "
        f"SourceType={conf.get('SourceType')}, Encoding={enc}, Versification={v11n}")
    ot_books, nt_books, ot_trailing = versification(v11n)
    verses: dict = {}
    for testament, books in (("ot", ot_books), ("nt", nt_books)):
        entries = read_testament(data, testament, conf)
        n_needed = 2 + sum(1 + len(ch) + sum(ch) for _, ch in books)
        if len(entries) != n_needed and not (ot_trailing and testament == "ot"
                                             and len(entries) > n_needed):
            raise SystemExit(f"{label} {testament}: verse index has {len(entries)} entries, "
                             f"{v11n} versification needs {n_needed}")
        idx = 2
        for book, chapters in books:
            idx += 1                                  # book heading
            for c, nverses in enumerate(chapters, 1):
                heading = entries[idx].decode(codec)
                m = re.search(r'<chapter\b[^>]*\bsID="([^"]+)"', heading)
                if m and m.group(1) != f"{book}.{c}":
                    raise SystemExit(f"{label}: entry {idx} of {testament} marks chapter "
                                     f"{m.group(1)}, expected {book}.{c}")
                idx += 1                              # chapter heading
                for v in range(1, nverses + 1):
                    raw = entries[idx].decode(codec)  # strict: bad bytes raise
                    # Psalm superscriptions (Ps 119's "titles" are Hebrew letters)
                    text = osis_to_text(raw, keep_psalm_title=(book == "Ps" and v == 1
                                                                and c != 119))
                    if text:
                        verses[(book, c, v)] = text
                    idx += 1
        if len(entries) > idx:
            log(f"{label} {testament}: skipped {len(entries) - idx} entries after "
                f"{books[-1][0]} (books outside the 66-book canon)")
    if v11n in ("NRSV", "NRSVA"):
        for src, (dst, how) in NRSV_TO_KJV.items():
            extra = verses.pop(src, "")
            if extra:
                base = verses.get(dst, "")
                verses[dst] = f"{base} {extra}".strip() if how == "append" \
                    else f"{extra} {base}".strip()
    return {"verses": verses, "conf": conf}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--web", required=True, type=Path,
                    help="World English Bible module (SWORD root, dpkg -x folder or data folder)")
    ap.add_argument("--sparv", required=True, type=Path,
                    help="Reina-Valera 1909 module (same forms)")
    ap.add_argument("--out", required=True, type=Path, help="output .tsv.gz")
    ap.add_argument("--align", choices=("checked", "reference"), default="checked",
                    help="'reference': pair verses by KJV reference only; 'checked' "
                         "(default): also align by content and keep agreeing pairs")
    args = ap.parse_args(argv)

    def log(msg):
        print(msg, file=sys.stderr)

    check_kjv_table()
    en = extract(args.web, "web", log)["verses"]
    es = extract(args.sparv, "sparv", log)["verses"]
    votes = case_votes(es.values())
    for (book, c, v), text in list(es.items()):
        if v == 1:
            text = fix_dropcap(text, psalm=(book == "Ps"), votes=votes)
        if book in EPISTLES and c == len(dict(KJV_NT)[book]):
            text = strip_subscription(text)
        es[(book, c, v)] = text

    order = [(book, c, v) for book, chapters in KJV_OT + KJV_NT
             for c, nverses in enumerate(chapters, 1) for v in range(1, nverses + 1)]
    log(f"verses with English text: {len(en)}, with Spanish text: {len(es)}, "
        f"with both: {sum(1 for r in order if r in en and r in es)}")
    if args.align == "reference":
        pairs = [(r, r) for r in order if r in en and r in es]
    else:
        pairs = checked_alignment(en, es, order, log)

    lines = []
    for e_ref, s_ref in pairs:
        e, s = en[e_ref], es[s_ref]
        if "\t" in e + s or "\n" in e + s or "\r" in e + s:
            raise AssertionError(f"whitespace normalisation failed at {e_ref}")
        lines.append(f"{e}\t{s}\n")
    log(f"pairs written: {len(lines)}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = "".join(lines).encode("utf-8")
    with open(args.out, "wb") as raw:
        # mtime=0 and no file name in the header: identical input, identical bytes
        with gzip.GzipFile(filename="", fileobj=raw, mode="wb", compresslevel=9,
                           mtime=0) as gz:
            gz.write(payload)
    log(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
