"""``npformer train`` when things go wrong: a run that diverges stops with one line
naming the step and keeps its last good checkpoint; a run stopped and resumed
from the command line gives exactly the losses and weights of one that never stopped.
(The same at the Python level: tests/train/test_trainer.py.)
"""
import math

import numpy as np
import pytest

import npformer.train.trainer as trainer
from npformer.cli import main
from npformer.train.state import load_state

TASK = ["train", "--task", "reverse", "--vocab-size", "10", "--min-len", "2", "--max-len", "5",
        "--batch-size", "8", "--warmup", "10", "--no-progress"]


def run_cli(capsys, *argv):
    code = main([*TASK, *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("poison", ["loss", "gradient"])
def test_divergence_exits_2_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path, capsys, monkeypatch,
                                                                                poison):
    real = trainer.parallel_loss_and_grads
    calls = []

    def diverging_at_step_3(*args, **kwargs):
        loss, grads, n_tokens = real(*args, **kwargs)
        calls.append(1)
        if len(calls) == 3:
            if poison == "loss":
                loss = math.nan
            else:
                grads["embed"][0, 0] = np.inf
        return loss, grads, n_tokens

    monkeypatch.setattr(trainer, "parallel_loss_and_grads", diverging_at_step_3)
    run = tmp_path / "run"
    code, out, err = run_cli(capsys, "--steps", "5", "--eval-every", "1", "--out", str(run), "--json")
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1, err
    expected = "loss nan" if poison == "loss" else "gradient norm inf"
    assert err.startswith("npformer train: error: step 3: ") and expected in err
    assert f"last good checkpoint: {run / 'last.npz'}" in err

    state, ck = load_state(run / "last.npz")
    assert ck.step == state.step == 2
    # step 2's evaluation is put off: one costs far more than the 19 steps of training that earn it
    assert [r["step"] for r in ck.history if r["kind"] == "eval"] == [1]
    assert all(np.isfinite(a).all() for a in state.params.values())


def without_timings(history):
    """The records without the clock and the share of each call's budget (the task's
    schedule is the paper's, which does not read it)."""
    return [{k: v for k, v in r.items() if k not in ("tokens_per_s", "elapsed_s", "progress", "eval_s", "eval_share")}
            for r in history]


def test_stopping_and_resuming_from_the_command_line_is_bit_identical(tmp_path, capsys):
    straight, split = str(tmp_path / "straight"), str(tmp_path / "split")
    assert run_cli(capsys, "--steps", "20", "--eval-every", "10", "--out", straight)[0] == 0
    assert run_cli(capsys, "--steps", "10", "--eval-every", "10", "--out", split)[0] == 0
    assert run_cli(capsys, "--steps", "20", "--eval-every", "10", "--out", split, "--resume")[0] == 0

    a, ck_a = load_state(f"{straight}/last.npz")
    b, ck_b = load_state(f"{split}/last.npz")
    assert ck_a.step == ck_b.step == 20
    history = without_timings(ck_a.history)
    assert [(r["kind"], r["step"]) for r in history] == [("train", 10), ("eval", 10), ("train", 20), ("eval", 20)]
    assert history == without_timings(ck_b.history)  # losses, grad norms, lr, val loss, exact match
    assert ck_a.rng_state == ck_b.rng_state
    for name in a.params:
        np.testing.assert_array_equal(a.params[name], b.params[name])
        np.testing.assert_array_equal(a.optimizer.m[name], b.optimizer.m[name])
        np.testing.assert_array_equal(a.optimizer.v[name], b.optimizer.v[name])
