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

The zText format (SWORD's compressed Bible-text driver)
-------------------------------------------------------
A zText module keeps one set of three files per testament (``ot.*``, ``nt.*``):

``.bzz``  the text, cut into blocks (``BlockType=BOOK``: roughly one block per
          book), each block compressed on its own (``CompressType=ZIP`` means a
          zlib stream; BZIP2 and XZ exist too).
``.bzs``  the block index: one 12-byte record per block, three little-endian
          uint32: offset of the compressed block in ``.bzz``, its compressed
          size, its uncompressed size.
``.bzv``  the verse index: one 10-byte record per *entry*: uint32 block number,
          uint32 byte offset inside the decompressed block, uint16 byte size
          (``zText4`` modules use a uint32 size, 12-byte records).

Entries are laid out by the module's versification (``Versification=`` in the
``.conf``; KJV when absent).  For each testament: entry 0 is the module
heading, entry 1 the testament heading, then for every book one book-heading
entry followed, for every chapter, by one chapter-heading entry and then one
entry per verse.  So the KJV Old Testament index holds
2 + 39 + 929 + 23145 = 24115 entries and the New Testament one
2 + 27 + 260 + 7957 = 8246.  Heading entries hold introductions, chapter
markers and the like; we only keep verse entries.

Each verse is OSIS XML markup (``SourceType=OSIS``): Strong's-tagged ``<w>``
words, ``<note>`` footnotes and cross references, ``<title>`` headings,
poetry-line and paragraph milestones.  We keep the running text: notes,
headings and speaker labels are dropped with their content, all other tags are
removed, entities unescaped and whitespace normalised.  The text encoding comes
from the ``.conf`` (``Encoding=UTF-8``; SWORD's default is Latin-1).

What the two modules needed (found when this corpus was built)
--------------------------------------------------------------
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
import bz2
import collections
import gzip
import html
import lzma
import math
import re
import struct
import sys
import zlib
from pathlib import Path

# ---------------------------------------------------------------------------
# KJV versification: (OSIS book id, verses in each chapter), canonical order.
# ---------------------------------------------------------------------------
KJV_OT = [
    ("Gen", [31, 25, 24, 26, 32, 22, 24, 22, 29, 32, 32, 20, 18, 24, 21, 16, 27, 33, 38, 18,
             34, 24, 20, 67, 34, 35, 46, 22, 35, 43, 55, 32, 20, 31, 29, 43, 36, 30, 23, 23,
             57, 38, 34, 34, 28, 34, 31, 22, 33, 26]),
    ("Exod", [22, 25, 22, 31, 23, 30, 25, 32, 35, 29, 10, 51, 22, 31, 27, 36, 16, 27, 25, 26,
              36, 31, 33, 18, 40, 37, 21, 43, 46, 38, 18, 35, 23, 35, 35, 38, 29, 31, 43, 38]),
    ("Lev", [17, 16, 17, 35, 19, 30, 38, 36, 24, 20, 47, 8, 59, 57, 33, 34, 16, 30, 37, 27,
             24, 33, 44, 23, 55, 46, 34]),
    ("Num", [54, 34, 51, 49, 31, 27, 89, 26, 23, 36, 35, 16, 33, 45, 41, 50, 13, 32, 22, 29,
             35, 41, 30, 25, 18, 65, 23, 31, 40, 16, 54, 42, 56, 29, 34, 13]),
    ("Deut", [46, 37, 29, 49, 33, 25, 26, 20, 29, 22, 32, 32, 18, 29, 23, 22, 20, 22, 21, 20,
              23, 30, 25, 22, 19, 19, 26, 68, 29, 20, 30, 52, 29, 12]),
    ("Josh", [18, 24, 17, 24, 15, 27, 26, 35, 27, 43, 23, 24, 33, 15, 63, 10, 18, 28, 51, 9,
              45, 34, 16, 33]),
    ("Judg", [36, 23, 31, 24, 31, 40, 25, 35, 57, 18, 40, 15, 25, 20, 20, 31, 13, 31, 30, 48,
              25]),
    ("Ruth", [22, 23, 18, 22]),
    ("1Sam", [28, 36, 21, 22, 12, 21, 17, 22, 27, 27, 15, 25, 23, 52, 35, 23, 58, 30, 24, 42,
              15, 23, 29, 22, 44, 25, 12, 25, 11, 31, 13]),
    ("2Sam", [27, 32, 39, 12, 25, 23, 29, 18, 13, 19, 27, 31, 39, 33, 37, 23, 29, 33, 43, 26,
              22, 51, 39, 25]),
    ("1Kgs", [53, 46, 28, 34, 18, 38, 51, 66, 28, 29, 43, 33, 34, 31, 34, 34, 24, 46, 21, 43,
              29, 53]),
    ("2Kgs", [18, 25, 27, 44, 27, 33, 20, 29, 37, 36, 21, 21, 25, 29, 38, 20, 41, 37, 37, 21,
              26, 20, 37, 20, 30]),
    ("1Chr", [54, 55, 24, 43, 26, 81, 40, 40, 44, 14, 47, 40, 14, 17, 29, 43, 27, 17, 19, 8,
              30, 19, 32, 31, 31, 32, 34, 21, 30]),
    ("2Chr", [17, 18, 17, 22, 14, 42, 22, 18, 31, 19, 23, 16, 22, 15, 19, 14, 19, 34, 11, 37,
              20, 12, 21, 27, 28, 23, 9, 27, 36, 27, 21, 33, 25, 33, 27, 23]),
    ("Ezra", [11, 70, 13, 24, 17, 22, 28, 36, 15, 44]),
    ("Neh", [11, 20, 32, 23, 19, 19, 73, 18, 38, 39, 36, 47, 31]),
    ("Esth", [22, 23, 15, 17, 14, 14, 10, 17, 32, 3]),
    ("Job", [22, 13, 26, 21, 27, 30, 21, 22, 35, 22, 20, 25, 28, 22, 35, 22, 16, 21, 29, 29,
             34, 30, 17, 25, 6, 14, 23, 28, 25, 31, 40, 22, 33, 37, 16, 33, 24, 41, 30, 24,
             34, 17]),
    ("Ps", [6, 12, 8, 8, 12, 10, 17, 9, 20, 18, 7, 8, 6, 7, 5, 11, 15, 50, 14, 9,
            13, 31, 6, 10, 22, 12, 14, 9, 11, 12, 24, 11, 22, 22, 28, 12, 40, 22, 13, 17,
            13, 11, 5, 26, 17, 11, 9, 14, 20, 23, 19, 9, 6, 7, 23, 13, 11, 11, 17, 12,
            8, 12, 11, 10, 13, 20, 7, 35, 36, 5, 24, 20, 28, 23, 10, 12, 20, 72, 13, 19,
            16, 8, 18, 12, 13, 17, 7, 18, 52, 17, 16, 15, 5, 23, 11, 13, 12, 9, 9, 5,
            8, 28, 22, 35, 45, 48, 43, 13, 31, 7, 10, 10, 9, 8, 18, 19, 2, 29, 176, 7,
            8, 9, 4, 8, 5, 6, 5, 6, 8, 8, 3, 18, 3, 3, 21, 26, 9, 8, 24, 13,
            10, 7, 12, 15, 21, 10, 20, 14, 9, 6]),
    ("Prov", [33, 22, 35, 27, 23, 35, 27, 36, 18, 32, 31, 28, 25, 35, 33, 33, 28, 24, 29, 30,
              31, 29, 35, 34, 28, 28, 27, 28, 27, 33, 31]),
    ("Eccl", [18, 26, 22, 16, 20, 12, 29, 17, 18, 20, 10, 14]),
    ("Song", [17, 17, 11, 16, 16, 13, 13, 14]),
    ("Isa", [31, 22, 26, 6, 30, 13, 25, 22, 21, 34, 16, 6, 22, 32, 9, 14, 14, 7, 25, 6,
             17, 25, 18, 23, 12, 21, 13, 29, 24, 33, 9, 20, 24, 17, 10, 22, 38, 22, 8, 31,
             29, 25, 28, 28, 25, 13, 15, 22, 26, 11, 23, 15, 12, 17, 13, 12, 21, 14, 21, 22,
             11, 12, 19, 12, 25, 24]),
    ("Jer", [19, 37, 25, 31, 31, 30, 34, 22, 26, 25, 23, 17, 27, 22, 21, 21, 27, 23, 15, 18,
             14, 30, 40, 10, 38, 24, 22, 17, 32, 24, 40, 44, 26, 22, 19, 32, 21, 28, 18, 16,
             18, 22, 13, 30, 5, 28, 7, 47, 39, 46, 64, 34]),
    ("Lam", [22, 22, 66, 22, 22]),
    ("Ezek", [28, 10, 27, 17, 17, 14, 27, 18, 11, 22, 25, 28, 23, 23, 8, 63, 24, 32, 14, 49,
              32, 31, 49, 27, 17, 21, 36, 26, 21, 26, 18, 32, 33, 31, 15, 38, 28, 23, 29, 49,
              26, 20, 27, 31, 25, 24, 23, 35]),
    ("Dan", [21, 49, 30, 37, 31, 28, 28, 27, 27, 21, 45, 13]),
    ("Hos", [11, 23, 5, 19, 15, 11, 16, 14, 17, 15, 12, 14, 16, 9]),
    ("Joel", [20, 32, 21]),
    ("Amos", [15, 16, 15, 13, 27, 14, 17, 14, 15]),
    ("Obad", [21]),
    ("Jonah", [17, 10, 10, 11]),
    ("Mic", [16, 13, 12, 13, 15, 16, 20]),
    ("Nah", [15, 13, 19]),
    ("Hab", [17, 20, 19]),
    ("Zeph", [18, 15, 20]),
    ("Hag", [15, 23]),
    ("Zech", [21, 13, 10, 14, 11, 15, 14, 23, 17, 12, 17, 14, 9, 21]),
    ("Mal", [14, 17, 18, 6]),
]

KJV_NT = [
    ("Matt", [25, 23, 17, 25, 48, 34, 29, 34, 38, 42, 30, 50, 58, 36, 39, 28, 27, 35, 30, 34,
              46, 46, 39, 51, 46, 75, 66, 20]),
    ("Mark", [45, 28, 35, 41, 43, 56, 37, 38, 50, 52, 33, 44, 37, 72, 47, 20]),
    ("Luke", [80, 52, 38, 44, 39, 49, 50, 56, 62, 42, 54, 59, 35, 35, 32, 31, 37, 43, 48, 47,
              38, 71, 56, 53]),
    ("John", [51, 25, 36, 54, 47, 71, 53, 59, 41, 42, 57, 50, 38, 31, 27, 33, 26, 40, 42, 31,
              25]),
    ("Acts", [26, 47, 26, 37, 42, 15, 60, 40, 43, 48, 30, 25, 52, 28, 41, 40, 34, 28, 41, 38,
              40, 30, 35, 27, 27, 32, 44, 31]),
    ("Rom", [32, 29, 31, 25, 21, 23, 25, 39, 33, 21, 36, 21, 14, 23, 33, 27]),
    ("1Cor", [31, 16, 23, 21, 13, 20, 40, 13, 27, 33, 34, 31, 13, 40, 58, 24]),
    ("2Cor", [24, 17, 18, 18, 21, 18, 16, 24, 15, 18, 33, 21, 14]),
    ("Gal", [24, 21, 29, 31, 26, 18]),
    ("Eph", [23, 22, 21, 32, 33, 24]),
    ("Phil", [30, 30, 21, 23]),
    ("Col", [29, 23, 25, 18]),
    ("1Thess", [10, 20, 13, 18, 28]),
    ("2Thess", [12, 17, 18]),
    ("1Tim", [20, 15, 16, 16, 25, 21]),
    ("2Tim", [18, 26, 17, 22]),
    ("Titus", [16, 15, 15]),
    ("Phlm", [25]),
    ("Heb", [14, 18, 19, 16, 14, 20, 28, 13, 28, 39, 40, 29, 25]),
    ("Jas", [27, 26, 18, 17, 20]),
    ("1Pet", [25, 25, 22, 19, 14]),
    ("2Pet", [21, 22, 18]),
    ("1John", [10, 29, 24, 21, 21]),
    ("2John", [13]),
    ("3John", [14]),
    ("Jude", [25]),
    ("Rev", [20, 29, 22, 11, 14, 17, 17, 13, 21, 11, 19, 17, 18, 20, 8, 21, 18, 24, 21, 15,
             27, 21]),
]

KJV_OT_VERSES = 23145
KJV_NT_VERSES = 7957

# NRSV(A) differs from KJV, in the 66 protocanonical books, only here:
NRSV_CHANGES = {("3John", 1): 15, ("Rev", 12): 18}
# ... and this is how the extra NRSV verses map onto KJV verses:
# (NRSV ref) -> (KJV ref it belongs to, "append" | "prepend")
NRSV_TO_KJV = {
    ("3John", 1, 15): (("3John", 1, 14), "append"),
    ("Rev", 12, 18): (("Rev", 13, 1), "prepend"),
}


def _check_kjv_table() -> None:
    ot = sum(sum(v) for _, v in KJV_OT)
    nt = sum(sum(v) for _, v in KJV_NT)
    if (len(KJV_OT), len(KJV_NT)) != (39, 27):
        raise AssertionError("KJV table must hold 39 + 27 books")
    if sum(len(v) for _, v in KJV_OT + KJV_NT) != 1189:
        raise AssertionError("KJV table must hold 1189 chapters")
    if (ot, nt) != (KJV_OT_VERSES, KJV_NT_VERSES):
        raise AssertionError(f"KJV table sums to {ot} + {nt} verses, expected "
                             f"{KJV_OT_VERSES} + {KJV_NT_VERSES}")


def versification(name: str):
    """Return (ot_books, nt_books, ot_trailing_ok) for a SWORD v11n name.

    ``ot_trailing_ok``: the OT index may hold further (deuterocanonical) books
    after Malachi, which we skip.
    """
    if name == "KJV":
        return KJV_OT, KJV_NT, False
    if name in ("NRSV", "NRSVA"):
        def patch(books):
            return [(b, [NRSV_CHANGES.get((b, c), n) for c, n in enumerate(ch, 1)])
                    for b, ch in books]
        return patch(KJV_OT), patch(KJV_NT), name == "NRSVA"
    raise SystemExit(f"unsupported versification {name!r} (supported: KJV, NRSV, NRSVA)")


# ---------------------------------------------------------------------------
# Module reading
# ---------------------------------------------------------------------------
def read_conf(path: Path) -> dict:
    """Parse a SWORD .conf (only the first value of repeated keys is kept)."""
    conf = {}
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            conf.setdefault("_name", line[1:-1])
            continue
        if "=" in line:
            key, value = line.split("=", 1)
            conf.setdefault(key.strip(), value.strip())
    return conf


def locate_module(root: Path) -> tuple[Path, dict]:
    """Find (data folder, conf dict) from a SWORD root, dpkg -x folder or data folder."""
    root = root.resolve()
    candidates = [root, root / "usr" / "share" / "sword"]
    if (root / "ot.bzv").exists() or (root / "nt.bzv").exists():
        # A module data folder: .../modules/texts/ztext/<name>/
        sword_root = root.parents[3] if len(root.parents) > 3 else root
        confs = sorted((sword_root / "mods.d").glob("*.conf"))
        for c in confs:
            conf = read_conf(c)
            if (sword_root / conf.get("DataPath", "")).resolve() == root:
                return root, conf
        raise SystemExit(f"no .conf in {sword_root / 'mods.d'} points to {root}")
    for base in candidates:
        confs = sorted((base / "mods.d").glob("*.conf"))
        if not confs:
            continue
        if len(confs) > 1:
            raise SystemExit(f"{base / 'mods.d'} holds several modules; "
                             "pass the module data folder instead")
        conf = read_conf(confs[0])
        data = (base / conf["DataPath"]).resolve()
        return data, conf
    raise SystemExit(f"no SWORD module found under {root}")


DECOMPRESS = {"ZIP": zlib.decompress, "BZIP2": bz2.decompress, "XZ": lzma.decompress}


def read_testament(data: Path, testament: str, conf: dict) -> list[bytes]:
    """Return the raw bytes of every verse-index entry of one testament."""
    drv = conf.get("ModDrv", "zText")
    if drv not in ("zText", "zText4"):
        raise SystemExit(f"ModDrv={drv} is not a zText module")
    ctype = conf.get("CompressType", "LZSS").upper()
    if ctype not in DECOMPRESS:
        raise SystemExit(f"CompressType={ctype} not supported (ZIP, BZIP2, XZ)")
    decompress = DECOMPRESS[ctype]
    bzs = (data / f"{testament}.bzs").read_bytes()
    bzv = (data / f"{testament}.bzv").read_bytes()
    bzz = (data / f"{testament}.bzz").read_bytes()
    if len(bzs) % 12:
        raise SystemExit(f"{testament}.bzs: size {len(bzs)} is not a multiple of 12")
    blocks = []
    for off, size, usize in struct.iter_unpack("<III", bzs):
        if off + size > len(bzz):
            raise SystemExit(f"{testament}.bzs: block runs past the end of .bzz")
        block = decompress(bzz[off:off + size])
        if len(block) != usize:
            raise SystemExit(f"{testament}.bzz: block at {off} decompressed to "
                             f"{len(block)} bytes, index says {usize}")
        blocks.append(block)
    fmt, rec = ("<IIH", 10) if drv == "zText" else ("<III", 12)
    if len(bzv) % rec:
        raise SystemExit(f"{testament}.bzv: size {len(bzv)} is not a multiple of {rec}")
    entries = []
    for bnum, off, size in struct.iter_unpack(fmt, bzv):
        if size == 0:
            entries.append(b"")
            continue
        if bnum >= len(blocks) or off + size > len(blocks[bnum]):
            raise SystemExit(f"{testament}.bzv: entry {len(entries)} points outside its block")
        entries.append(blocks[bnum][off:off + size])
    return entries


# ---------------------------------------------------------------------------
# OSIS -> plain text
# ---------------------------------------------------------------------------
TOKEN = re.compile(r"<(/?)([A-Za-z][\w:.-]*)([^>]*?)(/?)>|([^<]+)|(<)", re.S)
ATTR = re.compile(r'([\w:.-]+)\s*=\s*"([^"]*)"')
DROP = {"note", "title", "speaker"}   # elements dropped with their content
BREAK = {"l", "lg", "p", "item", "list", "title", "q"}   # element ends that separate words
LETTER = re.compile(r"[^\W\d_]")
GAP = "\x00"                          # marks where a dropped element was

# RV1909 writes translator-supplied words as <transChange> with no space
# before/after ("ejército<transChange>se llamaba</transChange><w>Sísara").
# A supplied enclitic pronoun does attach to the verb before it
# ("díjo" + "le" -> "díjole"), except after these words.
ENCLITIC = {"lo", "la", "le", "los", "las", "les", "nos", "os", "me", "te", "se"}
NOT_A_VERB = {"no", "como", "y", "que", "se", "me", "te", "ya", "si", "ni", "lo", "le"}


def _transchange_spacing(markup: str) -> str:
    def before(m):
        word, attrs, content = m.group(1), m.group(2), m.group(3)
        glue = content.strip().lower() in ENCLITIC and word.lower() not in NOT_A_VERB
        return f"{word}</w>{'' if glue else ' '}<transChange{attrs}>{content}"
    markup = re.sub(r"(\w+)</w><transChange([^>]*)>([^<]*)", before, markup)
    return re.sub(r"</transChange>(?=<w[\s>]|\w)", "</transChange> ", markup)


def osis_to_text(markup: str, keep_psalm_title: bool = False) -> str:
    """Plain text of one OSIS verse entry."""
    if "transChange" in markup:
        markup = _transchange_spacing(markup)
    out = []
    skip = 0            # depth inside dropped elements
    stack = []          # open elements: (name, dropped?)
    for m in TOKEN.finditer(markup):
        close, name, attrs, selfclose, text, stray = m.groups()
        if text is not None or stray is not None:
            if not skip:
                out.append(text if text is not None else "<")
            continue
        a = dict(ATTR.findall(attrs))
        if name == "div" and a.get("type") == "book" and "eID" in a:
            break       # end of the book: anything after is back matter
        if name == "div" and a.get("type") in ("glossary", "front", "introduction",
                                               "book") and "sID" in a:
            break       # start of non-verse matter
        if selfclose:
            out.append(" ")
            continue
        if close:
            # pop to the matching element (tolerate sloppy nesting)
            for k in range(len(stack) - 1, -1, -1):
                if stack[k][0] == name:
                    was_skipping = skip > 0
                    for _, dropped in stack[k:]:
                        skip -= dropped
                    del stack[k:]
                    if was_skipping and not skip:
                        out.append(GAP)     # a dropped note may have eaten a space
                    break
            out.append(" " if name in BREAK else "")
            continue
        dropped = name in DROP
        if (dropped and keep_psalm_title and name == "title"
                and a.get("type") == "psalm" and a.get("canonical") == "true"):
            dropped = False
            out.append(" ")
        stack.append((name, dropped))
        skip += dropped
    text = "".join(out)
    # Where a note sat between two words ("God<note/><w>created</w>") the
    # markup has no space left; put one back unless punctuation follows.
    text = re.sub(GAP + r"(?=\s*[^\W_]|\s*[“‘(\[¿¡«])", " ", text).replace(GAP, "")
    text = html.unescape(text)
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r" +([,.;:!?»)\]])", r"\1", text)
    text = re.sub(r"([¿¡«(\[]) +", r"\1", text)
    return text


def case_votes(texts) -> collections.Counter:
    """Count, per lower-cased word, mid-sentence uses written Capitalised (+1)
    and lower-case (-1): tells proper nouns ("Jacob") from common words."""
    votes = collections.Counter()
    for text in texts:
        words = text.split(" ")
        for prev, w in zip(words, words[1:]):
            if prev[-1:] in ".:;!?" or not prev:
                continue
            core = "".join(LETTER.findall(w))
            if len(core) < 2 or core.isupper():
                continue
            votes[core.lower()] += 1 if core[0].isupper() else -1
    return votes


def fix_dropcap(text: str, psalm: bool, votes: collections.Counter) -> str:
    """Normal-case the all-capitals first word of an RV1909 chapter.

    The first word with two or more letters is the candidate ("EN el
    principio", "Y ACONTECIÓ"); in the Psalms the capitalised word follows
    the superscription, so there it is the first all-capitals word anywhere
    in verse 1.  It becomes Capitalised at the start of a sentence or when
    the corpus writes it so mid-sentence (a name: "Y JACOB" -> "Y Jacob"),
    lower-case otherwise ("Y ACONTECIÓ" -> "Y aconteció").
    """
    words = text.split(" ")
    for i, w in enumerate(words):
        letters = LETTER.findall(w)
        if len(letters) < 2:
            continue
        if all(ch.isupper() for ch in letters):
            j = w.index(letters[0])
            starts_sentence = i == 0 or words[i - 1][-1:] in ".:;!?"
            if starts_sentence or votes["".join(letters).lower()] > 0:
                words[i] = w[:j + 1] + w[j + 1:].lower()
            else:
                words[i] = w.lower()
            return " ".join(words)
        if not psalm:
            return text
    return text


# RV1909 ends each Pauline epistle (and Hebrews) with the traditional
# subscription ("Fué escrita de Corinto á los Romanos..."), which is not
# verse text (KJV prints it apart; the WEB has none).
EPISTLES = ("Rom", "1Cor", "2Cor", "Gal", "Eph", "Phil", "Col", "1Thess", "2Thess",
            "1Tim", "2Tim", "Titus", "Phlm", "Heb")
SUBSCRIPTION = re.compile(r"(?<=Amén\.) [^.]*\b(?:[Ee]scrita|[Ee]nviada|[Ee]pístola)\b.*$")


def strip_subscription(text: str) -> str:
    return SUBSCRIPTION.sub("", text)


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


# ---------------------------------------------------------------------------
# Checked alignment
# ---------------------------------------------------------------------------
# Both modules claim KJV numbering, but the RV1909 source follows the Hebrew
# chapter/verse division in a few places (Num 13 and 30, 1 Sam 24, 1 Chr 21,
# 2 Chr 33, Job 38-41, Hos 12, Jonah 2, ...).  osis2mod then fills a
# KJV-numbered index with text that is one or more verses off, empty slots
# where the Spanish chapter is shorter, and several verses run together where
# it is longer.  Pairing purely by reference would put ~250 wrong pairs in the
# corpus, so each book is aligned a second time, by content:
#
# 1. A small word-translation lexicon is learnt from the reference pairs
#    themselves (Dice association of English and Spanish word types over
#    verses; ~99% of reference pairs are right, enough to learn from).
# 2. A pair's lexical score is the share of its lexicon words whose
#    translation is on the other side; a dynamic programme over the book's
#    verse sequences (1-1, 1-0, 0-1, 2-1 and 1-2 steps, Gale-Church length
#    cost plus the lexical score) finds the best monotone alignment.
# 3. Kept: 1-1 steps that pair the same reference (both methods agree), and
#    1-1 steps that pair different references when they form a run of such
#    steps (a shifted chapter) or score well on their own.  Everything else
#    (verses merged or split differently, doubtful pairs) is dropped.
WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")


def _types(text: str) -> frozenset:
    return frozenset(w.lower() for w in WORD.findall(text))


def learn_lexicon(pairs, min_count=3, max_df=0.04, min_dice=0.15, topk=3):
    """Word associations {en: {es,...}}, {es: {en,...}} from parallel verses."""
    n = len(pairs)
    E = [_types(e) for e, _ in pairs]
    S = [_types(s) for _, s in pairs]
    ce = collections.Counter(w for x in E for w in x)
    cs = collections.Counter(w for x in S for w in x)
    ok_e = {w for w, c in ce.items() if min_count <= c <= max_df * n}
    ok_s = {w for w, c in cs.items() if min_count <= c <= max_df * n}
    co = collections.Counter()
    for e, s in zip(E, S):
        ss = [w for w in s if w in ok_s]
        for a in e:
            if a in ok_e:
                for b in ss:
                    co[a, b] += 1
    fwd = collections.defaultdict(list)
    bwd = collections.defaultdict(list)
    for (a, b), c in co.items():
        if c >= 2:
            d = 2 * c / (ce[a] + cs[b])
            if d >= min_dice:
                fwd[a].append((d, b))
                bwd[b].append((d, a))
    fwd = {a: {b for _, b in sorted(v, reverse=True)[:topk]} for a, v in fwd.items()}
    bwd = {b: {a for _, a in sorted(v, reverse=True)[:topk]} for b, v in bwd.items()}
    return fwd, bwd


def lexical_score(E: frozenset, S: frozenset, lex) -> float | None:
    fwd, bwd = lex
    ke = [w for w in E if w in fwd]
    ks = [w for w in S if w in bwd]
    if not ke and not ks:
        return None
    hits = sum(1 for w in ke if fwd[w] & S) + sum(1 for w in ks if bwd[w] & E)
    return hits / (len(ke) + len(ks))


def _norm_sf(z: float) -> float:
    """Two-sided tail probability of a standard normal."""
    return math.erfc(abs(z) / math.sqrt(2))


def align_book(er, sr, en, es, lex, c, s2, band=15, skip=4.0, merge=3.0, alpha=0.5):
    """Monotone alignment of one book's English refs `er` and Spanish refs `sr`.

    Returns beads: (list of English refs, list of Spanish refs).
    """
    ET = [_types(en[r]) for r in er]
    ST = [_types(es[r]) for r in sr]
    EL = [len(en[r]) for r in er]
    SL = [len(es[r]) for r in sr]

    def llr(E, S):          # log-likelihood ratio, right vs wrong pair (fit on this data)
        sc = lexical_score(E, S, lex)
        return 0.0 if sc is None else max(-5.0, min(5.0, 13.0 * sc - 5.0))

    def lcost(la, lb):      # Gale & Church (1993) length cost
        z = (c * la - lb) / math.sqrt(s2 * max((la + lb / c) / 2, 1.0))
        return -math.log(max(_norm_sf(z), 1e-300))

    n, m = len(er), len(sr)
    D = {(0, 0): 0.0}
    back = {}
    for i in range(n + 1):
        jc = round(i * m / max(n, 1))
        for j in range(max(0, jc - band), min(m, jc + band) + 1):
            if i == 0 and j == 0:
                continue
            best, step = math.inf, None
            if i and j and (i - 1, j - 1) in D:
                cost = D[i - 1, j - 1] - llr(ET[i - 1], ST[j - 1]) \
                    + alpha * lcost(EL[i - 1], SL[j - 1])
                best, step = cost, (1, 1)
            if i and (i - 1, j) in D and D[i - 1, j] + skip < best:
                best, step = D[i - 1, j] + skip, (1, 0)
            if j and (i, j - 1) in D and D[i, j - 1] + skip < best:
                best, step = D[i, j - 1] + skip, (0, 1)
            if i >= 2 and j and (i - 2, j - 1) in D:
                cost = D[i - 2, j - 1] + merge - llr(ET[i - 2] | ET[i - 1], ST[j - 1]) \
                    + alpha * lcost(EL[i - 2] + EL[i - 1], SL[j - 1])
                if cost < best:
                    best, step = cost, (2, 1)
            if i and j >= 2 and (i - 1, j - 2) in D:
                cost = D[i - 1, j - 2] + merge - llr(ET[i - 1], ST[j - 2] | ST[j - 1]) \
                    + alpha * lcost(EL[i - 1], SL[j - 2] + SL[j - 1])
                if cost < best:
                    best, step = cost, (1, 2)
            if step is not None:
                D[i, j] = best
                back[i, j] = step
    if (n, m) not in D:
        raise RuntimeError("alignment band too narrow")
    beads = []
    i, j = n, m
    while (i, j) != (0, 0):
        di, dj = back[i, j]
        beads.append((er[i - di:i], sr[j - dj:j]))
        i, j = i - di, j - dj
    return beads[::-1]


def checked_alignment(en: dict, es: dict, order, log, good_score=0.5):
    """Return [(en_ref, es_ref)] pairs in English canonical order (see above)."""
    ref_pairs = [r for r in order if r in en and r in es]
    lex = learn_lexicon([(en[r], es[r]) for r in ref_pairs])
    # Gale-Church parameters: length ratio and variance per character
    c = sum(len(es[r]) for r in ref_pairs) / sum(len(en[r]) for r in ref_pairs)
    sq = sorted((len(es[r]) - c * len(en[r])) ** 2 / len(en[r]) for r in ref_pairs)
    s2 = sq[len(sq) // 2] / 0.455          # median of chi-square(1) is 0.455
    books = []
    for r in order:
        if not books or books[-1] != r[0]:
            books.append(r[0])
    pairs = []
    stats = collections.Counter()
    for book in books:
        er = [r for r in order if r[0] == book and r in en]
        sr = [r for r in order if r[0] == book and r in es]
        beads = align_book(er, sr, en, es, lex, c, s2)
        one = [len(a) == 1 and len(b) == 1 for a, b in beads]
        cross = [o and a[0] != b[0] for o, (a, b) in zip(one, beads)]
        for k, (a, b) in enumerate(beads):
            if not one[k]:
                stats["dropped (merged/unmatched)"] += len(a)
                continue
            if not cross[k]:
                pairs.append((a[0], b[0]))
                stats["kept, same reference"] += 1
                continue
            in_run = (k > 0 and cross[k - 1]) or (k + 1 < len(beads) and cross[k + 1])
            sc = lexical_score(_types(en[a[0]]), _types(es[b[0]]), lex) or 0.0
            if in_run or sc >= good_score:
                pairs.append((a[0], b[0]))
                stats["kept, re-paired across references"] += 1
            else:
                stats["dropped (isolated doubtful re-pairing)"] += 1
    log("checked alignment: " + ", ".join(f"{k}: {v}" for k, v in stats.items()))
    moved = collections.Counter(f"{a[0]} {a[1]}" for a, b in pairs if a != b)
    if moved:
        log("re-paired chapters: " + ", ".join(f"{k} ({v})" for k, v in moved.items()))
    return pairs


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

    _check_kjv_table()
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
