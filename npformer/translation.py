"""Translating sentences with a trained model and scoring them with sacreBLEU.

    translate(model, sentences, beam_size=4)   text -> BPE ids -> beam search (or greedy) -> text
    score(hypotheses, references)              sacreBLEU BLEU and chrF, with their signatures

sacreBLEU is an optional extra (``pip install npformer[eval]``): BLEU has many
variants (tokenisation, smoothing, casing) and only the reference
implementation's signature makes a figure comparable, so nothing hand-rolled
stands in for it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from npformer import checkpoint
from npformer.data.batching import pad_sequences
from npformer.data.bpe import BPETokenizer
from npformer.decode import beam_search, greedy_decode
from npformer.decode.search import EXTRA_OUTPUT_LENGTH, output_length_limits
from npformer.model.config import TransformerConfig
from npformer.train.parallel import as_workers


@dataclass
class Translator:
    params: dict
    cfg: TransformerConfig
    tokenizer: BPETokenizer

    @classmethod
    def from_checkpoint(cls, path, backend=None, dtype=None) -> "Translator":
        ckpt = checkpoint.load(path, backend=backend, dtype=dtype)
        if ckpt.tokenizer is None:
            raise ValueError(f"checkpoint {path}: holds no tokenizer, so it cannot translate text")
        try:
            tokenizer = BPETokenizer.from_dict(ckpt.tokenizer)
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"checkpoint {path}: invalid tokenizer ({e})") from None
        if tokenizer.vocab_size != ckpt.config.vocab_size or tokenizer.vocab_size != ckpt.config.target_vocab:
            raise ValueError(f"checkpoint {path}: its tokenizer has {tokenizer.vocab_size} tokens but the model's "
                             f"vocabulary has {ckpt.config.vocab_size} (target {ckpt.config.target_vocab})")
        return cls(ckpt.params, ckpt.config, tokenizer)


def translate(model: Translator, sentences, beam_size: int = 4, alpha: float = 0.6,
              batch_size: int = 32, max_src_len: int | None = None, workers=None,
              max_len_a: float = 1.0, max_len_b: int = EXTRA_OUTPUT_LENGTH) -> list[str]:
    """Translate ``sentences`` (a list of str). ``beam_size=1`` decodes greedily.

    Sentences are decoded in batches of similar length (sorted, then put back
    in order); a source longer than the positional table is cut to fit. Each
    output has at most ``max_len_a`` * (its source's tokens) + ``max_len_b``
    tokens: the paper's input length + 50 by default; a young model that
    repeats itself runs to that limit, so a tighter rule bounds the damage.
    ``workers`` (train/parallel.py) decode several batches at once on CPU threads.
    """
    if beam_size < 1:
        raise ValueError(f"beam_size: expected an integer >= 1, got {beam_size}")
    if not (math.isfinite(max_len_a) and max_len_a >= 0) or isinstance(max_len_b, bool) \
            or not isinstance(max_len_b, int) or max_len_b < 0:
        raise ValueError(f"max_len_a, max_len_b: expected a number >= 0 and an integer >= 0, "
                         f"got {max_len_a!r}, {max_len_b!r}")
    sentences = list(sentences)
    limit = max_src_len or model.cfg.max_len
    ids = [model.tokenizer.encode(s)[:limit] or [model.cfg.eos_id] for s in sentences]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    chunks = [order[start:start + batch_size] for start in range(0, len(order), batch_size)]

    def decode(chunk):
        src = pad_sequences([ids[i] for i in chunk], model.cfg.pad_id)  # host: checked, then sent
        # outputs may not outgrow the positional table either
        max_len = output_length_limits([len(ids[i]) for i in chunk], max_len_a, max_len_b, model.cfg.max_len)
        if beam_size == 1:
            return greedy_decode(model.params, model.cfg, src, max_len=max_len)
        return beam_search(model.params, model.cfg, src, beam_size=beam_size, alpha=alpha, max_len=max_len)

    out: list = [None] * len(ids)
    # Longest batches first, so that no worker is left with a long one at the end.
    chunks.reverse()
    for chunk, hyps in zip(chunks, as_workers(workers).map(decode, chunks)):
        for i, h in zip(chunk, hyps):
            out[i] = model.tokenizer.decode(h)
    return out


def score(hypotheses, references) -> dict:
    """Corpus BLEU and chrF (sacreBLEU defaults) with their signatures."""
    try:
        import sacrebleu
    except ImportError as e:
        raise RuntimeError("scoring needs sacreBLEU: pip install 'npformer[eval]'") from e
    bleu = sacrebleu.metrics.BLEU()
    chrf = sacrebleu.metrics.CHRF()
    b = bleu.corpus_score(list(hypotheses), [list(references)])
    c = chrf.corpus_score(list(hypotheses), [list(references)])
    return {"bleu": round(float(b.score), 2), "chrf": round(float(c.score), 2),
            "bleu_signature": str(bleu.get_signature()), "chrf_signature": str(chrf.get_signature()),
            "n_sentences": len(references)}


def evaluate_pairs(model: Translator, pairs, workers=None, **settings) -> tuple[dict, list[str]]:
    """Translate the sources of ``pairs`` and score against their targets; ``settings``
    are ``translate``'s keyword arguments (beam_size, alpha, max_len_a, ...)."""
    hyps = translate(model, [s for s, _ in pairs], workers=workers, **settings)
    return score(hyps, [t for _, t in pairs]), hyps
