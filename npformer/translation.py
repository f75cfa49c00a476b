"""Translating sentences with a trained model and scoring them with sacreBLEU.

    translate(model, sentences, **DECODING)    text -> BPE ids -> beam search (or greedy) -> text
    score(hypotheses, references)              sacreBLEU BLEU and chrF, with their signatures
    evaluate_pairs(model, pairs)               translate the sources, score against the targets

sacreBLEU is an optional extra (``pip install npformer[eval]``): BLEU has many
variants (tokenisation, smoothing, casing) and only the reference
implementation's signature makes a figure comparable, so nothing hand-rolled
stands in for it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from npformer import checkpoint
from npformer.errors import UserError
from npformer.data.batching import pad_sequences
from npformer.data.bpe import BPETokenizer
from npformer.decode import beam_search, greedy_decode
from npformer.decode.shared import EXTRA_OUTPUT_LENGTH, output_length_rule
from npformer.model.config import TransformerConfig
from npformer.runtime.workers import as_workers


# The paper's decoding (§6.1): beam 4, length penalty 0.6, outputs of at most the
# input's length + 50 tokens, no n-gram ban.
PAPER_DECODING = dict(beam_size=4, alpha=0.6, max_len_a=1.0, max_len_b=EXTRA_OUTPUT_LENGTH, no_repeat_ngram=0)
# The default. Decoded the paper's way, a model of a few thousand steps repeats itself:
# about a quarter of the demo model's dev outputs repeat some run of 4 words, against 1
# in 26 of the references, and neither a wider beam, a stronger length penalty nor a
# tighter length rule changes that share much; only a ban on repeating 4 subword tokens
# removes the loops. With it, a length penalty of 1.0 and at most 1.2 x the source + 5
# tokens (99% of the bundled corpus' references are within 1.32 x) score best on the
# dev set (docs/tuning.md has the table).
DECODING = dict(beam_size=4, alpha=1.0, max_len_a=1.2, max_len_b=5, no_repeat_ngram=4)


@dataclass
class Translator:
    params: dict
    cfg: TransformerConfig
    tokenizer: BPETokenizer

    @classmethod
    def from_checkpoint(cls, path, backend=None, dtype=None) -> "Translator":
        """The model and vocabulary of a checkpoint that can translate text; one that
        cannot (no tokenizer, an invalid one, one of another size) is the user's
        file, so that is a ``UserError`` naming it, as for ``checkpoint.load``."""
        ckpt = checkpoint.load(path, backend=backend, dtype=dtype)
        if ckpt.tokenizer is None:
            raise UserError(f"checkpoint {path}: holds no tokenizer, so it cannot translate text; expected the "
                            "checkpoint of a translation run (a synthetic task's has none)")
        try:
            tokenizer = BPETokenizer.from_dict(ckpt.tokenizer)
        except (KeyError, TypeError, ValueError) as e:
            raise UserError(f"checkpoint {path}: invalid tokenizer ({e})") from None
        if tokenizer.vocab_size != ckpt.config.vocab_size or tokenizer.vocab_size != ckpt.config.target_vocab:
            raise UserError(f"checkpoint {path}: its tokenizer has {tokenizer.vocab_size} tokens but the model's "
                            f"vocabulary has {ckpt.config.vocab_size} (target {ckpt.config.target_vocab})")
        return cls(ckpt.params, ckpt.config, tokenizer)


def translate(model: Translator, sentences, beam_size: int = DECODING["beam_size"],
              alpha: float = DECODING["alpha"], batch_size: int = 32, workers=None,
              max_len_a: float = DECODING["max_len_a"], max_len_b: int = DECODING["max_len_b"],
              no_repeat_ngram: int = DECODING["no_repeat_ngram"]) -> list[str]:
    """Translate ``sentences`` (a list of str). ``beam_size=1`` decodes greedily.

    Sentences are decoded in batches of similar length (sorted, then put back
    in order); a source longer than the positional table is cut to fit. Each
    output has at most ``max_len_a`` * (its source's tokens) + ``max_len_b``
    tokens: 1.2 x + 5 by default (``DECODING``), the paper's input length + 50
    with ``**PAPER_DECODING``; a young model that repeats itself runs to that
    limit, so a tighter rule bounds the damage.
    ``workers`` (npformer/runtime/workers.py) decode several batches at once on CPU threads.
    ``no_repeat_ngram`` = n > 0 forbids any output to repeat n subword tokens
    (npformer/decode/beam.py): 4 by default, 0 (off) in the paper's decoding.
    """
    if beam_size < 1:
        raise ValueError(f"beam_size: expected an integer >= 1, got {beam_size}")
    if not (math.isfinite(max_len_a) and max_len_a >= 0) or isinstance(max_len_b, bool) \
            or not isinstance(max_len_b, int) or max_len_b < 0:
        raise ValueError(f"max_len_a, max_len_b: expected a number >= 0 and an integer >= 0, "
                         f"got {max_len_a!r}, {max_len_b!r}")
    sentences = list(sentences)
    ids = [model.tokenizer.encode(s)[:model.cfg.max_len] or [model.cfg.eos_id] for s in sentences]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    chunks = [order[start:start + batch_size] for start in range(0, len(order), batch_size)]

    def decode(chunk):
        src = pad_sequences([ids[i] for i in chunk], model.cfg.pad_id)  # host: checked, then sent
        # outputs may not outgrow the positional table either
        max_len = output_length_rule([len(ids[i]) for i in chunk], max_len_a, max_len_b, model.cfg.max_len)
        if beam_size == 1 and not no_repeat_ngram:  # greedy is a beam of 1; only the beam bans n-grams
            return greedy_decode(model.params, model.cfg, src, max_len=max_len)
        return beam_search(model.params, model.cfg, src, beam_size=beam_size, alpha=alpha, max_len=max_len,
                           no_repeat_ngram=no_repeat_ngram)

    out: list = [None] * len(ids)
    # Longest batches first, so that no worker is left with a long one at the end.
    chunks.reverse()
    for chunk, hyps in zip(chunks, as_workers(workers).map(decode, chunks)):
        for i, h in zip(chunk, hyps):
            out[i] = model.tokenizer.decode(h)
    return out


def scoring_available() -> bool:
    """Whether sacreBLEU (the ``eval`` extra) can be imported."""
    try:
        import sacrebleu  # noqa: F401
    except ImportError:
        return False
    return True


def repeat_share(texts, n: int = 4) -> float:
    """The share of ``texts`` in which some run of ``n`` words occurs twice or more:
    how often a decoder loops ("y la tierra, y la tierra, y la tierra"). Compare it
    with the references' own share, since a text may repeat itself on purpose."""
    def repeats(words):
        grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
        return len(set(grams)) < len(grams)
    texts = list(texts)
    return sum(repeats(t.split()) for t in texts) / len(texts) if texts else 0.0


def edit_distance(a, b) -> int:
    """Levenshtein distance between two token sequences: the fewest insertions,
    deletions and substitutions that turn ``a`` into ``b`` (one row of the table
    at a time)."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def token_error_rate(hypotheses, references) -> float:
    """Edit distance over whitespace tokens, summed over the corpus, per reference
    token: the word error rate of speech recognition and the phoneme error rate
    of grapheme-to-phoneme when each token is a word or a phoneme."""
    pairs = [(h.split(), r.split()) for h, r in zip(hypotheses, references)]
    ref_tokens = sum(len(r) for _, r in pairs)
    return sum(edit_distance(h, r) for h, r in pairs) / ref_tokens if ref_tokens else 0.0


def score(hypotheses, references) -> dict:
    """Corpus BLEU and chrF (sacreBLEU defaults) with their signatures, the length
    ratio (hypothesis words / reference words, as BLEU's brevity penalty sees it),
    the share of hypotheses and of references that repeat a 4-word run, the share
    of hypotheses equal to their reference (``exact_match``) and the
    ``token_error_rate`` (the figures of a symbol-level task such as spelling to
    pronunciation, where one wrong symbol makes the whole output wrong)."""
    try:
        import sacrebleu
    except ImportError as e:
        raise UserError("scoring needs sacreBLEU: pip install 'npformer[eval]'") from e
    bleu = sacrebleu.metrics.BLEU()
    chrf = sacrebleu.metrics.CHRF()
    b = bleu.corpus_score(list(hypotheses), [list(references)])
    c = chrf.corpus_score(list(hypotheses), [list(references)])
    return {"bleu": round(float(b.score), 2), "chrf": round(float(c.score), 2),
            "bleu_signature": str(bleu.get_signature()), "chrf_signature": str(chrf.get_signature()),
            "length_ratio": round(b.sys_len / b.ref_len, 3) if b.ref_len else None,
            "repeats": round(repeat_share(hypotheses), 4), "ref_repeats": round(repeat_share(references), 4),
            "exact_match": round(sum(h.split() == r.split() for h, r in zip(hypotheses, references))
                                 / len(references), 4) if references else None,
            "token_error_rate": round(token_error_rate(hypotheses, references), 4),
            "n_sentences": len(references)}


def evaluate_pairs(model: Translator, pairs, workers=None, **settings) -> tuple[dict, list[str]]:
    """Translate the sources of ``pairs`` and score against their targets; ``settings``
    are ``translate``'s keyword arguments (beam_size, alpha, max_len_a, ...)."""
    hyps = translate(model, [s for s, _ in pairs], workers=workers, **settings)
    return score(hyps, [t for _, t in pairs]), hyps
