"""How long BPE learning and encoding take (pure Python, one core).

Learns ``--merges`` merges over both columns of the bundled English-Spanish
corpus (``npformer/data/bible_en_es.tsv.gz``, gzip TSV ``en<TAB>es``), or over
generated text when the corpus is missing or ``--synthetic`` is given, then
encodes every sentence with a fresh copy of the tokenizer (empty cache).

    python benchmarks/bpe_speed.py [--merges 8000] [--corpus PATH] [--json]

With ``--json`` the last line printed is one JSON object with the results.
"""
import argparse
import gzip
import json
import os
import platform
import random
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from npformer.data.bpe import BPETokenizer  # noqa: E402

DEFAULT_CORPUS = os.path.join(REPO, "npformer", "data", "bible_en_es.tsv.gz")


def read_corpus(path):
    """Both columns of a gzip TSV ``en<TAB>es`` file, as one list of lines."""
    texts = []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            cols = line.rstrip("\n").split("\t")
            if len(cols) >= 2:
                texts.extend(cols[:2])
    return texts


def synthetic_corpus(n_sentences=62_000, seed=0):
    """Bible-sized made-up text: 2 x ``n_sentences`` lines of Zipf-distributed
    words built from random syllables, with punctuation and accents."""
    rng = random.Random(seed)
    syll = [c + v for c in "bcdfghjlmnprstvz" for v in "aeiouáéó"]
    lexicon = ["".join(rng.choice(syll) for _ in range(rng.randint(1, 4)))
               for _ in range(30_000)]
    cum_weights, total = [], 0.0
    for rank in range(len(lexicon)):     # Zipf: weight 1 / (rank + 1)
        total += 1.0 / (rank + 1)
        cum_weights.append(total)
    texts = []
    for _ in range(2 * n_sentences):
        words = rng.choices(lexicon, cum_weights=cum_weights, k=rng.randint(5, 40))
        words[0] = words[0].capitalize()
        if rng.random() < 0.5:
            words[rng.randrange(len(words))] += ","
        texts.append(" ".join(words) + rng.choice(".;:?!"))
    return texts


class Timer:
    """Wall-clock and CPU seconds of a ``with`` block (CPU time is the fairer
    number on a busy machine: it does not count time spent waiting)."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--merges", type=int, default=8000)
    ap.add_argument("--min-frequency", type=int, default=2)
    ap.add_argument("--corpus", default=DEFAULT_CORPUS)
    ap.add_argument("--synthetic", action="store_true",
                    help="use generated text even if the corpus exists")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    if not args.synthetic and os.path.exists(args.corpus):
        texts, source = read_corpus(args.corpus), os.path.relpath(args.corpus, REPO)
    else:
        texts, source = synthetic_corpus(), "synthetic"
    n_words = sum(len(t.split()) for t in texts)
    print(f"corpus: {source}: {len(texts)} lines, {n_words} words")

    with Timer() as learn:
        tok = BPETokenizer.learn(texts, num_merges=args.merges,
                                 min_frequency=args.min_frequency)
    print(f"learn: {len(tok.merges)} merges in {learn.wall:.2f} s "
          f"({learn.cpu:.2f} s CPU), vocab_size {tok.vocab_size}")

    fresh = BPETokenizer.from_dict(tok.to_dict())  # empty encode cache
    with Timer() as encode:
        encoded = fresh.encode_batch(texts)
    n_tokens = sum(map(len, encoded))
    print(f"encode: {len(texts)} lines in {encode.wall:.2f} s "
          f"({encode.cpu:.2f} s CPU; {len(texts) / encode.wall:,.0f} lines/s), "
          f"{n_tokens} tokens, {n_tokens / n_words:.2f} tokens/word")

    with Timer() as decode:
        for ids in encoded:
            fresh.decode(ids)
    print(f"decode: {len(texts)} lines in {decode.wall:.2f} s "
          f"({decode.cpu:.2f} s CPU)")

    if args.json:
        print(json.dumps({
            "benchmark": "bpe_speed", "corpus": source, "lines": len(texts),
            "words": n_words, "merges": len(tok.merges),
            "vocab_size": tok.vocab_size,
            "learn_s": round(learn.wall, 3), "learn_cpu_s": round(learn.cpu, 3),
            "encode_s": round(encode.wall, 3), "encode_cpu_s": round(encode.cpu, 3),
            "decode_s": round(decode.wall, 3), "decode_cpu_s": round(decode.cpu, 3),
            "tokens": n_tokens, "python": platform.python_version(),
        }))


if __name__ == "__main__":
    main()
