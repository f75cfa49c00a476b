"""Checkpoint averaging: ``train --keep-last`` and ``npformer average``."""
import os

import numpy as np
import pytest

from npformer import checkpoint
from npformer.cli import main
from npformer.errors import UserError
from npformer.model.config import preset
from npformer.model.params import init_params
from npformer.train.average import average_checkpoints


def train_cli(capsys, *argv):
    code = main(["train", "--task", "copy", "--vocab-size", "10", "--min-len", "2", "--max-len", "5",
                 "--batch-size", "8", "--warmup", "10", "--no-progress", "--preset", "tiny", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_keep_last_keeps_the_newest_step_checkpoints(tmp_path, capsys):
    run = tmp_path / "run"
    code, _, err = train_cli(capsys, "--steps", "7", "--eval-every", "0", "--save-every", "2",
                             "--keep-last", "3", "--out", str(run))
    assert code == 0, err
    assert sorted(p.name for p in run.glob("step-*.npz")) == ["step-4.npz", "step-6.npz", "step-7.npz"]
    last, newest = checkpoint.load(run / "last.npz"), checkpoint.load(run / "step-7.npz")
    assert last.step == newest.step == 7
    for k in last.params:
        np.testing.assert_array_equal(last.params[k], newest.params[k])
    assert not [p for p in os.listdir(run) if p.endswith(".tmp")]

    # resuming prunes the older files of the first call as well
    code, _, err = train_cli(capsys, "--steps", "10", "--save-every", "2", "--keep-last", "2",
                             "--out", str(run), "--resume")
    assert code == 0, err
    assert sorted(p.name for p in run.glob("step-*.npz")) == ["step-10.npz", "step-8.npz"]
    assert checkpoint.load(run / "last.npz").step == 10


def test_keep_last_needs_saves(tmp_path, capsys):
    code, out, err = train_cli(capsys, "--steps", "2", "--keep-last", "2")
    assert code == 2 and out == "" and "keep_last needs out_dir and save_every > 0" in err
    assert len(err.strip().splitlines()) == 1
    code, _, err = train_cli(capsys, "--steps", "2", "--keep-last", "2", "--save-every", "0",
                             "--eval-every", "0", "--out", str(tmp_path / "r"))
    assert code == 2 and "save_every > 0" in err


def save_model(path, cfg, seed, tokenizer=None, step=0):
    params = init_params(cfg, seed=seed, dtype="float32")
    return checkpoint.save(path, params, cfg, step=step, tokenizer=tokenizer), params


def test_average_is_the_mean_of_the_parameters(tmp_path, capsys):
    cfg = preset("tiny", vocab_size=12)
    saved = [save_model(tmp_path / f"s{i}.npz", cfg, seed=i, tokenizer={"merges": []}, step=10 * i)
             for i in range(3)]
    out = tmp_path / "avg.npz"
    assert main(["average", *(p for p, _ in saved), "--out", str(out)]) == 0
    assert "averaged 3 checkpoints" in capsys.readouterr().out
    avg = checkpoint.load(out)
    assert avg.step == 20 and avg.tokenizer == {"merges": []} and avg.optimizer is None
    for k, a in avg.params.items():
        expected = sum(p[k].astype(np.float64) for _, p in saved) / 3
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, expected, rtol=1e-6, atol=1e-7)
    assert not np.array_equal(avg.params["encoder.0.ffn.W_1"], saved[0][1]["encoder.0.ffn.W_1"])


def test_average_refuses_other_configs_and_vocabularies(tmp_path, capsys):
    cfg = preset("tiny", vocab_size=12)
    a, _ = save_model(tmp_path / "a.npz", cfg, 0, tokenizer={"merges": [["a", "b"]]})
    b, _ = save_model(tmp_path / "b.npz", cfg.replace(d_ff=128), 1, tokenizer={"merges": [["a", "b"]]})
    c, _ = save_model(tmp_path / "c.npz", cfg, 2, tokenizer={"merges": [["c", "d"]]})
    out = str(tmp_path / "avg.npz")
    assert main(["average", a, b, "--out", out]) == 2
    err = capsys.readouterr().err
    assert "config differs: d_ff: expected 256, checkpoint has 128" in err and "one run" in err
    assert main(["average", a, c, "--out", out]) == 2
    assert "another vocabulary" in capsys.readouterr().err
    assert main(["average", a, a, "--out", out]) == 2
    assert "given twice" in capsys.readouterr().err
    assert main(["average", a, "--out", out]) == 2
    assert "at least 2" in capsys.readouterr().err
    assert main(["average", a, c, "--out", a]) == 2
    assert "is one of the checkpoints" in capsys.readouterr().err
    assert not os.path.exists(out)
    (tmp_path / "file").write_text("not a directory")  # an --out that cannot be written
    a2, _ = save_model(tmp_path / "a2.npz", cfg, 3, tokenizer={"merges": [["a", "b"]]})
    assert main(["average", a, a2, "--out", str(tmp_path / "file" / "avg.npz")]) == 2
    err = capsys.readouterr().err
    assert err == f"npformer average: error: {tmp_path / 'file' / 'avg.npz'}: cannot write the checkpoint " \
                  "(File exists)\n", err


def test_average_checkpoints_needs_two():
    with pytest.raises(UserError, match="at least 2"):
        average_checkpoints([])


def test_link_or_copy_copies_where_hard_links_fail(tmp_path, monkeypatch):
    cfg = preset("tiny", vocab_size=12)
    src, params = save_model(tmp_path / "step-3.npz", cfg, seed=0, step=3)
    (tmp_path / "last.npz").write_bytes(b"an older checkpoint")

    def no_links(a, b):
        raise OSError("hard links not supported")

    monkeypatch.setattr(os, "link", no_links)
    checkpoint.link_or_copy(src, str(tmp_path / "last.npz"))
    os.remove(src)
    last = checkpoint.load(tmp_path / "last.npz")
    assert last.step == 3 and not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    np.testing.assert_array_equal(last.params["embed"], params["embed"])
