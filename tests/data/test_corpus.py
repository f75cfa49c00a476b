"""Tests of the bundled corpus and of npformer.data.corpus."""
import gzip
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from npformer.data.corpus import (DEFAULT_CORPUS, HELDOUT_SHARE, load_corpus, read_tsv,
                                  split_corpus)
from npformer.errors import UserError


@pytest.fixture(scope="module")
def bundled():
    return read_tsv(DEFAULT_CORPUS)


def _digest(pairs):
    return hashlib.sha256("\n".join(f"{s}\t{t}" for s, t in pairs).encode("utf-8")).hexdigest()


# --- the bundled corpus ----------------------------------------------------------------

def test_bundled_corpus_is_there_and_large(bundled):
    assert DEFAULT_CORPUS.name == "bible_en_es.tsv.gz"
    assert DEFAULT_CORPUS.is_file()
    assert len(bundled) > 30000
    assert all(s and t and "\t" not in s + t and "\n" not in s + t for s, t in bundled)


def test_bundled_corpus_starts_at_genesis(bundled):
    assert bundled[0] == ("In the beginning, God created the heavens and the earth.",
                          "En el principio crió Dios los cielos y la tierra.")


def test_bundled_corpus_has_john_3_16(bundled):
    hits = [(s, t) for s, t in bundled if "For God so loved the world" in s]
    assert len(hits) == 1
    assert "Porque de tal manera amó Dios al mundo" in hits[0][1]
    assert "Hijo unigénito" in hits[0][1]


def test_spanish_accents_decode(bundled):
    spanish = " ".join(t for _, t in bundled[:3000])
    for ch in "áéíóúñ¿¡":
        assert ch in spanish
    everything = "".join(s + t for s, t in bundled)
    for bad in ("Ã", "Â", "\ufffd", "<", ">", "&amp;", "&quot;"):
        assert bad not in everything, f"{bad!r} in corpus"


def test_no_markup_or_chapter_dropcaps_left(bundled):
    # RV1909 writes each chapter's first word in capitals ("EN el principio");
    # the extractor normalises that.
    assert not any(t.startswith(("EN el", "Y ACONTECIÓ", "LIBRO de")) for _, t in bundled)


def test_default_split_sizes_and_stability(bundled):
    split = load_corpus()
    assert {k: len(v) for k, v in split.items()} == {
        "train": len(bundled) - 1500, "dev": 500, "test": 1000}
    # The exact default test set: a changed corpus or split changes this digest.
    assert _digest(split["test"][:20]) == \
        "e08d4bc8ad83cd8643a8d4be4266f368ce1efbce1791753ed1603b9af3f1d861"


# --- read_tsv ----------------------------------------------------------------------

def test_plain_and_gzip_read_the_same(tmp_path):
    text = "hello\thola\n\nthe house\tla casa\r\nJohn 3:16\tJuan 3:16 ¿ñ?\n"
    plain = tmp_path / "c.tsv"
    plain.write_bytes(text.encode("utf-8"))
    packed = tmp_path / "c.tsv.gz"
    with gzip.open(packed, "wb") as f:
        f.write(text.encode("utf-8"))
    expected = [("hello", "hola"), ("the house", "la casa"), ("John 3:16", "Juan 3:16 ¿ñ?")]
    assert read_tsv(plain) == expected
    assert read_tsv(str(packed)) == expected


def test_blank_lines_and_bom_are_skipped(tmp_path):
    p = tmp_path / "c.tsv"
    p.write_bytes("\ufeffa\tb\n   \n\n c \t d \n".encode("utf-8"))
    assert read_tsv(p) == [("a", "b"), ("c", "d")]


@pytest.mark.parametrize("bad_line, what", [
    ("one\ttwo\tthree", "got 3 fields"),
    ("no tab here", "got 1 field"),
    ("\tonly target", "the source is empty"),
    ("only source\t   ", "the target is empty"),
])
def test_malformed_line_names_file_and_line(tmp_path, bad_line, what):
    p = tmp_path / "corpus.tsv"
    lines = ["a\tb", "", "c\td", bad_line, "e\tf"]
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(UserError) as err:
        read_tsv(p)
    msg = str(err.value)
    assert "corpus.tsv line 4:" in msg
    assert "expected 'source<TAB>target'" in msg
    assert what in msg


def test_malformed_line_number_in_gzip(tmp_path):
    p = tmp_path / "corpus.tsv.gz"
    with gzip.open(p, "wt", encoding="utf-8") as f:
        f.write("a\tb\n" * 16 + "x\ty\tz\n")
    with pytest.raises(UserError,
                       match=r"corpus\.tsv\.gz line 17: .*exactly one tab, got 3 fields"):
        read_tsv(p)


def test_invalid_utf8_reports_line(tmp_path):
    p = tmp_path / "latin1.tsv"
    p.write_bytes("ok\tbien\n".encode() + "caf\u00e9\tcaf\u00e9\n".encode("latin-1"))
    with pytest.raises(UserError, match=r"latin1\.tsv line 2: not valid UTF-8"):
        read_tsv(p)


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="corpus file not found: .*nope.tsv; expected a UTF-8"):
        read_tsv(tmp_path / "nope.tsv")


def test_directory_and_broken_gzip(tmp_path):
    with pytest.raises(UserError, match="directory"):
        read_tsv(tmp_path)
    p = tmp_path / "broken.tsv.gz"
    p.write_bytes(b"this is not gzip\tat all\n")
    with pytest.raises(UserError, match="gzip"):
        read_tsv(p)


# --- split_corpus / load_corpus ------------------------------------------------------

def _pairs(n):
    return [(f"s{i}", f"t{i}") for i in range(n)]


def test_split_is_disjoint_complete_ordered_and_stable():
    pairs = _pairs(5000)
    a = split_corpus(pairs)
    b = split_corpus(list(pairs))
    assert a == b
    assert (len(a["train"]), len(a["dev"]), len(a["test"])) == (3500, 500, 1000)
    sets = {k: set(v) for k, v in a.items()}
    assert not sets["train"] & sets["dev"]
    assert not sets["train"] & sets["test"]
    assert not sets["dev"] & sets["test"]
    assert sets["train"] | sets["dev"] | sets["test"] == set(pairs)
    for v in a.values():
        assert v == sorted(v, key=pairs.index)
    # The split algorithm itself is pinned (independent of the bundled data).
    assert _digest(a["test"][:10]) == _digest(
        [(f"s{i}", f"t{i}") for i in (10, 12, 19, 23, 24, 25, 29, 38, 41, 45)])
    assert split_corpus(pairs, seed=1) != a


@given(n=st.integers(2, 300), n_dev=st.integers(0, 50), n_test=st.integers(0, 50),
       seed=st.integers(0, 2**32))
def test_split_property(n, n_dev, n_test, seed):
    pairs = _pairs(n)
    if n_dev + n_test >= n:
        with pytest.raises(ValueError, match="smaller than the number of pairs"):
            split_corpus(pairs, n_dev, n_test, seed)
        return
    s = split_corpus(pairs, n_dev, n_test, seed)
    assert len(s["dev"]) == n_dev and len(s["test"]) == n_test
    assert sorted(s["train"] + s["dev"] + s["test"], key=pairs.index) == pairs
    assert s == split_corpus(pairs, n_dev, n_test, seed)


def test_split_rejects_bad_sizes():
    with pytest.raises(ValueError, match="n_dev"):
        split_corpus(_pairs(10), n_dev=-1, n_test=1)
    with pytest.raises(ValueError, match="n_test"):
        split_corpus(_pairs(10), n_dev=1, n_test=2.5)
    with pytest.raises(ValueError, match=r"500 \+ 1000 = 1500 must be smaller than the number "
                                         r"of pairs \(1200\)"):
        split_corpus(_pairs(1200))


def test_load_small_corpus_scales_dev_and_test(tmp_path):
    p = tmp_path / "small.tsv"
    p.write_text("".join(f"s{i}\tt{i}\n" for i in range(1000)), encoding="utf-8")
    s = load_corpus(p)
    assert (len(s["train"]), len(s["dev"]), len(s["test"])) == (900, 50, 50)
    assert load_corpus(p, n_dev=10, n_test=20)["dev"].__len__() == 10
    tiny = tmp_path / "tiny.tsv"
    tiny.write_text("a\tb\nc\td\ne\tf\n", encoding="utf-8")
    s = load_corpus(tiny)
    assert (len(s["train"]), len(s["dev"]), len(s["test"])) == (1, 1, 1)
    tiny.write_text("a\tb\nc\td\n", encoding="utf-8")  # nothing left to train on
    with pytest.raises(UserError, match=r"tiny\.tsv: 2 sentence pair\(s\); expected at least 3"):
        load_corpus(tiny)
    tiny.write_text("\n\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"tiny\.tsv: 0 sentence pair\(s\); expected at least 3"):
        load_corpus(tiny)


def test_load_large_corpus_keeps_requested_sizes(tmp_path):
    p = tmp_path / "big.tsv.gz"
    with gzip.open(p, "wt", encoding="utf-8") as f:
        f.writelines(f"s{i}\tt{i}\n" for i in range(10000))
    s = load_corpus(p, n_dev=100, n_test=200, seed=7)
    assert (len(s["dev"]), len(s["test"])) == (100, 200)
    assert s == load_corpus(p, n_dev=100, n_test=200, seed=7)


@pytest.mark.parametrize("n", [40, 1000, 2999, 3000, 5000, 10000, 19999, 20000, 31013])
def test_training_keeps_at_least_90_percent_of_any_corpus(tmp_path, n):
    """Dev and test are each at most 5% of the pairs, so the split has no jump at any size
    (a 3,000-pair corpus once lost half of itself to the 500/1,000 defaults)."""
    p = tmp_path / "c.tsv"
    p.write_text("".join(f"s{i}\tt{i}\n" for i in range(n)), encoding="utf-8")
    s = load_corpus(p)
    cap = max(1, int(n * HELDOUT_SHARE))
    assert (len(s["dev"]), len(s["test"])) == (min(500, cap), min(1000, cap))
    assert len(s["train"]) >= 0.9 * n
