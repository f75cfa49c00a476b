"""The software-message corpus builder (tools/build_gettext_corpus.py) on catalogs written here."""
import gzip
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[2] / "tools"
if str(TOOLS) not in sys.path:
    sys.path.insert(0, str(TOOLS))

import build_gettext_corpus as bgc  # noqa: E402


def write_mo(path: Path, entries: dict) -> None:
    """A GNU .mo catalog of ``entries`` (msgid -> msgstr; bytes keys may hold \\x00 plurals)."""
    items = sorted((k.encode() if isinstance(k, str) else k, v.encode() if isinstance(v, str) else v)
                   for k, v in entries.items())
    n = len(items)
    ids = b"".join(k + b"\0" for k, _ in items)
    strs = b"".join(v + b"\0" for _, v in items)
    start = 7 * 4 + 16 * n
    id_table, str_table, off = [], [], 0
    for k, _ in items:
        id_table += [len(k), start + off]
        off += len(k) + 1
    off = 0
    for _, v in items:
        str_table += [len(v), start + len(ids) + off]
        off += len(v) + 1
    header = struct.pack("<7I", 0x950412de, 0, n, 28, 28 + 8 * n, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + struct.pack(f"<{4 * n}I", *id_table, *str_table) + ids + strs)


ENTRIES = {
    "": "Content-Type: text/plain; charset=UTF-8\nPlural-Forms: nplurals=2; plural=(n != 1);\n",
    "Save the _current document": "Guardar el documento _actual",
    "&Open a file here": "&Abrir un archivo aquí",
    "Close": "Cerrar",                                   # too short
    "Copy %s to the clipboard": "Copiar %s al portapapeles",  # placeholder
    "Not translated at all": "Not translated at all",
    "menu\x04Insert a new row": "Insertar una fila nueva",
    b"One file was deleted\x00%d files were deleted": b"Un archivo fue borrado\x00%d archivos fueron borrados",
    "Show the <b>bold</b> text": "Mostrar el texto en <b>negrita</b>",
}


def test_catalogs_become_clean_unique_pairs(tmp_path):
    write_mo(tmp_path / "a" / "es" / "LC_MESSAGES" / "app.mo", ENTRIES)
    write_mo(tmp_path / "b" / "es" / "LC_MESSAGES" / "other.mo",
             {"": "Content-Type: text/plain; charset=UTF-8\n", "Save the current document": "Otra traducción"})
    pairs = bgc.corpus_from_catalogs(sorted(tmp_path.rglob("*.mo")))
    # the first catalog (in path order) wins a message both hold
    assert sorted(pairs) == [("Insert a new row", "Insertar una fila nueva"),
                             ("One file was deleted", "Un archivo fue borrado"),
                             ("Open a file here", "Abrir un archivo aquí"),
                             ("Save the current document", "Guardar el documento actual")]


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb (Debian's package tool) is not installed")
def test_the_command_reads_debs_and_refuses_a_bad_language(tmp_path):
    root = tmp_path / "pkg"
    write_mo(root / "usr" / "share" / "locale" / "es" / "LC_MESSAGES" / "app.mo", ENTRIES)
    (root / "DEBIAN").mkdir()
    (root / "DEBIAN" / "control").write_text("Package: app\nVersion: 1\nArchitecture: all\n"
                                            "Maintainer: x <x@example.org>\nDescription: test\n")
    debs = tmp_path / "debs"
    debs.mkdir()
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(root), str(debs / "app.deb")],
                   check=True, capture_output=True)
    out = tmp_path / "corpus.tsv.gz"
    assert bgc.main(["--lang", "es", "--debs", str(debs), "--out", str(out)]) == 0
    lines = gzip.open(out, "rt", encoding="utf-8").read().splitlines()
    assert "Open a file here\tAbrir un archivo aquí" in lines and len(lines) == 4
    proc = subprocess.run([sys.executable, str(TOOLS / "build_gettext_corpus.py"), "--lang", "Spanish",
                           "--debs", str(debs), "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 2 and "expected a language code" in proc.stderr
