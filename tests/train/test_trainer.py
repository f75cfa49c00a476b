"""The training loop: it learns, it is deterministic, it resumes exactly, it stops on NaN."""
import io
import math
import sys

import numpy as np
import pytest

from npformer.model.config import preset
from npformer.train.progress import Progress
from npformer.train.tasks import SequenceTask
from npformer.train.trainer import TrainingDiverged, evaluate_loss, init_state, load_state, train

CFG = preset("tiny", vocab_size=12, d_model=32, h=2, d_ff=64, n_layers=1, max_len=32)
TASK = SequenceTask("reverse", vocab_size=12, min_len=2, max_len=6)


def losses(state):
    return [r["loss"] for r in state.history if r["kind"] == "train"]


def run(steps, seed=0, cfg=CFG, **kw):
    state = init_state(cfg, seed=seed)
    train(state, cfg, TASK.batches(seed, batch_size=8), steps=steps, warmup=10, log_every=1,
          progress=False, **kw)
    return state


def test_overfits_one_batch():
    cfg = CFG.replace(p_drop=0.0, eps_ls=0.0)
    batch = TASK.batch(seed=0, step=1, batch_size=8)
    state = init_state(cfg, seed=0)
    train(state, cfg, lambda t: batch, steps=300, warmup=20, lr_factor=0.3, log_every=1, progress=False)
    assert losses(state)[0] > 1.5
    assert losses(state)[-1] < 0.05
    assert evaluate_loss(state.params, cfg, [batch]) < 0.05


def test_same_seed_same_losses():
    a, b, c = run(6, seed=0), run(6, seed=0), run(6, seed=1)
    assert losses(a) == losses(b)  # bit-identical, dropout included
    assert losses(a) != losses(c)
    assert [r["step"] for r in a.history if r["kind"] == "train"] == [1, 2, 3, 4, 5, 6]


def test_resume_is_bit_identical(tmp_path):
    k = 4
    straight = run(2 * k, seed=3)

    first = run(k, seed=3, out_dir=str(tmp_path))
    state, ck = load_state(tmp_path / "last.npz")
    assert ck.step == state.step == k
    train(state, CFG, TASK.batches(3, batch_size=8), steps=2 * k, warmup=10, log_every=1, progress=False)
    assert losses(state) == losses(straight)
    assert losses(first) == losses(straight)[:k]
    for name in straight.params:
        np.testing.assert_array_equal(state.params[name], straight.params[name])


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    state = init_state(CFG, seed=0)
    good = TASK.batches(0, batch_size=8)

    def poisoned(t):
        if t == 3:
            state.params["encoder.0.ffn.W_1"][0, 0] = np.nan
        return good(t)

    with pytest.raises(TrainingDiverged, match=r"step 3: loss nan.*last\.npz"):
        train(state, CFG, poisoned, steps=5, warmup=10, out_dir=str(tmp_path), save_every=1,
              progress=False)
    saved, ck = load_state(tmp_path / "last.npz")
    assert ck.step == 2
    assert all(np.isfinite(a).all() for a in saved.params.values())


def test_eval_history_and_best_checkpoint(tmp_path):
    scripted = iter([3.0, 1.0, 2.0])
    calls = []

    def eval_fn(params):
        calls.append(1)
        return {"val_loss": next(scripted)}

    state = run(6, out_dir=str(tmp_path), eval_fn=eval_fn, eval_every=2)
    evals = [(r["step"], r["val_loss"]) for r in state.history if r["kind"] == "eval"]
    assert evals == [(2, 3.0), (4, 1.0), (6, 2.0)] and len(calls) == 3  # no extra eval at the end
    _, best = load_state(tmp_path / "best.npz")
    _, last = load_state(tmp_path / "last.npz")
    assert best.step == 4 and last.step == 6


def test_time_budget_and_argument_checks():
    state = init_state(CFG, seed=0)
    train(state, CFG, TASK.batches(0, batch_size=4), minutes=0.5 / 60, warmup=10, progress=False)
    assert state.step >= 1
    assert all(math.isfinite(r["loss"]) for r in state.history)
    with pytest.raises(ValueError, match="steps or minutes"):
        train(state, CFG, TASK.batches(0, batch_size=4))


def test_progress_without_tqdm_prints_lines(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm now raises ImportError
    out = io.StringIO()
    bar = Progress(total=10, seconds=60, stream=out, every_s=0.0)
    assert bar.bar is None
    bar.update(5, loss=1.25, lr=1e-3, tok_per_s=1234.0)
    bar.write("step 5: val_loss 1.1")
    bar.close()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("step 5/10 | loss 1.2500 | lr 1.00e-03 | tok/s 1,234 | time left")
    assert "eta" in lines[0] and lines[1] == "step 5: val_loss 1.1"
    silent = io.StringIO()
    Progress(total=10, stream=silent, enabled=False).update(1, 1.0, 1e-3, 1.0)
    assert silent.getvalue() == ""
