"""What the training tests share: a batch of sentences of different lengths."""
import numpy as np
import pytest

from npformer.verify.model_cases import TINY


def make_padded_batch(B=5, S=7, T=6, V=TINY.vocab_size, seed=0):
    """(src, tgt_in, tgt_out) host arrays of B sentences of random lengths, padded with
    TINY.pad_id = 0 at the end."""
    rng = np.random.default_rng(seed)
    src, tgt_in, tgt_out = (np.zeros((B, n), dtype=np.int64) for n in (S, T, T))
    for b in range(B):
        s, t = rng.integers(1, S + 1), rng.integers(1, T + 1)
        src[b, :s] = rng.integers(1, V, s)
        tgt_in[b, :t] = rng.integers(1, V, t)
        tgt_out[b, :t] = rng.integers(1, V, t)
    return src, tgt_in, tgt_out


@pytest.fixture(scope="session")
def padded_batch():
    """``padded_batch(B=5, S=7, T=6, V, seed=0)``: see ``make_padded_batch``."""
    return make_padded_batch
