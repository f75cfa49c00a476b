"""The recipe: what it derives from a corpus and a budget, and that options win."""
import pytest
from hypothesis import given, settings, strategies as st

from npformer.train.recipe import DERIVED, derive, describe


def corpus(pairs, words_per_side):
    sentence = " ".join(["word"] * words_per_side)
    return [(sentence, sentence)] * pairs


def test_a_large_corpus_in_a_short_budget():
    s, why = derive(corpus(30_000, 23), preset="small", minutes=10)
    assert s["merges"] == 4500  # 4 * sqrt(1.38M) = 4699, to the nearest 500
    assert s["p_drop"] == 0.0 and "no dropout" in why["p_drop"]
    assert s["max_tokens"] == 2000
    assert (s["norm"], s["schedule"]) == ("pre", "linear")
    assert s["lr"] == pytest.approx(0.002)
    assert s["n_layers"] == 2 and "steps expected < 3,000" in why["n_layers"]  # a short run
    assert "words" not in why["n_layers"]  # 1.38M words is not a small corpus
    assert set(s) == set(why) == set(DERIVED)


def test_a_longer_budget_brings_dropout_and_a_longer_warmup():
    short, _ = derive(corpus(30_000, 23), preset="small", minutes=10)
    long, why = derive(corpus(30_000, 23), preset="small", minutes=60)
    assert long["p_drop"] == 0.1 and "epochs expected" in why["p_drop"]
    assert long["warmup"] > short["warmup"]
    assert long["n_layers"] == 3 and "preset's" in why["n_layers"]  # ~6,400 steps: the preset's depth


def test_a_small_corpus_gets_fewer_merges_smaller_batches_fewer_layers_and_dropout():
    s, why = derive(corpus(2_000, 8), preset="small", minutes=10)
    assert s["merges"] == 1000  # the floor
    assert s["max_tokens"] < 2000 and "300 steps" in why["max_tokens"]
    assert s["n_layers"] == 2 and "< 1,000,000" in why["n_layers"]
    assert s["p_drop"] == 0.1


def test_the_batch_makes_an_epoch_300_steps():
    # 16,000 pairs of 9 target words: 187,200 target subwords an epoch, 0.85 of each batch real
    s, _ = derive(corpus(16_000, 9), preset="small", minutes=10)
    assert s["max_tokens"] == 730  # 187,200 / 0.85 / 300 = 734, to 10
    s, why = derive(corpus(1_000, 9), preset="small", minutes=10)
    # 300 steps would be 50 positions a batch; 32 pairs of 9 x 1.3 = 11.7 tokens keep it at 380
    assert s["max_tokens"] == 380 and "32 pairs" in why["max_tokens"]
    s, _ = derive(corpus(1_000, 60), preset="small", minutes=10)
    assert s["max_tokens"] == 2000  # 32 pairs of 78 tokens would pass the 2000 cap


def test_depth_falls_below_a_million_words_or_3000_steps_and_a_named_preset_keeps_its_own():
    assert derive(corpus(20_000, 24), preset="small", minutes=60)[0]["n_layers"] == 2  # 960k words
    assert derive(corpus(22_000, 23), preset="small", minutes=60)[0]["n_layers"] == 3  # 1.012M
    assert derive(corpus(22_000, 23), preset="small", steps=2999)[0]["n_layers"] == 2
    assert derive(corpus(22_000, 23), preset="small", steps=3000)[0]["n_layers"] == 3
    s, why = derive(corpus(2_000, 8), preset="base", minutes=10, preset_chosen=True)
    assert s["n_layers"] == 6 and "--preset" in why["n_layers"]
    assert derive(corpus(2_000, 8), preset="base", minutes=10)[0]["n_layers"] == 5
    assert derive(corpus(2_000, 8), preset="tiny", minutes=10)[0]["n_layers"] == 2  # never below 2
    s, why = derive(corpus(2_000, 8), preset="small", minutes=10, given={"n_layers": 4})
    assert s["n_layers"] == 4 and why["n_layers"] == "given"


def test_a_step_budget_counts_steps():
    s, why = derive(corpus(30_000, 23), preset="small", steps=20_000)
    assert s["warmup"] == 1000 and "20,000 steps" in why["warmup"]


def test_given_settings_are_kept_and_said_to_be_given():
    s, why = derive(corpus(30_000, 23), preset="small", minutes=10,
                    given={"merges": 8000, "norm": "post", "p_drop": None})
    assert (s["merges"], s["norm"]) == (8000, "post") and why["merges"] == why["norm"] == "given"
    assert s["p_drop"] == 0.0 and why["p_drop"] != "given"  # None: derive it
    assert any(line.startswith("merges = 8000  (given)") for line in describe(s, why))


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 40_000), st.integers(1, 60), st.floats(0.1, 600))
def test_derived_values_stay_in_their_ranges(pairs, words, minutes):
    s, _ = derive(corpus(pairs, words), preset="small", minutes=minutes)
    assert 1000 <= s["merges"] <= 32000 and s["merges"] % 500 == 0
    assert min(2000, 32 * words * 1.3) <= s["max_tokens"] <= 2000 and s["max_tokens"] % 10 == 0
    assert s["n_layers"] in (2, 3)
    if pairs * words * 2 < 1_000_000:
        assert s["n_layers"] == 2
    assert s["p_drop"] in (0.0, 0.1)
    assert 50 <= s["warmup"] <= 4000


def test_bad_input():
    with pytest.raises(ValueError, match="budget"):
        derive(corpus(10, 3), preset="small")
    with pytest.raises(ValueError, match="no words"):
        derive([("", "")], preset="small", minutes=1)


def test_the_papers_schedule_gets_no_peak():
    s, why = derive(corpus(30_000, 23), preset="small", minutes=10, given={"schedule": "noam"})
    assert s["lr"] is None and "lr-factor" in why["lr"]
