"""Tests for npformer.data.bpe: learning, round trips, byte fallback, persistence."""
import json
import unicodedata

import pytest
from hypothesis import given, settings, strategies as st

from npformer.data.bpe import (
    BOS_ID, EOS_ID, MARKER, PAD_ID, UNK_ID, BPETokenizer, normalize, pretokenize,
)
from npformer.errors import UserError

CORPUS = [
    "In the beginning God created the heaven and the earth.",
    "And the earth was without form, and void; and darkness was upon the face of the deep.",
    "And God said, Let there be light: and there was light.",
    "And God saw the light, that it was good: and God divided the light from the darkness.",
    "En el principio creó Dios los cielos y la tierra.",
    "Y la tierra estaba desordenada y vacía, y las tinieblas estaban sobre la faz del abismo.",
    "Y dijo Dios: Sea la luz; y fue la luz.",
    "Y vio Dios que la luz era buena; y separó Dios la luz de las tinieblas.",
    "¿Dónde está el niño? ¡Aquí! 1, 2, 3 años; señor Muñoz (12:30).",
] * 4


@pytest.fixture(scope="module")
def tok():
    return BPETokenizer.learn(CORPUS, num_merges=300, min_frequency=2)


def test_special_ids_and_layout(tok):
    assert (PAD_ID, BOS_ID, EOS_ID, UNK_ID) == (0, 1, 2, 3)
    assert [tok.id_to_token(i) for i in range(4)] == ["<pad>", "<s>", "</s>", "<unk>"]
    assert tok.id_to_token(4) == "<0x00>" and tok.id_to_token(259) == "<0xFF>"
    assert tok.id_to_token(260) == MARKER
    assert tok.token_to_id("<s>") == BOS_ID
    assert tok.token_to_id("no such token") == UNK_ID


def test_vocab_size(tok):
    n_merge_tokens = len({a + b for a, b in tok.merges})
    assert tok.vocab_size == 4 + 256 + 1 + len(tok.alphabet) + n_merge_tokens
    assert len(tok.to_dict()["vocab"]) == tok.vocab_size
    ids = [i for t in CORPUS for i in tok.encode(t, add_bos=True, add_eos=True)]
    assert 0 <= min(ids) and max(ids) < tok.vocab_size


def test_learning_is_deterministic():
    a = BPETokenizer.learn(CORPUS, num_merges=200)
    b = BPETokenizer.learn(CORPUS, num_merges=200)
    c = BPETokenizer.learn(list(reversed(CORPUS)), num_merges=200)  # order-free
    assert a.merges == b.merges == c.merges
    assert a.to_dict() == b.to_dict() == c.to_dict()


def test_tie_break_is_lexicographic():
    # pairs (▁,a) (a,b) (▁,c) (c,d) all occur twice: the smallest pair of
    # strings (by code point; "▁" is U+2581, after ASCII) is merged first
    tok = BPETokenizer.learn(["cd ab", "ab cd"], num_merges=2, min_frequency=1)
    assert tok.merges == [("a", "b"), ("c", "d")]


def test_most_frequent_pair_first():
    tok = BPETokenizer.learn(["xy xy xy ab"], num_merges=2, min_frequency=1)
    # (▁,x) and (x,y) occur 3 times, (▁,a) and (a,b) once; "x" < "▁"
    assert tok.merges == [("x", "y"), (MARKER, "xy")]
    assert tok.tokenize("xy ab") == [MARKER + "xy", MARKER, "a", "b"]


def test_min_frequency_stops_early():
    tok = BPETokenizer.learn(["abc"], num_merges=100, min_frequency=2)
    assert tok.merges == []
    tok = BPETokenizer.learn(["abc"], num_merges=100, min_frequency=1)
    assert len(tok.merges) == 3  # ▁ a b c -> one token
    assert tok.tokenize("abc") == ["▁abc"]


def test_frequent_words_become_single_tokens(tok):
    for word in ["the", "and", "God", "luz", "Dios", "tierra"]:
        assert tok.tokenize(word) == [MARKER + word]
    # but a rare word is still spelled from pieces, with no UNK
    pieces = tok.tokenize("unthinkable")
    assert len(pieces) > 1 and "".join(pieces) == MARKER + "unthinkable"


def test_merges_never_cross_pieces(tok):
    for t in CORPUS:
        for token in tok.tokenize(t):
            assert " " not in token
            assert MARKER not in token[1:]  # a marker only starts a token


@pytest.mark.parametrize("text", [
    "Hello, world!",
    "In the beginning God created the heaven and the earth.",
    "¿Dónde está el niño? ¡Aquí!",
    "señor Muñoz, año 2024: 12:30 (ok).",
    "emoji 😀👍🏽 and CJK 漢字かな 한국어",
    "Ελληνικά, русский, العربية",
    "quotes \"x\" 'y' «z» — dash – dash … end",
    "<pad> <s> </s> <unk> <0x41> ▁marker▁ ▁",
    "tabs\tand\nnewlines\r\n and\u00a0nbsp\u3000ideographic space",
    "control \x00\x01\x7f chars",
    "",
    "   ",
])
def test_round_trip(tok, text):
    assert tok.decode(tok.encode(text)) == normalize(text)


def test_whitespace_is_normalised(tok):
    assert tok.decode(tok.encode("  Hello,   world!  \n")) == "Hello, world!"
    assert tok.encode("a  b") == tok.encode(" a b ")


def test_nfc_normalisation(tok):
    decomposed = "cre" + "o\u0301"  # o + combining acute
    assert unicodedata.normalize("NFC", decomposed) == "creó"
    assert tok.encode(decomposed) == tok.encode("creó")
    assert tok.decode(tok.encode(decomposed)) == "creó"


def test_punctuation_is_split_from_words(tok):
    assert pretokenize("Hello, world!") == [" Hello", ",", " world", "!"]
    assert pretokenize("(12:30)") == [" (", "12", ":", "30", ")"]
    assert tok.tokenize("Dios,")[-1] == ","


def test_byte_fallback(tok):
    ids = tok.encode("😀")
    assert UNK_ID not in ids
    assert ids[0] == tok.token_to_id(MARKER)
    assert [tok.id_to_token(i) for i in ids[1:]] == ["<0xF0>", "<0x9F>", "<0x98>", "<0x80>"]
    assert tok.decode(ids) == "😀"
    # a literal marker character is byte-encoded, never read as a space
    assert tok.decode(tok.encode("a▁b")) == "a▁b"


def test_decode_skips_specials_and_handles_bad_bytes(tok):
    ids = tok.encode("Dios", add_bos=True, add_eos=True)
    assert ids[0] == BOS_ID and ids[-1] == EOS_ID
    assert tok.decode(ids + [PAD_ID, PAD_ID]) == "Dios"
    # a lone continuation byte (a model could emit one) decodes to U+FFFD
    bad = tok.token_to_id("<0x80>")
    assert tok.decode(tok.encode("a") + [bad]) == "a\ufffd"
    with pytest.raises(ValueError):
        tok.decode([tok.vocab_size])


def test_encode_batch(tok):
    assert tok.encode_batch(CORPUS[:3], add_eos=True) == [
        tok.encode(t, add_eos=True) for t in CORPUS[:3]]


def test_dict_round_trip(tok, tmp_path):
    d = tok.to_dict()
    json.dumps(d)  # JSON-serialisable
    again = BPETokenizer.from_dict(json.loads(json.dumps(d)))
    assert again.merges == tok.merges and again.vocab_size == tok.vocab_size
    for t in CORPUS + ["unseen wörds 😀"]:
        assert again.encode(t) == tok.encode(t)
    path = tmp_path / "bpe.json"
    tok.save(path)
    loaded = BPETokenizer.load(path)
    assert loaded.to_dict() == d
    assert [loaded.encode(t) for t in CORPUS] == [tok.encode(t) for t in CORPUS]


@pytest.mark.parametrize("field, value, message", [
    ("version", 99, "version"),
    ("format", "other", "format"),
    ("alphabet", "abc", "alphabet"),
    ("alphabet", ["a", "a"], "alphabet"),
    ("alphabet", ["ab"], "alphabet"),
    ("merges", [["q", "z"]], "merges"),
    ("merges", [["a"]], "merges"),
    ("merges", "nope", "merges"),
    ("vocab", ["<pad>"], "vocab"),
    ("special_tokens", ["<s>"], "special_tokens"),
])
def test_malformed_dict_raises(tok, field, value, message):
    d = tok.to_dict()
    d[field] = value
    with pytest.raises(ValueError, match=message):
        BPETokenizer.from_dict(d)


def test_missing_field_raises(tok):
    d = tok.to_dict()
    del d["merges"]
    with pytest.raises(ValueError, match="merges"):
        BPETokenizer.from_dict(d)
    with pytest.raises(ValueError):
        BPETokenizer.from_dict(["not", "a", "dict"])


def test_merges_cannot_spell_reserved_tokens():
    with pytest.raises(ValueError, match="reserved"):
        BPETokenizer(alphabet="<pad>", merges=[("<", "p"), ("<p", "a"),
                                               ("<pa", "d"), ("<pad", ">")])


def test_load_rejects_a_bad_file_naming_it(tok, tmp_path):
    """A tokenizer file is the user's: whatever is wrong with it is a UserError naming it."""
    path = tmp_path / "bad.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(UserError, match=r"bad\.json: not valid UTF-8 JSON"):
        BPETokenizer.load(path)
    with pytest.raises(UserError, match=r"missing\.json: cannot read the file \(No such file or directory\)"):
        BPETokenizer.load(tmp_path / "missing.json")
    d = tok.to_dict()
    del d["merges"]
    path.write_text(json.dumps(d), encoding="utf-8")
    with pytest.raises(UserError, match=r"bad\.json: not a valid tokenizer \(missing field 'merges'\)"):
        BPETokenizer.load(path)


@settings(max_examples=300)
@given(st.text())
def test_round_trip_property(tok, text):
    assert tok.decode(tok.encode(text)) == normalize(text)


@settings(max_examples=100)
@given(st.lists(st.text(alphabet="abcé ,.!😀\t", max_size=12), min_size=1, max_size=8),
       st.text(max_size=40))
def test_round_trip_property_learned_on_random_text(corpus, text):
    tok = BPETokenizer.learn(corpus, num_merges=50, min_frequency=1)
    for t in corpus + [text]:
        assert tok.decode(tok.encode(t)) == normalize(t)


def _naive_learn(texts, num_merges, min_frequency):
    """Reference BPE: recount every pair after every merge (slow but obvious)."""
    from collections import Counter
    words = Counter()
    for t in texts:
        for piece in pretokenize(t):
            syms = ([MARKER] if piece.startswith(" ") else []) + list(piece.lstrip(" "))
            words[tuple(syms)] += 1
    merges = []
    while len(merges) < num_merges:
        pairs = Counter()
        for w, f in words.items():
            for p in zip(w, w[1:]):  # (no byte tokens here: all pairs count)
                pairs[p] += f
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        if pairs[best] < min_frequency:
            break
        merges.append(best)
        new_words = Counter()
        for w, f in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    out.append(w[i] + w[i + 1])
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            new_words[tuple(out)] += f
        words = new_words
    return merges


@settings(max_examples=60)
@given(st.lists(st.text(alphabet="abcab ,.", max_size=20), min_size=1, max_size=10),
       st.integers(1, 3))
def test_fast_learning_matches_naive_reference(corpus, min_frequency):
    fast = BPETokenizer.learn(corpus, num_merges=30, min_frequency=min_frequency)
    assert fast.merges == _naive_learn(corpus, 30, min_frequency)
