"""Scoring translations: the repetition share and the scores' keys."""
import pytest

from npformer.translation import repeat_share, score


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
    assert 0 < s["bleu"] < 100 and s["bleu_signature"].startswith("nrefs:1")
