"""Bad input to the Python API: a ValueError or TypeError that names the argument,
what was given and what was expected; never a silent wrong answer or a bare
NumPy broadcasting error. A bad file (a checkpoint here) is the user's: a
UserError that names it. (Token-id checks of the model and the decoders are
in tests/decode/test_greedy.py::test_input_errors, config checks in
tests/commands/test_train.py, checkpoint files in tests/test_checkpoint.py.)
"""
import numpy as np
import pytest

from npformer import checkpoint, ops
from npformer.decode import greedy_decode
from npformer.decode.incremental import encode
from npformer.errors import UserError
from npformer.model.config import TransformerConfig, preset
from npformer.model.params import init_params
from npformer.model.transformer import transformer_forward
from npformer.train.schedule import noam_lr
from npformer.train.tasks import SequenceTask
from npformer.train.state import init_state
from npformer.train.trainer import train
from npformer.translation import Translator

CFG = preset("tiny", vocab_size=12, d_model=16, d_ff=32, n_layers=1, h=2, max_len=8)
B, h, T_q, T_k, d_k = 2, 2, 3, 5, 4


QKV_RNG, PARAMS_RNG = np.random.default_rng(0), np.random.default_rng(1)  # shared by the calls below


def qkv(be, rng=QKV_RNG):
    r = lambda *s: be.asarray(rng.standard_normal(s))  # noqa: E731
    return r(B, h, T_q, d_k), r(B, h, T_k, d_k), r(B, h, T_k, d_k)


def attn_params(be, d_model=8, rng=PARAMS_RNG):
    return {k: be.asarray(rng.standard_normal((d_model, d_model) if k[0] == "W" else (d_model,)))
            for k in ops.multihead.PARAM_NAMES}


# --- attention masks ---------------------------------------------------------
@pytest.mark.parametrize("shape", [(B, 1, 1, T_k), (1, 1, T_q, T_k), (B, h, T_q, T_k), (T_k,), (T_q, T_k)])
def test_masks_that_broadcast_are_accepted(be, shape):
    Q, K, V = qkv(be)
    out, _ = ops.attention_forward(Q, K, V, be.asarray(np.ones(shape, dtype=bool)))
    assert out.shape == (B, h, T_q, d_k)


@pytest.mark.parametrize("shape", [(B, 1, 1, T_q), (3, 1, 1, T_k), (1, B, 1, 1, T_k), (B, 1, T_k, T_k)])
def test_attention_refuses_a_mask_of_the_wrong_shape(be, shape):
    Q, K, V = qkv(be)
    mask = be.asarray(np.ones(shape, dtype=bool))
    expected = rf"mask of shape \({', '.join(map(str, shape))}\) does not broadcast to the scores' shape " \
               rf"\(B, h, T_q, T_k\) = \({B}, {h}, {T_q}, {T_k}\)"
    with pytest.raises(ValueError, match=expected):
        ops.attention_forward(Q, K, V, mask)


@pytest.mark.parametrize("dtype", ["float64", "int64"])
def test_attention_refuses_a_mask_that_is_not_boolean(be, dtype):
    Q, K, V = qkv(be)
    with pytest.raises(TypeError, match=f"mask must be a boolean array .*got {dtype}"):
        ops.attention_forward(Q, K, V, be.asarray(np.ones((B, 1, 1, T_k)), dtype=dtype))


def test_multihead_refuses_a_mask_of_the_wrong_shape(be):
    rng = np.random.default_rng(2)
    x, memory = be.asarray(rng.standard_normal((B, 3, 8))), be.asarray(rng.standard_normal((B, 5, 8)))
    with pytest.raises(ValueError, match=r"mask of shape \(2, 1, 1, 4\) .* = \(2, 2, 3, 3\)"):
        ops.self_attention_forward(x, attn_params(be), 2, be.asarray(np.ones((B, 1, 1, 4), dtype=bool)))
    with pytest.raises(ValueError, match=r"mask of shape \(2, 1, 1, 3\) .* = \(2, 2, 3, 5\)"):
        ops.cross_attention_forward(x, memory, attn_params(be), 2, be.asarray(np.ones((B, 1, 1, 3), dtype=bool)))
    with pytest.raises(TypeError, match="mask must be a boolean array .*got list"):
        ops.self_attention_forward(x, attn_params(be), 2, [[True, True, True]])


def test_attention_refuses_q_k_v_that_do_not_fit(be):
    Q, K, V = qkv(be)
    for args, got in [((Q, K[..., :3], V), r"K \(2, 2, 5, 3\)"), ((Q, K, V[:, :, :4]), r"V \(2, 2, 4, 4\)"),
                      ((Q[0], K[0], V[0]), r"Q \(2, 3, 4\)"), ((Q, K[:1], V[:1]), r"K \(1, 2, 5, 4\)")]:
        with pytest.raises(ValueError, match=r"attention: expected Q \(B, h, T_q, d_k\), .*" + got):
            ops.attention_forward(*args)


def test_multihead_names_the_bad_argument(be):
    x = be.asarray(np.random.default_rng(3).standard_normal((B, 3, 8)))
    p = attn_params(be)
    with pytest.raises(ValueError, match="h must be a positive integer, got 0"):
        ops.self_attention_forward(x, p, 0)
    with pytest.raises(ValueError, match=r"x must be \(B, T, d_model\), got shape \(3, 8\)"):
        ops.self_attention_forward(x[0], p, 2)
    with pytest.raises(ValueError, match=r"W_q has shape \(8, 4\), expected \(8, 8\)"):
        ops.self_attention_forward(x, {**p, "W_q": p["W_q"][:, :4]}, 2)
    with pytest.raises(ValueError, match=r"b_o has shape \(7,\), expected \(8,\)"):
        ops.self_attention_forward(x, {**p, "b_o": p["b_o"][:7]}, 2)
    with pytest.raises(ValueError, match=r"memory \(2, 5, 6\) and x \(2, 3, 8\) differ"):
        ops.cross_attention_forward(x, be.xp.zeros((B, 5, 6)), p, 2)


# --- other ops -----------------------------------------------------------------
def test_cross_entropy_refuses_float_and_out_of_range_targets(be):
    logits = be.xp.zeros((2, 3, 7))
    with pytest.raises(TypeError, match="targets must be integer token ids, got float64"):
        ops.cross_entropy_forward(logits, be.xp.ones((2, 3)))
    if be.on_device:  # values are checked on the host, before ids go to a device (validate_batch)
        return
    with pytest.raises(ValueError, match=r"targets must be in \[0, 7\) .*got values in \[1, 7\]"):
        ops.cross_entropy_forward(logits, be.asarray(np.array([[1, 2, 7], [1, 1, 1]])))
    # a negative id used to index from the end of the vocabulary: a wrong loss, no error
    with pytest.raises(ValueError, match=r"targets must be in \[0, 7\) .*got values in \[-1, 2\]"):
        ops.cross_entropy_forward(logits, be.asarray(np.array([[1, 2, -1], [1, 1, 1]])))


def test_embedding_refuses_float_and_out_of_range_ids(be):
    E = be.xp.zeros((12, 4))
    with pytest.raises(TypeError, match="ids must be integer token ids, got float64"):
        ops.embedding_forward(be.xp.ones((2, 3)), E)
    if be.on_device:  # values are checked on the host, before ids go to a device (validate_ids)
        return
    with pytest.raises(ValueError, match=r"ids must be in \[0, 12\) .*got values in \[-1, 3\]"):
        ops.embedding_forward(be.asarray(np.array([[3, -1]])), E)  # -1 used to pick row 11
    with pytest.raises(ValueError, match=r"got values in \[3, 12\]"):
        ops.embedding_forward(be.asarray(np.array([[3, 12]])), E)


def test_linear_and_layernorm_name_the_shapes(be):
    x = be.xp.zeros((2, 3, 8))
    with pytest.raises(ValueError, match=r"linear: expected .*got x \(2, 3, 8\), W \(7, 3\), b \(3,\)"):
        ops.linear_forward(x, be.xp.zeros((7, 3)), be.xp.zeros(3))
    with pytest.raises(ValueError, match=r"linear: .*W \(8, 3\), b \(4,\)"):
        ops.linear_forward(x, be.xp.zeros((8, 3)), be.xp.zeros(4))
    with pytest.raises(ValueError, match=r"layernorm: gamma and beta must be \(8,\) .*got gamma \(7,\), beta \(8,\)"):
        ops.layernorm_forward(x, be.xp.ones(7), be.xp.zeros(8))


# --- the model's parameters ------------------------------------------------------
def bad_params(kind):
    p = init_params(CFG, seed=0, dtype="float64")
    if kind == "missing":
        del p["encoder.0.ln1.gamma"]
        return p, ValueError, r"missing \['encoder.0.ln1.gamma'\]"
    if kind == "missing embedding":
        del p["embed"]
        return p, ValueError, r"missing \['embed'\]"
    if kind == "unexpected":
        p["decoder.1.ffn.W_1"] = p["decoder.0.ffn.W_1"]
        return p, ValueError, r"n_layers=1.*unexpected \['decoder.1.ffn.W_1'\]"
    if kind == "shape":
        p["decoder.0.ffn.W_1"] = np.zeros((16, 33))
        return p, ValueError, r"params\['decoder.0.ffn.W_1'\]: shape \(16, 33\), the config needs \(16, 32\)"
    if kind == "embedding shape":
        p["embed"] = np.zeros((11, 16))  # used to run, reading a wrong vocabulary
        return p, ValueError, r"params\['embed'\]: shape \(11, 16\), the config needs \(12, 16\)"
    if kind == "int dtype":
        p["encoder.0.self_attn.W_q"] = np.zeros((16, 16), dtype=np.int64)  # used to run, silently
        return p, TypeError, r"params\['encoder.0.self_attn.W_q'\]: expected a float array, got int64"
    if kind == "mixed dtypes":
        p["embed"] = p["embed"].astype(np.float32)
        return p, TypeError, r"mixed dtypes \['float32', 'float64'\]"


@pytest.mark.parametrize("kind", ["missing", "missing embedding", "unexpected", "shape", "embedding shape",
                                  "int dtype", "mixed dtypes"])
def test_wrong_parameter_dict_names_the_key(kind):
    params, error, message = bad_params(kind)
    src, tgt_in = np.array([[4, 5, 6], [4, 5, 0]]), np.array([[1, 6, 5], [1, 5, 0]])
    with pytest.raises(error, match=message):
        transformer_forward(params, CFG, src, tgt_in)
    with pytest.raises(error, match=message):
        greedy_decode(params, CFG, src, max_len=3)
    with pytest.raises(error, match=message):
        encode(params, CFG, src)  # the incremental decoder's encoder


def test_d_model_not_divisible_by_h_and_unknown_names():
    with pytest.raises(ValueError, match="d_model=10 is not divisible by h=3"):
        TransformerConfig(d_model=10, h=3)
    with pytest.raises(ValueError, match="unknown preset 'huge'; expected one of base, big, small, tiny"):
        preset("huge")
    with pytest.raises(ValueError, match="unknown dtype 'float16'; expected one of float32, float64"):
        init_params(CFG, dtype="float16")  # used to make a float16 model
    with pytest.raises(ValueError, match="seed: expected a non-negative integer, got -1"):
        init_params(CFG, seed=-1)


def test_training_budget_and_schedule_are_checked():
    state = init_state(CFG)
    batches = SequenceTask("copy", 12, 2, 4).batches(0, batch_size=2)
    with pytest.raises(ValueError, match="steps must be a positive integer, got 0"):
        train(state, CFG, batches, steps=0, progress=False)
    with pytest.raises(ValueError, match="minutes must be a positive number, got nan"):
        train(state, CFG, batches, minutes=float("nan"), progress=False)
    with pytest.raises(ValueError, match="factor must be a positive number, got nan"):
        noam_lr(1, 16, 10, float("nan"))  # used to give lr = nan: every parameter nan after one step
    assert state.step == 0


# --- checkpoints -------------------------------------------------------------------
def test_checkpoint_load_refuses_a_directory_and_a_bad_dtype(tmp_path):
    (tmp_path / "ck.npz").mkdir()
    with pytest.raises(UserError, match="ck.npz: is a directory, expected an .npz file"):
        checkpoint.load(tmp_path / "ck.npz")
    checkpoint.save(tmp_path / "ok.npz", init_params(CFG), CFG)
    with pytest.raises(ValueError, match="unknown dtype 'int32'"):
        checkpoint.load(tmp_path / "ok.npz", dtype="int32")


def test_a_file_numpy_cannot_read_without_pickle_gets_no_advice_to_unpickle(tmp_path):
    path = tmp_path / "junk.npz"
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(UserError) as e:
        checkpoint.load(path)
    assert "not an .npz archive" in str(e.value) and "refused (allow_pickle=False)" in str(e.value)
    assert "unsafely" not in str(e.value) and "pickle.load" not in str(e.value)


def test_translator_refuses_a_tokenizer_of_another_vocabulary(tmp_path):
    from npformer.data.bpe import BPETokenizer
    tok = BPETokenizer.learn(["the cat sat on the mat"] * 3, num_merges=5)
    assert tok.vocab_size != CFG.vocab_size
    checkpoint.save(tmp_path / "ck.npz", init_params(CFG), CFG, tokenizer=tok.to_dict())
    with pytest.raises(UserError, match=f"its tokenizer has {tok.vocab_size} tokens but the model's "
                                        "vocabulary has 12"):
        Translator.from_checkpoint(tmp_path / "ck.npz")
    broken = {**tok.to_dict(), "merges": "nope"}
    checkpoint.save(tmp_path / "broken.npz", init_params(CFG), CFG, tokenizer=broken)
    with pytest.raises(UserError, match="broken.npz: invalid tokenizer .*merges"):
        Translator.from_checkpoint(tmp_path / "broken.npz")
