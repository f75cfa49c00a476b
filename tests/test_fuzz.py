"""Fuzzing the public entry points with hypothesis: random shapes (T = 1, h = 1,
d_k = 1 included) and masks for the ops, random bytes for the TSV reader,
random argument lists for the command line. Each either works, and its result
is sane, or fails with the documented error; never another exception.

The tokenizer's round trip of any Unicode text is fuzzed in
tests/data/test_bpe.py (test_round_trip_property and
test_round_trip_property_learned_on_random_text).
"""
import gzip

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from npformer import checkpoint, ops
from npformer.data.bpe import BPETokenizer
from npformer.data.corpus import read_tsv
from npformer.errors import UserError
from npformer.model.config import preset
from npformer.model.masks import lookahead_mask
from npformer.model.params import init_params

HYP = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
dim = st.integers(1, 4)


# --- ops ------------------------------------------------------------------------------
@st.composite
def attention_case(draw):
    """Q, K, V shapes and a mask that broadcasts (each axis full or 1, leading axes dropped)
    or, with ``bad``, one axis of a size that does not broadcast."""
    B, h, T_q, T_k, d_k, d_v = (draw(dim) for _ in range(6))
    full = (B, h, T_q, T_k)
    mask_shape = [draw(st.sampled_from([n, 1])) for n in full][draw(st.integers(0, 3)):]
    bad = draw(st.booleans())
    if bad:
        axis = draw(st.integers(0, len(mask_shape) - 1))
        mask_shape[axis] = full[4 - len(mask_shape) + axis] + draw(st.integers(1, 3))
    return B, h, T_q, T_k, d_k, d_v, tuple(mask_shape), bad


@HYP
@given(case=attention_case(), seed=st.integers(0, 2**32 - 1))
def test_attention_with_random_shapes_and_masks(be, case, seed):
    B, h, T_q, T_k, d_k, d_v, mask_shape, bad = case
    rng = np.random.default_rng(seed)
    Q, K = (be.asarray(rng.standard_normal(s) * 3) for s in [(B, h, T_q, d_k), (B, h, T_k, d_k)])
    V = be.asarray(rng.standard_normal((B, h, T_k, d_v)))
    mask_host = rng.random(mask_shape) < 0.7
    if bad:
        with pytest.raises(ValueError, match="does not broadcast"):
            ops.attention_forward(Q, K, V, be.asarray(mask_host))
        return
    out, cache = ops.attention_forward(Q, K, V, be.asarray(mask_host))
    dQ, dK, dV = ops.attention_backward(be.asarray(rng.standard_normal(out.shape)), cache)
    assert out.shape == (B, h, T_q, d_v) and (dQ.shape, dK.shape, dV.shape) == (Q.shape, K.shape, V.shape)
    P, mask = be.to_host(cache.P), np.broadcast_to(mask_host, (B, h, T_q, T_k))
    assert all(np.isfinite(be.to_host(a)).all() for a in (out, dQ, dK, dV))
    assert (P[~mask] == 0).all()
    np.testing.assert_allclose(P.sum(axis=-1), mask.any(axis=-1).astype(float), atol=1e-12)


@HYP
@given(B=dim, T=dim, S=dim, h=st.integers(1, 3), d_k=st.integers(1, 3), seed=st.integers(0, 2**32 - 1))
def test_multihead_attention_with_random_shapes(be, B, T, S, h, d_k, seed):
    rng = np.random.default_rng(seed)
    d_model = h * d_k
    p = {k: be.asarray(rng.standard_normal((d_model, d_model) if k[0] == "W" else (d_model,)))
         for k in ops.multihead.PARAM_NAMES}
    x, memory = be.asarray(rng.standard_normal((B, T, d_model))), be.asarray(rng.standard_normal((B, S, d_model)))
    pad = be.asarray(rng.random((B, 1, 1, S)) < 0.7)
    y, cache = ops.self_attention_forward(x, p, h, lookahead_mask(T, be.xp))
    dx, grads = ops.self_attention_backward(be.xp.ones_like(y), cache)
    c, cross = ops.cross_attention_forward(x, memory, p, h, pad)
    dx2, dmem, _ = ops.cross_attention_backward(be.xp.ones_like(c), cross)
    assert y.shape == c.shape == dx.shape == dx2.shape == (B, T, d_model) and dmem.shape == (B, S, d_model)
    assert all(np.isfinite(be.to_host(a)).all() for a in (y, c, dx, dx2, dmem, *grads.values()))


@HYP
@given(shape=st.lists(dim, min_size=1, max_size=3), V=st.integers(1, 6), eps_ls=st.sampled_from([0.0, 0.1]),
       pad_id=st.integers(0, 2), seed=st.integers(0, 2**32 - 1))
def test_cross_entropy_with_random_shapes(be, shape, V, eps_ls, pad_id, seed):
    rng = np.random.default_rng(seed)
    logits = be.asarray(rng.standard_normal((*shape, V)) * 10)
    targets = rng.integers(0, V, shape)
    if (targets == pad_id).all():
        if not be.on_device:  # on a device the caller's host-side validate_batch refuses it
            with pytest.raises(ValueError, match="every target is padding"):
                ops.cross_entropy_forward(logits, be.asarray(targets), pad_id, eps_ls)
        return
    loss, cache = ops.cross_entropy_forward(logits, be.asarray(targets), pad_id, eps_ls)
    dz = be.to_host(ops.cross_entropy_backward(1.0, cache))
    assert np.isfinite(float(loss)) and float(loss) >= -1e-12 and np.isfinite(dz).all()
    np.testing.assert_allclose(dz.sum(axis=-1), 0.0, atol=1e-12)  # p and q both sum to 1
    assert (dz[targets == pad_id] == 0).all()


@HYP
@given(shape=st.lists(dim, min_size=1, max_size=3), scale=st.sampled_from([0.0, 1e-3, 1.0, 1e4]),
       dtype=st.sampled_from(["float32", "float64"]), seed=st.integers(0, 2**32 - 1))
def test_layernorm_with_random_shapes_and_scales(be, shape, scale, dtype, seed):
    rng = np.random.default_rng(seed)
    d = shape[-1]
    x = be.asarray(rng.standard_normal(shape) * scale + 5.0, dtype=dtype)  # scale 0: constant rows
    y, cache = ops.layernorm_forward(x, be.xp.ones(d, dtype=dtype), be.xp.zeros(d, dtype=dtype))
    dx, dgamma, dbeta = ops.layernorm_backward(be.xp.ones_like(y), cache)
    assert y.dtype == dx.dtype == np.dtype(dtype)
    assert all(np.isfinite(be.to_host(a)).all() for a in (y, dx, dgamma, dbeta))


# --- the TSV reader ------------------------------------------------------------------
tsv_text = st.lists(st.one_of(
    st.tuples(st.text(max_size=8), st.text(max_size=8)).map("\t".join),
    st.text(alphabet=st.sampled_from("ab \t\r\n\ufeff\u2028é😀\x00"), max_size=12),
), max_size=8).map("\n".join)


def check_read(path):
    """read_tsv either returns clean pairs or raises UserError naming a line."""
    try:
        pairs = read_tsv(path)
    except UserError as e:
        assert " line " in str(e) or "gzip" in str(e), str(e)
        return
    for src, tgt in pairs:
        assert src and tgt and "\t" not in src + tgt and src == src.strip() and tgt == tgt.strip()


@settings(max_examples=100)
@given(data=st.one_of(st.binary(max_size=200), tsv_text.map(lambda t: t.encode("utf-8"))))
def test_tsv_reader_on_random_bytes(tmp_path_factory, data):
    d = tmp_path_factory.mktemp("tsv", numbered=True)
    (d / "c.tsv").write_bytes(data)
    check_read(d / "c.tsv")
    (d / "c.tsv.gz").write_bytes(gzip.compress(data))
    check_read(d / "c.tsv.gz")
    (d / "raw.tsv.gz").write_bytes(data)  # not gzip at all
    check_read(d / "raw.tsv.gz")


# --- the command line ----------------------------------------------------------------
class WouldTrain(Exception):
    """Raised instead of training: the fuzzed arguments were all valid."""


JUNK_INT = st.sampled_from(["-1", "0", "1", "2", "3", "7", "64", "x", "1.5", "", "nan", "1e3"])
JUNK_FLOAT = st.sampled_from(["-1", "0", "0.1", "0.5", "2", "nan", "inf", "-inf", "x", ""])
BACKEND = st.sampled_from(["numpy", "cupy", "torch"])  # cupy: absent, or present with a GPU
CHECKPOINTS = ["{d}/missing.npz", "{d}/junk.npz", "{d}", "{d}/no_tokenizer.npz", "{d}/other_vocab.npz"]
OPTIONS = {
    "info": {"--preset": st.sampled_from(["tiny", "small", "base", "big", "huge", ""]),
             "--vocab-size": JUNK_INT, "--json": None},
    "gradcheck": {"--quick": None, "--dtype": st.sampled_from(["float64", "float32", "float16"]),
                  "--seed": JUNK_INT, "--backend": BACKEND, "--json": None},
    "translate": {"--checkpoint": st.sampled_from(CHECKPOINTS), "--beam": JUNK_INT, "--alpha": JUNK_FLOAT,
                  "--dtype": st.sampled_from(["float32", "int8"]), "--backend": BACKEND, "--json": None},
    "evaluate": {"--checkpoint": st.sampled_from(CHECKPOINTS), "--data": st.sampled_from(["{d}/missing.tsv",
                 "{d}/bad.tsv"]), "--split": st.sampled_from(["test", "dev", "train"]), "--limit": JUNK_INT,
                 "--beam": JUNK_INT, "--show": JUNK_INT, "--backend": BACKEND},
    "train": {"--task": st.sampled_from(["copy", "reverse", "sort"]), "--data": st.sampled_from(
              ["{d}/missing.tsv", "{d}/bad.tsv", "{d}"]), "--preset": st.sampled_from(["tiny", "huge", ""]),
              "--vocab-size": JUNK_INT, "--min-len": JUNK_INT, "--max-len": JUNK_INT, "--p-drop": JUNK_FLOAT,
              "--label-smoothing": JUNK_FLOAT, "--batch-size": JUNK_INT, "--max-tokens": JUNK_INT,
              "--steps": JUNK_INT, "--minutes": JUNK_FLOAT, "--seed": JUNK_INT, "--lr-factor": JUNK_FLOAT,
              "--warmup": JUNK_INT, "--clip": JUNK_FLOAT, "--eval-every": JUNK_INT, "--merges": JUNK_INT,
              "--dtype": st.sampled_from(["float32", "float64", "half"]), "--backend": BACKEND, "--resume": None,
              "--out": st.sampled_from(["{d}/run", "{d}/bad.tsv", "{d}/junk.npz/run"]), "--json": None},
}


@st.composite
def argv_lists(draw):
    command = draw(st.sampled_from(sorted(OPTIONS)))
    options = OPTIONS[command]
    argv = [command]
    if command == "train":  # never the bundled corpus: its BPE takes minutes
        argv += draw(st.sampled_from([["--task", "copy"], ["--data", "{d}/bad.tsv"]]))
    if command == "gradcheck":
        argv.append("--quick")
    if command in ("translate", "evaluate"):
        argv += ["--checkpoint", draw(options["--checkpoint"])]
    for name in draw(st.lists(st.sampled_from(sorted(options)), max_size=6)):
        argv.append(name)
        if options[name] is not None:
            argv.append(draw(options[name]))
    if draw(st.integers(0, 3)) == 0:  # now and then a stray token anywhere
        junk = draw(st.sampled_from(["--", "-x", "--bogus", "é", "--steps=2", "-", "hello"]))
        argv.insert(draw(st.integers(1, len(argv))), junk)
    return argv


@pytest.fixture(scope="module")
def cli_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz_cli")
    (d / "bad.tsv").write_text("a\tb\nno tab\n", encoding="utf-8")
    (d / "junk.npz").write_bytes(b"junk")
    cfg = preset("tiny", vocab_size=12, d_model=16, d_ff=32, n_layers=1, h=2, max_len=32)
    checkpoint.save(d / "no_tokenizer.npz", init_params(cfg), cfg)
    tok = BPETokenizer.learn(["the cat sat on the mat"] * 3, num_merges=5)
    checkpoint.save(d / "other_vocab.npz", init_params(cfg), cfg, tokenizer=tok.to_dict())
    return d


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(argv=argv_lists())
def test_cli_never_raises_on_random_arguments(cli_files, capsys, monkeypatch, argv):
    import npformer.train.trainer as trainer
    from npformer.cli import main

    def would_train(*args, **kwargs):
        raise WouldTrain

    monkeypatch.setattr(trainer, "train", would_train)
    argv = [a.format(d=cli_files) for a in argv]
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
        assert code in (0, 2), argv
    except WouldTrain:
        return  # every value was valid: it would have trained
    out, err = capsys.readouterr()
    assert code in (0, 1, 2), argv  # 1: a gradient check failed
    assert "Traceback" not in err
    if code == 2:
        assert len(err.strip().splitlines()) == 1, (argv, err)
