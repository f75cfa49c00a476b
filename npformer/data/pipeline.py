"""From a TSV corpus to training batches: split, learn BPE, encode, batch.

    pairs  --split-->  train / dev / test          (data/corpus.py, fixed seed)
    train  --learn-->  one shared BPE vocabulary   (data/bpe.py; §5.1: shared source-target)
    text   --encode--> ids                         (never dev/test for learning)
    ids    --batch-->  Batch(src, tgt_in, tgt_out) (data/batching.py, by length and token count)

``batch_schedule`` turns the training ids into a pure function ``step -> Batch``:
epoch e = (step - 1) // n_batches uses batches cut once and shuffled with the
seed ``seed * 100003 + e`` (a prime stride, so that the epochs of nearby run
seeds do not share shuffles), so the batch of any step can be recomputed after
a resume. ``eval_batches`` gives the unshuffled batches of a held-out split;
the dev-set evaluation itself is ``npformer.run.DevEvaluation``.
"""
from __future__ import annotations

from dataclasses import dataclass

from npformer.data.batching import Batch, filter_by_length, make_batches
from npformer.data.bpe import BPETokenizer
from npformer.data.corpus import load_corpus
from npformer.errors import UserError


@dataclass
class TranslationData:
    splits: dict        # "train"/"dev"/"test" -> list of (source, target) strings
    tokenizer: BPETokenizer
    ids: dict           # "train"/"dev"/"test" -> (source id lists, target id lists)


def prepare(path=None, num_merges: int = 8000, tokenizer: BPETokenizer | None = None,
            splits_wanted=("train", "dev", "test")) -> TranslationData:
    """Load a corpus (default: the bundled Bible EN->ES), learn or reuse BPE, encode."""
    if num_merges < 0:
        raise ValueError(f"num_merges: expected a non-negative integer, got {num_merges}")
    splits = load_corpus(path)
    if tokenizer is None:
        train = splits["train"]
        tokenizer = BPETokenizer.learn([s for s, _ in train] + [t for _, t in train], num_merges=num_merges)
    ids = {}
    for name in splits_wanted:
        pairs = splits[name]
        ids[name] = (tokenizer.encode_batch([s for s, _ in pairs]), tokenizer.encode_batch([t for _, t in pairs]))
    return TranslationData(splits, tokenizer, ids)


def batch_schedule(src_ids, tgt_ids, max_tokens: int, seed: int = 0, max_len: int | None = None):
    """A pure function ``step -> Batch`` (step counts from 1) cycling over shuffled epochs."""
    if max_len is not None:
        src_ids, tgt_ids, _ = filter_by_length(src_ids, tgt_ids, max_len)
    if not src_ids:  # the user's corpus and --max-len leave nothing to train on
        raise UserError(f"training data: no sentence pair fits max_len={max_len} subword tokens (--max-len); "
                        "expected some pair at most that long: give a larger --max-len")
    epochs: dict = {}
    n_batches = len(make_batches(src_ids, tgt_ids, max_tokens))

    def batches(step: int) -> Batch:
        epoch, i = divmod(step - 1, n_batches)
        if epoch not in epochs:
            epochs.clear()  # keep one epoch in memory
            epochs[epoch] = make_batches(src_ids, tgt_ids, max_tokens, shuffle_seed=seed * 100003 + epoch)
        return epochs[epoch][i]

    batches.n_batches = n_batches
    return batches


def eval_batches(src_ids, tgt_ids, max_tokens: int, max_len: int | None = None) -> list:
    """Unshuffled batches for dev/test loss."""
    if max_len is not None:
        src_ids, tgt_ids, _ = filter_by_length(src_ids, tgt_ids, max_len)
    return make_batches(src_ids, tgt_ids, max_tokens)
