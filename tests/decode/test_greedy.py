"""Greedy decoding (npformer/decode/greedy.py): cached vs uncached, stopping rules, batching, input checks."""
import numpy as np
import pytest

from npformer.decode import beam_search, greedy_decode
from npformer.decode.shared import next_log_probs
from npformer.model.transformer import transformer_forward

TOL = 1e-10


def test_cached_equals_uncached(be, tiny):
    """The same outputs, and the same logits at every step of every sentence."""
    cfg, params, src = tiny
    out_c, logits_c = greedy_decode(params, cfg, src, max_len=20, return_logits=True)
    out_u, logits_u = greedy_decode(params, cfg, src, max_len=20, use_cache=False, return_logits=True)
    assert out_c == out_u
    lengths = {len(o) for o in out_c}
    assert len(lengths) >= 3 and 0 < min(lengths - {0}) and max(lengths) == 20  # sentences stop at different steps
    for out, a, b in zip(out_c, logits_c, logits_u):
        assert a.shape == b.shape == (min(len(out) + 1, 20), cfg.vocab_size)
        assert np.abs(a - b).max() <= TOL


def test_each_token_is_the_argmax(be, tiny):
    """Re-scoring each output with the full model: every token is the argmax over the allowed
    tokens (PAD and BOS excluded), and the step after a short output is EOS."""
    cfg, params, src = tiny
    outputs = greedy_decode(params, cfg, src, max_len=20)
    for b, out in enumerate(outputs):
        tgt_in = be.asarray(np.array([[cfg.bos_id] + out]))
        logits, _ = transformer_forward(params, cfg, src[b:b + 1], tgt_in)  # (1, n+1, V)
        best = be.to_host(next_log_probs(logits[0], cfg, 0).argmax(axis=-1))  # (n+1,)
        assert best[:len(out)].tolist() == out
        if len(out) < 20:
            assert best[len(out)] == cfg.eos_id


def test_batch_equals_one_by_one(be, tiny):
    """Padding inside a batch does not change a sentence's output (nor its default length limit)."""
    cfg, params, src = tiny
    batch = greedy_decode(params, cfg, src)
    lengths = be.to_host((src != cfg.pad_id).sum(axis=1))
    for b, n in enumerate(lengths):
        assert greedy_decode(params, cfg, src[b:b + 1, :n]) == [batch[b]]


def test_outputs_are_clean(be, tiny):
    cfg, params, src = tiny
    for out in greedy_decode(params, cfg, src, max_len=12):
        assert len(out) <= 12
        assert not {cfg.pad_id, cfg.bos_id, cfg.eos_id} & set(out)
        assert all(0 <= v < cfg.vocab_size for v in out)


def test_default_max_len_is_source_length_plus_50(be, tiny):
    """§6.1: non-pad source length + 50, capped at the positional table; min_len forbids EOS."""
    cfg, params, src = tiny
    lengths = be.to_host((src != cfg.pad_id).sum(axis=1))
    outputs = greedy_decode(params, cfg, src, min_len=1000)
    assert [len(o) for o in outputs] == [min(n + 50, cfg.max_len) for n in lengths]
    short = cfg.replace(max_len=20)
    assert {len(o) for o in greedy_decode(params, short, src, min_len=1000)} == {20}


@pytest.mark.parametrize("search", ["greedy", "beam"])
def test_one_max_len_per_sentence(be, tiny, search):
    """A sequence of B limits gives each sentence its own; a wrong count or value is named."""
    cfg, params, src = tiny
    limits = [3 + 2 * b for b in range(src.shape[0])]
    decode = greedy_decode if search == "greedy" else (lambda *a, **k: beam_search(*a, beam_size=2, **k))
    outputs = decode(params, cfg, src, max_len=limits, min_len=1000)
    assert [len(o) for o in outputs] == limits
    with pytest.raises(ValueError, match=r"max_len: expected one limit per sentence"):
        decode(params, cfg, src, max_len=limits[:-1])
    with pytest.raises(ValueError, match=r"max_len\[0\]: expected an integer in \[1, "):
        decode(params, cfg, src, max_len=[0] + limits[1:])


def test_min_len(be, tiny):
    cfg, params, src = tiny
    free = greedy_decode(params, cfg, src, max_len=20)
    forced = greedy_decode(params, cfg, src, max_len=20, min_len=5)
    for a, b in zip(free, forced):
        assert len(b) >= 5
        if len(a) >= 5:
            assert a == b  # EOS was never the argmax before 5 tokens anyway


@pytest.mark.parametrize("decode", [greedy_decode, beam_search])
def test_input_errors(be, tiny, decode):
    cfg, params, src = tiny
    bad = [
        (src.astype("float64"), TypeError, "src: expected an integer array"),
        (be.to_host(src).tolist(), TypeError, "src: expected a .*array.*got list"),
        (src[0], ValueError, r"src: expected shape \(batch, length\), got \(7,\)"),
        # values are checked on the host: a caller with a GPU model passes host ids
        (be.to_host(src) + cfg.vocab_size, ValueError, r"src: token ids must be in \[0, 17\)"),
        (be.to_host(src) - 1, ValueError, r"src: token ids must be in \[0, 17\), got values in \[-1"),
        (src[:, :0], ValueError, "src: empty batch or sequence"),
    ]
    for arg, error, message in bad:
        with pytest.raises(error, match=message):
            decode(params, cfg, arg)
    with pytest.raises(ValueError, match=r"max_len: expected an integer in \[1, 64\], got 65"):
        decode(params, cfg, src, max_len=65)
    with pytest.raises(ValueError, match=r"max_len: expected an integer in \[1, 64\], got 0"):
        decode(params, cfg, src, max_len=0)
    with pytest.raises(TypeError, match="max_len: expected an integer, got float"):
        decode(params, cfg, src, max_len=10.0)
    with pytest.raises(ValueError, match="min_len: expected an integer >= 0, got -1"):
        decode(params, cfg, src, min_len=-1)
    with pytest.raises(TypeError, match="use_cache: expected True or False"):
        decode(params, cfg, src, use_cache="yes")



@pytest.mark.parametrize("be", ["cupysim"], indirect=True)
@pytest.mark.parametrize("use_cache", [True, False])
def test_a_greedy_step_reads_the_host_once(be, tiny, use_cache):
    """On a device, the chosen tokens are the one thing a step brings back to the host."""
    from npformer.cupysim import host_reads
    cfg, params, src = tiny
    src = be.to_host(src)  # host ids: checked on the host, then sent
    n, reads_per_step = 9, 1
    with host_reads() as reads:
        out = greedy_decode(params, cfg, src, max_len=n, min_len=n, use_cache=use_cache)
    assert all(len(o) == n for o in out)
    assert len(reads) == n * reads_per_step, reads
