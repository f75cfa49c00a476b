"""The dictionary-phrase builder (tools/build_dict_corpus.py) on entries written here."""
# ruff: noqa: E501 -- ENTRIES holds dictionary lines as the file has them, one entry a line
import gzip
import sys
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[2] / "tools"
if str(TOOLS) not in sys.path:
    sys.path.insert(0, str(TOOLS))

import build_dict_corpus as dct  # noqa: E402

ENTRIES = """\
# Version :: devel 2023-01-30
Leidenschaft {f} | Leidenschaften {pl} | aus Leidenschaft | eine Leidenschaft für etw. haben :: passion | passions | of passion | to have a passion for sth.
das A und O [ugs.] :: the nuts and bolts [coll.]
Aal {m}; Aalbestand {m} | Aale {pl} :: eel | eels
Mittel für ein Projekt bereitstellen :: to finance a project; to fund a project
Das ist blanker Unsinn. | Es war purer Zufall. :: That is sheer nonsense. | It was sheer/pure chance.
ein Wort mit drei (erklärenden) Wörtern <Wort> :: a word with three words /WWW/
zu jeder Schandtat bereit sein | aus Leidenschaft :: to be game for anything | out of passion
nur eine Seite ohne Trenner
"""


def test_aligned_phrases_of_three_words_without_notes_synonyms_or_alternatives():
    pairs = dct.pairs_of(ENTRIES.splitlines(keepends=True))
    assert pairs == [
        ("eine Leidenschaft für etw. haben", "to have a passion for sth."),  # "aus Leidenschaft": 2 words
        ("das A und O", "the nuts and bolts"),                               # [ugs.] and [coll.] removed
        ("Das ist blanker Unsinn.", "That is sheer nonsense."),              # its neighbour has "sheer/pure"
        ("ein Wort mit drei Wörtern", "a word with three words"),            # (...), <...>, /WWW/ removed
        ("zu jeder Schandtat bereit sein", "to be game for anything"),
    ]
    # with two words "aus Leidenschaft" is in, once: the later "out of passion" is a second translation
    two = dct.pairs_of(ENTRIES.splitlines(), min_words=2)
    assert [p for p in two if p[0] == "aus Leidenschaft"] == [("aus Leidenschaft", "of passion")]


def test_the_tsv_loads_as_a_corpus(tmp_path):
    source = tmp_path / "de-en"
    source.write_text(ENTRIES, encoding="utf-8")
    out = tmp_path / "dict.tsv.gz"
    assert dct.main(["--package", str(source), "--out", str(out), "--pairs", "3"]) == 0
    with gzip.open(out, "rt", encoding="utf-8") as f:
        lines = f.read().splitlines()
    assert len(lines) == 3 and all(len(line.split("\t")) == 2 for line in lines)
    from npformer.data.corpus import read_tsv
    assert len(read_tsv(str(out))) == 3


def test_a_missing_package_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        dct.main(["--package", str(tmp_path / "nothing.deb"), "--out", str(tmp_path / "x.tsv")])
    assert e.value.code == 2 and "no such file" in capsys.readouterr().err
