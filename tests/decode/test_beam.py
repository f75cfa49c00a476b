"""Beam search (npformer/decode/beam.py): beam 1 = greedy, scores, exhaustive optimum, batching, checks."""
import itertools

import numpy as np
import pytest
from hypothesis import given, strategies as st

from npformer.decode import beam, beam_search, greedy_decode, length_penalty
from npformer.decode.beam import Hypothesis, search_is_over
from npformer.decode.shared import make_decoder, next_log_probs
from npformer.model.transformer import transformer_forward


def sequence_log_prob(be, cfg, params, src_row, tokens, ended):
    """log P(Y | x) from one full forward: the tokens, then EOS if the hypothesis ended."""
    targets = tokens + ([cfg.eos_id] if ended else [])
    tgt_in = be.asarray(np.array([[cfg.bos_id] + targets[:-1]]))
    logits, _ = transformer_forward(params, cfg, src_row, tgt_in)  # (1, n, V)
    logp = be.to_host(next_log_probs(logits[0], cfg, 0))  # (n, V)
    return float(logp[np.arange(len(targets)), targets].sum())


def test_length_penalty():
    assert length_penalty(1, 0.6) == 1.0
    assert length_penalty(7, 0.0) == 1.0
    assert length_penalty(7, 0.6) == pytest.approx(2.0 ** 0.6)
    assert length_penalty(25, 1.0) == pytest.approx(5.0)
    assert np.allclose(length_penalty(np.array([1, 7, 25]), 2.0), [1.0, 4.0, 25.0])


@pytest.mark.parametrize("alpha", [0.0, 0.6, 2.0])
def test_beam_1_is_greedy(be, tiny, alpha):
    cfg, params, src = tiny
    assert beam_search(params, cfg, src, beam_size=1, alpha=alpha, max_len=20) == \
        greedy_decode(params, cfg, src, max_len=20)


@pytest.mark.parametrize("alpha", [0.6, 2.0])
def test_hypotheses_are_valid_and_scored(be, tiny, alpha):
    """Clean outputs, n-best sorted, and every score recomputed from one full forward pass."""
    cfg, params, src = tiny
    nbest = beam_search(params, cfg, src, beam_size=4, alpha=alpha, max_len=12, n_best=4)
    assert len(nbest) == src.shape[0]
    for b, hyps in enumerate(nbest):
        assert 1 <= len(hyps) <= 4
        assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
        for h in hyps:
            assert len(h.tokens) <= 12 and (h.ended or len(h.tokens) == 12)
            assert not {cfg.pad_id, cfg.bos_id, cfg.eos_id} & set(h.tokens)
            log_p = sequence_log_prob(be, cfg, params, src[b:b + 1], h.tokens, h.ended)
            assert h.log_prob == pytest.approx(log_p, abs=1e-9)
            assert h.score == pytest.approx(log_p / length_penalty(len(h.tokens) + h.ended, alpha), abs=1e-9)
    best = beam_search(params, cfg, src, beam_size=4, alpha=alpha, max_len=12)
    assert best == [hyps[0].tokens for hyps in nbest]


@pytest.mark.parametrize("alpha", [0.0, 0.6, 2.0])
def test_wider_beam_scores_at_least_beam_1(be, tiny, alpha):
    """Not a theorem for beam search in general, but it holds on this model and these sentences."""
    cfg, params, src = tiny
    score = {k: [h[0].score for h in beam_search(params, cfg, src, beam_size=k, alpha=alpha,
                                                   max_len=20, n_best=1)] for k in (1, 4)}
    assert all(s4 >= s1 - 1e-12 for s1, s4 in zip(score[1], score[4]))
    assert any(s4 > s1 for s1, s4 in zip(score[1], score[4]))


@pytest.mark.parametrize("alpha", [0.0, 0.6, 2.0])
def test_beam_that_never_prunes_finds_the_optimum(be, tiny, alpha):
    """With max_len 3 and a beam as wide as every 2-step candidate, nothing is pruned: the search
    must return the best of ALL outputs, scored by enumeration with the full model."""
    cfg, params, src = tiny
    src_row = src[3:4]
    allowed = [v for v in range(cfg.vocab_size) if v not in (cfg.pad_id, cfg.bos_id, cfg.eos_id)]
    seqs = np.array(list(itertools.product(allowed, repeat=3)))  # (N, 3): every 3-token output
    tgt_in = be.asarray(np.concatenate([np.full((len(seqs), 1), cfg.bos_id), seqs], axis=1))  # (N, 4)
    logits, _ = transformer_forward(params, cfg, be.asarray(np.repeat(be.to_host(src_row), len(seqs), 0)), tgt_in)
    logp = be.to_host(next_log_probs(logits.reshape(-1, cfg.vocab_size), cfg, 0)).reshape(len(seqs), 4, -1)
    rows = np.arange(len(seqs))
    prefix = np.cumsum(logp[rows[:, None], np.arange(3), seqs], axis=1)  # (N, 3) log P(y_1..y_n)
    prefix = np.concatenate([np.zeros((len(seqs), 1)), prefix], axis=1)  # (N, 4), n = 0..3
    scores = [prefix[:, 3].max() / length_penalty(3, alpha)]  # cut at max_len, no EOS
    for n in range(3):  # n tokens then EOS
        scores.append((prefix[:, n] + logp[:, n, cfg.eos_id]).max() / length_penalty(n + 1, alpha))
    k = len(allowed) * (len(allowed) + 1)  # step 2 has (14 tokens + EOS) x 14 prefixes
    [[best]] = beam_search(params, cfg, src_row, beam_size=k, alpha=alpha, max_len=3, n_best=1)
    assert best.score == pytest.approx(max(scores), abs=1e-9)


def test_batch_equals_one_by_one(be, tiny):
    cfg, params, src = tiny
    batch = beam_search(params, cfg, src, beam_size=3, alpha=2.0, max_len=15, n_best=3)
    lengths = be.to_host((src != cfg.pad_id).sum(axis=1))
    for b, n in enumerate(lengths):
        [alone] = beam_search(params, cfg, src[b:b + 1, :n], beam_size=3, alpha=2.0, max_len=15, n_best=3)
        assert [h.tokens for h in alone] == [h.tokens for h in batch[b]]
        assert np.allclose([h.score for h in alone], [h.score for h in batch[b]], rtol=0, atol=1e-10)


def test_cached_equals_uncached(be, tiny):
    cfg, params, src = tiny
    kw = dict(beam_size=4, alpha=2.0, max_len=10, n_best=4)
    cached, full = beam_search(params, cfg, src, **kw), beam_search(params, cfg, src, use_cache=False, **kw)
    assert [[h.tokens for h in hyps] for hyps in cached] == [[h.tokens for h in hyps] for hyps in full]
    assert np.allclose([h.score for hyps in cached for h in hyps],
                       [h.score for hyps in full for h in hyps], rtol=0, atol=1e-10)


def test_min_len_forces_full_length(be, tiny):
    cfg, params, src = tiny
    for hyps in beam_search(params, cfg, src, beam_size=4, max_len=8, min_len=8, n_best=4):
        assert len(hyps) == 4 and all(len(h.tokens) == 8 and not h.ended for h in hyps)


def test_argument_errors(be, tiny):
    cfg, params, src = tiny
    with pytest.raises(ValueError, match="beam_size: expected an integer >= 1, got 0"):
        beam_search(params, cfg, src, beam_size=0)
    with pytest.raises(TypeError, match="beam_size: expected an integer, got float 2.0"):
        beam_search(params, cfg, src, beam_size=2.0)
    with pytest.raises(ValueError, match="alpha: expected a finite number >= 0"):
        beam_search(params, cfg, src, alpha=-0.1)
    with pytest.raises(ValueError, match="alpha: expected a finite number >= 0"):
        beam_search(params, cfg, src, alpha=float("nan"))
    with pytest.raises(ValueError, match=r"n_best: expected an integer in \[1, 4\], got 5"):
        beam_search(params, cfg, src, beam_size=4, n_best=5)


def test_search_is_over():
    done = [Hypothesis([], -1.0, -1.0, True)] * 2  # two finished, each scoring -1
    assert not search_is_over(done[:1], -5.0, 2, 0.6, 20)  # fewer than k finished
    assert not search_is_over(done, -0.5, 2, 0.0, 20)  # alpha 0: -0.5 may still end as -0.5
    # alpha 0.6: log P -3 could still score -3 / lp(50) = -0.79 > -1 by growing to 50 tokens
    assert not search_is_over(done, -3.0, 2, 0.6, 50)
    assert search_is_over(done, -3.0, 2, 0.6, 5)  # but not when only 5 tokens are allowed
    assert search_is_over(done, -10.0, 2, 0.6, 50)


@pytest.mark.parametrize("alpha", [0.0, 0.6, 2.0])
def test_stopping_early_loses_nothing(be, tiny, monkeypatch, alpha):
    """Stopping when no live hypothesis can win gives the same n-best as searching to max_len."""
    cfg, params, src = tiny
    kw = dict(beam_size=3, alpha=alpha, max_len=25, n_best=3)
    steps = []

    def counting(*args, **kwargs):
        decoder = make_decoder(*args, **kwargs)
        step = decoder.step
        decoder.step = lambda tokens: (steps.append(len(tokens)), step(tokens))[1]
        return decoder

    monkeypatch.setattr(beam, "make_decoder", counting)
    early = beam_search(params, cfg, src, **kw)
    early_work = sum(steps)
    monkeypatch.setattr(beam, "search_is_over", lambda *args: False)
    steps.clear()
    late = beam_search(params, cfg, src, **kw)
    assert [[(h.tokens, round(h.score, 12)) for h in hyps] for hyps in early] == \
        [[(h.tokens, round(h.score, 12)) for h in hyps] for hyps in late]
    if alpha < 1:  # with alpha = 2 the bound is loose and this model never stops early
        assert early_work < sum(steps)


@pytest.mark.parametrize("be", ["cupysim"], indirect=True)
def test_a_beam_step_reads_the_host_once(be, tiny):
    """The k best scores and their ids come back together, once per step."""
    from npformer.cupysim import host_reads
    cfg, params, src = tiny
    src, n = be.to_host(src), 6
    with host_reads() as reads:
        out = beam_search(params, cfg, src, beam_size=3, max_len=n, min_len=n)
    assert all(len(o) == n for o in out)
    assert len(reads) == n, reads


def naive_bans(tokens, n):
    """The tokens that would complete an n-token run already in ``tokens``, by brute force."""
    return {tokens[i + n - 1] for i in range(len(tokens) - n + 1)
            if tokens[i:i + n - 1] == tokens[len(tokens) - n + 1:]} if len(tokens) >= n - 1 else set()


@given(st.lists(st.lists(st.integers(4, 7), min_size=0, max_size=12), min_size=1, max_size=4)
       .filter(lambda rows: len({len(r) for r in rows}) == 1), st.integers(1, 4))
def test_repeated_ngram_bans_match_brute_force(rows, n):
    prefixes = np.array(rows, dtype=np.int64).reshape(len(rows), -1)
    r, v = beam.repeated_ngram_bans(prefixes, n)
    got = [set(v[r == i].tolist()) for i in range(len(rows))]
    assert got == [naive_bans(row, n) for row in rows]


@pytest.mark.parametrize("n", [1, 2, 3])
def test_no_repeat_ngram_outputs_never_repeat_n_tokens(be, tiny, n):
    cfg, params, src = tiny
    for k in (1, 3):
        for out in beam_search(params, cfg, src, beam_size=k, max_len=16, min_len=8, no_repeat_ngram=n):
            grams = [tuple(out[i:i + n]) for i in range(len(out) - n + 1)]
            assert len(grams) == len(set(grams))
    free = beam_search(params, cfg, src, beam_size=3, max_len=16, min_len=8)
    assert beam_search(params, cfg, src, beam_size=3, max_len=16, min_len=8, no_repeat_ngram=0) == free
    assert any(len(set(zip(*(out[i:] for i in range(n))))) < len(out) - n + 1 for out in free)  # it bans something
