"""The extra corpus builder (tools/build_extra_corpus.py) on a tiny Bible database."""
import gzip
import sqlite3
import sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parents[2] / "tools"
if str(TOOLS) not in sys.path:
    sys.path.insert(0, str(TOOLS))

import build_extra_corpus as bec  # noqa: E402


def make_db(path, rows):
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE bible (bbName TEXT, bNumber INT, cNumber INT, vNumber INT, vText TEXT)")
    con.executemany("INSERT INTO bible VALUES (?, ?, ?, ?, ?)", rows)
    con.commit()
    con.close()


def test_pairs_are_cleaned_aligned_and_filtered(tmp_path):
    db = tmp_path / "bible.db"
    make_db(db, [
        ("4", 1, 1, 1, "In the beginning God created the heavens and the earth."),
        ("l", 1, 1, 1, "Au commencement, Dieu créa les cieux et la terre."),
        ("4", 1, 1, 2, "The earth was `formless` and [empty]."),
        ("l", 1, 1, 2, "(1:3) La terre était informe et vide."),
        ("4", 1, 1, 3, "dummy verses inserted by amos"),
        ("l", 1, 1, 3, "Dieu dit: Que la lumière soit!"),
        ("4", 1, 1, 4, "God saw the light, and saw that it was good. God divided the light from the darkness."),
        ("l", 1, 1, 4, "Bien."),                                  # lengths 2.5x apart: verse boundaries differ
        ("4", 19, 1, 6, "For Yahweh knows the way of the righteous. Psalm 2 Why do the nations rage?"),
        ("l", 19, 1, 6, "Car l'Éternel connaît la voie des justes."),
        ("4", 19, 2, 1, "Why do the peoples plot a vain thing?"),
        ("l", 19, 2, 1, "Pourquoi ce tumulte parmi les nations?"),
        ("4", 2, 1, 1, "Only in English."),
    ])
    pairs, dropped = bec.build(db, "4", "l", max_ratio=2.5)
    assert pairs[1] == ("The earth was 'formless' and empty.", "La terre était informe et vide.")
    assert ("For Yahweh knows the way of the righteous.", "Car l'Éternel connaît la voie des justes.") in pairs
    assert ("Why do the nations rage? Why do the peoples plot a vain thing?",
            "Pourquoi ce tumulte parmi les nations?") in pairs  # the heading moved to Psalm 2:1
    assert dropped == {"missing": 1, "empty": 0, "placeholder": 1, "length ratio": 1}
    out = tmp_path / "corpus.tsv.gz"
    bec.write_gz(pairs, out)
    lines = gzip.open(out, "rt", encoding="utf-8").read().splitlines()
    assert len(lines) == len(pairs) == 4 and all(line.count("\t") == 1 for line in lines)
    assert out.read_bytes() == (bec.write_gz(pairs, tmp_path / "again.gz"), (tmp_path / "again.gz").read_bytes())[1]
