"""Aligning two Bibles verse by verse by content, where their numbering disagrees.

Both modules claim KJV numbering, but the RV1909 source follows the Hebrew
chapter/verse division in a few places (Num 13 and 30, 1 Sam 24, 1 Chr 21,
2 Chr 33, Job 38-41, Hos 12, Jonah 2, ...).  osis2mod then fills a
KJV-numbered index with text that is one or more verses off, empty slots
where the Spanish chapter is shorter, and several verses run together where
it is longer.  Pairing purely by reference would put ~250 wrong pairs in the
corpus, so each book is aligned a second time, by content:

1. A small word-translation lexicon is learnt from the reference pairs
   themselves (Dice association of English and Spanish word types over
   verses; ~99% of reference pairs are right, enough to learn from).
2. A pair's lexical score is the share of its lexicon words whose
   translation is on the other side; a dynamic programme over the book's
   verse sequences (1-1, 1-0, 0-1, 2-1 and 1-2 steps, Gale-Church length
   cost plus the lexical score) finds the best monotone alignment.
3. Kept: 1-1 steps that pair the same reference (both methods agree), and
   1-1 steps that pair different references when they form a run of such
   steps (a shifted chapter) or score well on their own.  Everything else
   (verses merged or split differently, doubtful pairs) is dropped.
"""
from __future__ import annotations

import collections
import math
import re

WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")


def _types(text: str) -> frozenset:
    return frozenset(w.lower() for w in WORD.findall(text))


def learn_lexicon(pairs, min_count=3, max_df=0.04, min_dice=0.15, topk=3):
    """Word associations {en: {es,...}}, {es: {en,...}} from parallel verses."""
    n = len(pairs)
    E = [_types(e) for e, _ in pairs]
    S = [_types(s) for _, s in pairs]
    ce = collections.Counter(w for x in E for w in x)
    cs = collections.Counter(w for x in S for w in x)
    ok_e = {w for w, c in ce.items() if min_count <= c <= max_df * n}
    ok_s = {w for w, c in cs.items() if min_count <= c <= max_df * n}
    co = collections.Counter()
    for e, s in zip(E, S):
        ss = [w for w in s if w in ok_s]
        for a in e:
            if a in ok_e:
                for b in ss:
                    co[a, b] += 1
    fwd = collections.defaultdict(list)
    bwd = collections.defaultdict(list)
    for (a, b), c in co.items():
        if c >= 2:
            d = 2 * c / (ce[a] + cs[b])
            if d >= min_dice:
                fwd[a].append((d, b))
                bwd[b].append((d, a))
    fwd = {a: {b for _, b in sorted(v, reverse=True)[:topk]} for a, v in fwd.items()}
    bwd = {b: {a for _, a in sorted(v, reverse=True)[:topk]} for b, v in bwd.items()}
    return fwd, bwd


def lexical_score(E: frozenset, S: frozenset, lex) -> float | None:
    fwd, bwd = lex
    ke = [w for w in E if w in fwd]
    ks = [w for w in S if w in bwd]
    if not ke and not ks:
        return None
    hits = sum(1 for w in ke if fwd[w] & S) + sum(1 for w in ks if bwd[w] & E)
    return hits / (len(ke) + len(ks))


def _norm_sf(z: float) -> float:
    """Two-sided tail probability of a standard normal."""
    return math.erfc(abs(z) / math.sqrt(2))


def align_book(en_refs, es_refs, en_text, es_text, lexicon, length_ratio, length_variance,
               band=15, skip=4.0, merge=3.0, alpha=0.5):
    """Monotone alignment of one book's English verses ``en_refs`` and Spanish verses ``es_refs``.

    ``en_text`` / ``es_text`` map a reference to its verse text; ``lexicon`` is
    ``learn_lexicon``'s; ``length_ratio`` and ``length_variance`` are the
    Gale-Church parameters (Spanish characters per English character, and the
    variance of that per character). A dynamic programme over (English verses
    used, Spanish verses used) finds the cheapest path of 1-1, 1-0, 0-1, 2-1 and
    1-2 steps, searching only within ``band`` verses of the diagonal. A 1-0 or
    0-1 step (a verse left out) costs ``skip``, a 2-1 or 1-2 step (two verses
    against one) ``merge`` extra; every pairing costs its length cost (times
    ``alpha``) minus its lexical evidence.

    Returns beads: (list of English refs, list of Spanish refs), in order.
    """
    en_words = [_types(en_text[r]) for r in en_refs]
    es_words = [_types(es_text[r]) for r in es_refs]
    en_lengths = [len(en_text[r]) for r in en_refs]
    es_lengths = [len(es_text[r]) for r in es_refs]

    def evidence(en_types, es_types):  # log-likelihood ratio, right vs wrong pair (fit on this data)
        score = lexical_score(en_types, es_types, lexicon)
        return 0.0 if score is None else max(-5.0, min(5.0, 13.0 * score - 5.0))

    def length_cost(en_len, es_len):  # Gale & Church (1993)
        z = (length_ratio * en_len - es_len) / math.sqrt(length_variance * max((en_len + es_len / length_ratio) / 2,
                                                                               1.0))
        return -math.log(max(_norm_sf(z), 1e-300))

    n_en, n_es = len(en_refs), len(es_refs)
    cost = {(0, 0): 0.0}  # (i, j) -> cheapest cost of aligning the first i English and j Spanish verses
    step_into = {}        # (i, j) -> the step (di, dj) of that cheapest path that ends at (i, j)
    for i in range(n_en + 1):
        diagonal = round(i * n_es / max(n_en, 1))
        for j in range(max(0, diagonal - band), min(n_es, diagonal + band) + 1):
            if i == 0 and j == 0:
                continue
            best, step = math.inf, None
            if i and j and (i - 1, j - 1) in cost:  # 1-1
                best = cost[i - 1, j - 1] - evidence(en_words[i - 1], es_words[j - 1]) \
                    + alpha * length_cost(en_lengths[i - 1], es_lengths[j - 1])
                step = (1, 1)
            if i and (i - 1, j) in cost and cost[i - 1, j] + skip < best:  # 1-0
                best, step = cost[i - 1, j] + skip, (1, 0)
            if j and (i, j - 1) in cost and cost[i, j - 1] + skip < best:  # 0-1
                best, step = cost[i, j - 1] + skip, (0, 1)
            if i >= 2 and j and (i - 2, j - 1) in cost:  # 2-1
                candidate = cost[i - 2, j - 1] + merge \
                    - evidence(en_words[i - 2] | en_words[i - 1], es_words[j - 1]) \
                    + alpha * length_cost(en_lengths[i - 2] + en_lengths[i - 1], es_lengths[j - 1])
                if candidate < best:
                    best, step = candidate, (2, 1)
            if i and j >= 2 and (i - 1, j - 2) in cost:  # 1-2
                candidate = cost[i - 1, j - 2] + merge \
                    - evidence(en_words[i - 1], es_words[j - 2] | es_words[j - 1]) \
                    + alpha * length_cost(en_lengths[i - 1], es_lengths[j - 2] + es_lengths[j - 1])
                if candidate < best:
                    best, step = candidate, (1, 2)
            if step is not None:
                cost[i, j] = best
                step_into[i, j] = step
    if (n_en, n_es) not in cost:
        raise RuntimeError("alignment band too narrow")
    beads = []
    i, j = n_en, n_es
    while (i, j) != (0, 0):
        di, dj = step_into[i, j]
        beads.append((en_refs[i - di:i], es_refs[j - dj:j]))
        i, j = i - di, j - dj
    return beads[::-1]


def checked_alignment(en: dict, es: dict, order, log, good_score=0.5):
    """Return [(en_ref, es_ref)] pairs in English canonical order (see above)."""
    ref_pairs = [r for r in order if r in en and r in es]
    lex = learn_lexicon([(en[r], es[r]) for r in ref_pairs])
    # Gale-Church parameters: length ratio and variance per character
    length_ratio = sum(len(es[r]) for r in ref_pairs) / sum(len(en[r]) for r in ref_pairs)
    squares = sorted((len(es[r]) - length_ratio * len(en[r])) ** 2 / len(en[r]) for r in ref_pairs)
    length_variance = squares[len(squares) // 2] / 0.455          # median of chi-square(1) is 0.455
    books = []
    for r in order:
        if not books or books[-1] != r[0]:
            books.append(r[0])
    pairs = []
    stats = collections.Counter()
    for book in books:
        er = [r for r in order if r[0] == book and r in en]
        sr = [r for r in order if r[0] == book and r in es]
        beads = align_book(er, sr, en, es, lex, length_ratio, length_variance)
        one = [len(a) == 1 and len(b) == 1 for a, b in beads]
        cross = [o and a[0] != b[0] for o, (a, b) in zip(one, beads)]
        for k, (a, b) in enumerate(beads):
            if not one[k]:
                stats["dropped (merged/unmatched)"] += len(a)
                continue
            if not cross[k]:
                pairs.append((a[0], b[0]))
                stats["kept, same reference"] += 1
                continue
            in_run = (k > 0 and cross[k - 1]) or (k + 1 < len(beads) and cross[k + 1])
            sc = lexical_score(_types(en[a[0]]), _types(es[b[0]]), lex) or 0.0
            if in_run or sc >= good_score:
                pairs.append((a[0], b[0]))
                stats["kept, re-paired across references"] += 1
            else:
                stats["dropped (isolated doubtful re-pairing)"] += 1
    log("checked alignment: " + ", ".join(f"{k}: {v}" for k, v in stats.items()))
    moved = collections.Counter(f"{a[0]} {a[1]}" for a, b in pairs if a != b)
    if moved:
        log("re-paired chapters: " + ", ".join(f"{k} ({v})" for k, v in moved.items()))
    return pairs
