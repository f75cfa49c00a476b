"""The four special tokens that every npformer vocabulary starts with, and their ids.

    0 <pad>   padding: masked out of attention and of the loss
    1 <s>     BOS: the decoder's first input
    2 </s>    EOS: ends an output
    3 <unk>   unknown: a fixed place in the vocabulary (byte-level BPE never emits it)

The tokenizer (data/bpe.py), the model config's defaults (model/config.py), the
synthetic tasks and the benchmarks' PyTorch reference all take them from here.
"""
PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)
