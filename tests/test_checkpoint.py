"""Checkpoints: bit-exact round trip, atomic replace, refusing pickle and broken files
(a UserError naming the file), a failed write named after the checkpoint."""
import errno
import os
import pickle

import numpy as np
import pytest

from npformer import checkpoint
from npformer.backend import backend_of
from npformer.errors import UserError
from npformer.model.config import preset
from npformer.model.params import init_params
from npformer.train.optim import Adam

CFG = preset("tiny", vocab_size=12, d_model=16, d_ff=32, n_layers=1, h=2, max_len=32)


def trained_state(seed=0, steps=2):
    """Parameters and Adam state after a few updates with random gradients."""
    rng = np.random.default_rng(seed)
    params = init_params(CFG, seed=seed)
    opt = Adam(params)
    for _ in range(steps):
        opt.update(params, {k: rng.normal(size=p.shape).astype(p.dtype) for k, p in params.items()}, 1e-2)
    return params, opt


def save_one(path, seed=0, **kw):
    params, opt = trained_state(seed)
    dropout_rng = np.random.default_rng(seed)
    dropout_rng.random(3)
    checkpoint.save(path, params, CFG, optimizer=opt.state_dict(), step=opt.t,
                    rng_state=dropout_rng.bit_generator.state, **kw)
    return params, opt, dropout_rng


def test_round_trip_is_bit_exact(tmp_path, be):
    path = tmp_path / "ck.npz"
    history = [{"kind": "train", "step": 2, "loss": 1.5}]
    tok = {"merges": [["a", "b"]], "vocab_size": 12}
    params, opt, dropout_rng = save_one(path, history=history, tokenizer=tok, extra={"task": "copy"})
    ck = checkpoint.load(path, backend=be)
    assert ck.config == CFG and ck.step == 2 and ck.history == history
    assert ck.tokenizer == tok and ck.extra == {"task": "copy"}
    assert set(ck.params) == set(params)
    for k in params:
        assert backend_of(ck.params[k]) == be
        assert ck.params[k].dtype == np.float32
        np.testing.assert_array_equal(be.to_host(ck.params[k]), params[k])
        np.testing.assert_array_equal(be.to_host(ck.optimizer["m"][k]), opt.m[k])
        np.testing.assert_array_equal(be.to_host(ck.optimizer["v"][k]), opt.v[k])
    assert ck.optimizer["t"] == 2 and ck.optimizer["beta2"] == 0.98
    restored = np.random.default_rng()
    restored.bit_generator.state = ck.rng_state
    np.testing.assert_array_equal(restored.random(5), dropout_rng.random(5))


def test_dtype_cast_on_load(tmp_path):
    save_one(tmp_path / "ck.npz")
    ck = checkpoint.load(tmp_path / "ck.npz", dtype="float64")
    assert all(a.dtype == np.float64 for a in ck.params.values())


def test_failed_replace_leaves_the_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.npz"
    old, _, _ = save_one(path, seed=0)

    def crash(src, dst):
        raise OSError("simulated crash during rename")

    monkeypatch.setattr(checkpoint.os, "replace", crash)
    with pytest.raises(OSError, match="simulated") as e:
        save_one(path, seed=1)
    assert e.value.filename == str(path)  # the checkpoint, not its temporary file
    monkeypatch.undo()
    ck = checkpoint.load(path)
    for k in old:
        np.testing.assert_array_equal(ck.params[k], old[k])
    assert os.listdir(tmp_path) == ["last.npz"]  # the temporary file is cleaned up


def test_crash_while_writing_leaves_the_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.npz"
    old, _, _ = save_one(path, seed=0)
    real_savez = np.savez

    def half_written(f, **arrays):
        real_savez(f, **dict(list(arrays.items())[:3]))
        raise KeyboardInterrupt  # killed half way

    monkeypatch.setattr(checkpoint.np, "savez", half_written)
    with pytest.raises(KeyboardInterrupt):
        save_one(path, seed=1)
    monkeypatch.undo()
    ck = checkpoint.load(path)
    np.testing.assert_array_equal(ck.params["embed"], old["embed"])
    assert os.listdir(tmp_path) == ["last.npz"]


def test_a_full_disk_names_the_checkpoint(tmp_path, monkeypatch):
    """A write error of the OS names no file; the save says which checkpoint it was writing,
    so that the command can report it in one line (npformer/cli.py)."""
    def full(f, **arrays):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint.np, "savez", full)
    with pytest.raises(OSError) as e:
        save_one(tmp_path / "last.npz")
    assert (e.value.errno, e.value.filename) == (errno.ENOSPC, str(tmp_path / "last.npz"))
    assert "cannot write the checkpoint (No space left on device)" in str(e.value)
    assert os.listdir(tmp_path) == []


def test_object_arrays_are_refused(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, meta=np.array([{"format": "npformer-checkpoint"}], dtype=object))
    with pytest.raises(UserError, match="pickle") as e:
        checkpoint.load(path)
    assert str(path) in str(e.value)


def test_a_pickle_file_is_refused(tmp_path):
    path = tmp_path / "ck.npz"
    path.write_bytes(pickle.dumps({"params": np.zeros(3)}))
    with pytest.raises(UserError, match="pickle"):
        checkpoint.load(path)


def test_truncated_file_is_a_clear_error(tmp_path):
    path = tmp_path / "ck.npz"
    save_one(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="truncated") as e:
        checkpoint.load(path)
    assert str(path) in str(e.value)
    path.write_bytes(b"")
    with pytest.raises(UserError, match=str(path)):
        checkpoint.load(path)


def test_corrupted_bytes_are_a_clear_error(tmp_path):
    path = tmp_path / "ck.npz"
    save_one(path)
    data = bytearray(path.read_bytes())
    i = data.index(b"param/embed.npy") + 200  # inside the embedding's values
    data[i:i + 16] = bytes(16)
    path.write_bytes(bytes(data))
    with pytest.raises(UserError, match="corrupted"):
        checkpoint.load(path)


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        checkpoint.load(tmp_path / "nope.npz")


def test_config_and_tokenizer_mismatch_name_the_fields(tmp_path):
    path = tmp_path / "ck.npz"
    save_one(path, tokenizer={"vocab_size": 12, "merges": []})
    with pytest.raises(UserError, match=r"vocab_size: expected 40, checkpoint has 12; d_ff: expected 64"):
        checkpoint.load(path, expected_config=CFG.replace(d_ff=64, vocab_size=40))
    with pytest.raises(UserError, match=r"tokenizer differs .*merges"):
        checkpoint.load(path, expected_tokenizer={"vocab_size": 12, "merges": [["a", "b"]]})
    checkpoint.load(path, expected_config=CFG, expected_tokenizer={"vocab_size": 12, "merges": []})


def test_params_that_do_not_fit_the_config_are_refused(tmp_path):
    path = tmp_path / "ck.npz"
    params = init_params(CFG.replace(d_ff=48), seed=0)
    checkpoint.save(path, params, CFG)  # a mislabelled checkpoint
    with pytest.raises(UserError, match=r"ffn.W_1 has shape \(16, 48\), the config needs \(16, 32\)"):
        checkpoint.load(path)
    np.savez(path, **{"param/embed": np.zeros((12, 16))})
    with pytest.raises(UserError, match="no 'meta' entry"):
        checkpoint.load(path)
