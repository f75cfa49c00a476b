"""Scoring translations: the repetition share, the edit distance and the scores' keys."""
from functools import lru_cache

import pytest
from hypothesis import given
from hypothesis import strategies as st

from npformer.translation import edit_distance, repeat_share, score, token_error_rate

tokens = st.lists(st.sampled_from("abc"), max_size=7)


def _recursive_distance(a, b) -> int:
    """The definition itself: the last tokens match, or one edit and the rest."""
    @lru_cache(maxsize=None)
    def d(i, j):
        if i == 0 or j == 0:
            return i + j
        return min(d(i - 1, j) + 1, d(i, j - 1) + 1, d(i - 1, j - 1) + (a[i - 1] != b[j - 1]))
    return d(len(a), len(b))


@given(tokens, tokens)
def test_edit_distance_is_the_recursive_definition(a, b):
    assert edit_distance(a, b) == _recursive_distance(tuple(a), tuple(b)) == edit_distance(b, a)


def test_token_error_rate_counts_edits_per_reference_token():
    refs = ["K AE T", "D AO G Z"]
    hyps = ["K AE T", "D AA G"]  # one substitution, one deletion over 7 reference phonemes
    assert token_error_rate(hyps, refs) == pytest.approx(2 / 7)


def test_repeat_share_counts_texts_that_repeat_a_run_of_words():
    texts = ["en el principio y la tierra y la tierra",  # "y la tierra" is 3 words: no 4-word repeat
             "y la tierra, y la tierra, y la tierra, y la tierra,",  # loops
             "corto", ""]
    assert repeat_share(texts) == 0.25
    assert repeat_share(texts, n=3) == 0.5
    assert repeat_share([]) == 0.0


def test_score_reports_the_length_ratio_and_repeats():
    pytest.importorskip("sacrebleu")
    refs = ["el cielo y la tierra", "la luz es buena"]
    hyps = ["el cielo y la tierra", "la luz la luz la luz la luz"]
    s = score(hyps, refs)
    assert s["length_ratio"] == pytest.approx(13 / 9, abs=1e-3)
    assert (s["repeats"], s["ref_repeats"], s["n_sentences"]) == (0.5, 0.0, 2)
    # the second output: 2 substitutions and 4 insertions over 9 reference words
    assert s["exact_match"] == 0.5 and s["token_error_rate"] == pytest.approx(6 / 9, abs=1e-4)
    assert 0 < s["bleu"] < 100 and s["bleu_signature"].startswith("nrefs:1")
