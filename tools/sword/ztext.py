"""Reading the verse entries of a SWORD zText module.

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
"""
from __future__ import annotations

import bz2
import lzma
import struct
import zlib
from pathlib import Path


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
