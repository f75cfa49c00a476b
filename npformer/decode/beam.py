"""Beam search with the length penalty of Wu et al. (2016). Paper §6.1: beam size 4, alpha = 0.6.

Each sentence keeps up to k live hypotheses (partial outputs Y with log P(Y)).
One step extends every live hypothesis by every token:
    candidate score  log P(Y v) = log P(Y) + log p(v | Y, x)       (k x V candidates)
and keeps the k best candidates. Those that end in EOS leave the beam as
finished hypotheses, ranked by the length-normalised score
    score(Y) = log P(Y) / lp(Y),      lp(Y) = ((5 + |Y|) / 6)^alpha
with |Y| the number of generated tokens, EOS included (as in tensor2tensor).
The others stay live; the next step chooses k candidates again from them, so
the beam is back to k whenever there are candidates. With k = 1 every step
keeps the argmax token only, and the search is exactly greedy decoding.
A hypothesis that reaches the sentence's maximum output length is finished
without EOS (and scored with |Y| = that length).

A sentence is done when it has no live hypothesis left, or when it has k
finished hypotheses and no live one can still beat the k-th: log P only falls
as Y grows and lp(Y) <= lp(max_len), so for alpha >= 0 a live hypothesis can
at best reach log P(Y) / lp(max_len). Done sentences leave the batch.

Optionally (``no_repeat_ngram`` = n > 0; off here, as in the paper, and on in translation.DECODING) a
hypothesis may not repeat any run of n tokens it already holds: a token that
would complete such a run gets log p = -inf before the k best are chosen. This
is a decoding heuristic, not part of the model: it hides a young model's loops
("y la tierra, y la tierra, ...") but also forbids the repetitions a real text
makes, so it is measured on the dev set before it is used (docs/tuning.md).

Batched over sentences: the decoder runs on B * k rows, row b*k + j holding
hypothesis j of sentence b, and ``reorder`` gathers each row's parent cache
after every step. The search bookkeeping (top-k per sentence, finished lists)
happens on the host; the log-probabilities and the top-k run on the device.
"""
from __future__ import annotations

import numbers
from typing import NamedTuple

import numpy as np

from npformer.decode.shared import validate_int, validate_src, make_decoder, next_log_probs, output_limits


class Hypothesis(NamedTuple):
    tokens: list      # output ids, without BOS and EOS
    score: float      # log P(Y) / lp(|Y|)
    log_prob: float   # log P(Y): the sum of every generated token's log-probability, EOS included
    ended: bool       # True if it emitted EOS, False if cut at the maximum output length


def length_penalty(length, alpha):
    """lp(Y) = ((5 + |Y|) / 6)^alpha  (Wu et al. 2016, Eq. 14); lp = 1 for |Y| = 1 or alpha = 0."""
    return ((5.0 + length) / 6.0) ** alpha


def search_is_over(finished, best_live, k, alpha, limit):
    """True when the k best of ``finished`` (sorted, best first) cannot be beaten by a live
    hypothesis whose log P is at most ``best_live``: for alpha >= 0 the best it can reach
    is best_live / lp(limit), as log P only falls and lp only grows up to the limit."""
    return len(finished) >= k and finished[k - 1].score >= best_live / length_penalty(limit, alpha)


def _select(top, top_scores, prefixes, t, limit, V, eos_id, alpha):
    """Sort one sentence's k best candidates of step t into live and finished hypotheses.

    top (k,) flat candidate ids j * V + v (extend beam j by token v), top_scores (k,) their
    log P, prefixes (k, t) the beams' tokens. Returns ``(live, finished)``: live a list of
    (j, v, log P), best first; finished a list of Hypothesis (EOS, or the limit reached).
    """
    live, finished = [], []
    for c in np.argsort(-top_scores, kind="stable"):
        s = float(top_scores[c])
        if s == -np.inf:
            break  # fewer than k candidates (only at the first steps of a tiny vocabulary)
        j, v = divmod(int(top[c]), V)
        if v == eos_id:
            finished.append(Hypothesis(prefixes[j].tolist(), s / length_penalty(t + 1, alpha), s, True))
        elif t + 1 == limit:
            finished.append(Hypothesis(prefixes[j].tolist() + [v], s / length_penalty(t + 1, alpha), s, False))
        else:
            live.append((j, v, s))
    return live, finished


def repeated_ngram_bans(prefixes, n):
    """The tokens that would complete a run of ``n`` tokens already in a hypothesis.

    prefixes (R, t) host ids. Returns ``(rows, tokens)``: hypothesis r may not take
    token v next for every pair (r, v). The last n - 1 tokens of a hypothesis are
    compared with every earlier window of n - 1 tokens; where they match, the
    token that followed that window is banned.
    """
    R, t = prefixes.shape
    if n < 1 or t < n - 1:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if n == 1:  # no token may come twice
        return np.repeat(np.arange(R), t), prefixes.ravel()
    windows = np.lib.stride_tricks.sliding_window_view(prefixes, n - 1, axis=1)  # (R, t - n + 2, n - 1)
    hit = (windows[:, :-1] == windows[:, -1:]).all(axis=2)  # (R, t - n + 1): earlier windows equal to the last
    rows, at = np.nonzero(hit)
    return rows, prefixes[rows, at + n - 1]


def beam_search(params, cfg, src, beam_size=4, alpha=0.6, max_len=None, min_len=0, n_best=None,
                use_cache=True, no_repeat_ngram=0):
    """The best hypothesis for each sentence of src (B, S): a list of B token-id lists.

    With ``n_best`` = n, instead a list of B lists of the n best ``Hypothesis`` (best first;
    fewer if fewer finished). max_len, min_len and use_cache are as in ``greedy_decode``.
    ``no_repeat_ngram`` = n > 0 forbids repeating any n tokens (see the module docstring).
    """
    be, src_on_device = validate_src(params, cfg, src)
    k = validate_int(beam_size, "beam_size", 1)
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0.0 <= alpha < float("inf"):
        raise ValueError(f"alpha: expected a finite number >= 0 (the paper uses 0.6), got {alpha!r}")
    alpha = float(alpha)
    limits = output_limits(cfg, src, max_len)  # (B,) host; from a host src, no read
    src = src_on_device
    min_len = validate_int(min_len, "min_len", 0)
    no_repeat_ngram = validate_int(no_repeat_ngram, "no_repeat_ngram", 0)
    if n_best is not None:
        n_best = validate_int(n_best, "n_best", 1, k)
    xp, B, V = be.xp, src.shape[0], cfg.target_vocab
    decoder = make_decoder(params, cfg, src, int(limits.max()), use_cache, copies=k)

    active = np.arange(B)  # sentences still searching; decoder rows are active x k
    scores = np.full((B, k), -np.inf)  # (A, k) log P of each live hypothesis; -inf = empty slot
    scores[:, 0] = 0.0  # one start hypothesis (BOS) per sentence
    prefixes = np.zeros((B, k, 0), dtype=np.int64)  # (A, k, t) tokens of each live hypothesis
    tokens = np.full(B * k, cfg.bos_id, dtype=np.int64)  # (A*k,) next decoder input
    finished = [[] for _ in range(B)]
    for t in range(int(limits.max())):
        A = len(active)
        logp = next_log_probs(decoder.step(be.asarray(tokens)), cfg, t, min_len)  # (A*k, V)
        if no_repeat_ngram:
            rows, banned = repeated_ngram_bans(prefixes.reshape(A * k, t), no_repeat_ngram)
            if len(rows):
                logp[be.asarray(rows), be.asarray(banned)] = -np.inf
        cand = (be.asarray(scores.reshape(A * k, 1), dtype=logp.dtype) + logp).reshape(A, k * V)
        top = xp.argpartition(-cand, k - 1, axis=1)[:, :k]  # (A, k): the k best, unordered
        # scores and ids come back in one read (ids < A k V are exact in float64)
        picked = be.to_host(xp.concatenate([xp.take_along_axis(cand, top, axis=1).astype(xp.float64),
                                            top.astype(xp.float64)], axis=1))  # (A, 2k)
        top_scores, top = picked[:, :k], picked[:, k:].astype(np.int64)  # (A, k), (A, k)

        parent = np.zeros((A, k), dtype=np.int64)  # (A, k) beam each new live hypothesis extends
        new_tok = np.full((A, k), cfg.eos_id, dtype=np.int64)  # empty slots feed EOS (ignored)
        new_scores = np.full((A, k), -np.inf)  # (A, k)
        still = np.zeros(A, dtype=bool)
        for a, b in enumerate(active):
            live, ended = _select(top[a], top_scores[a], prefixes[a], t, limits[b], V, cfg.eos_id, alpha)
            finished[b] = sorted(finished[b] + ended, key=lambda hyp: -hyp.score)
            for slot, (j, v, s) in enumerate(live):
                parent[a, slot], new_tok[a, slot], new_scores[a, slot] = j, v, s
            still[a] = bool(live) and not search_is_over(finished[b], live[0][2], k, alpha, limits[b])
        if not still.any():
            break
        rows = (np.arange(A)[:, None] * k + parent)[still].ravel()  # (A'*k,) parent decoder rows
        decoder.reorder(rows)
        prefixes = np.concatenate([np.take_along_axis(prefixes, parent[:, :, None], axis=1),
                                   new_tok[:, :, None]], axis=2)[still]  # (A', k, t+1)
        active, scores, tokens = active[still], new_scores[still], new_tok[still].ravel()
    if n_best is not None:
        return [hyps[:n_best] for hyps in finished]
    return [hyps[0].tokens for hyps in finished]
