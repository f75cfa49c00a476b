"""The data: from a corpus of sentence pairs to batches of token ids.

    corpus.py     reading and checking a TSV of source<TAB>target pairs; the fixed split
    bpe.py        byte-level BPE with one vocabulary shared by both sides (§5.1)
    batching.py   batches by length under a token budget (§5.1: about 25,000 tokens)
    pipeline.py   split, learn BPE, encode, batch: the steps in order
    bible_en_es.tsv.gz, CORPUS.md   the bundled English-Spanish corpus and where it comes from
"""
