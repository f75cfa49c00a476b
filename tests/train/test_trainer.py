"""The training loop: it learns, it is deterministic, it resumes exactly, it stops on NaN."""
import io
import math
import sys

import numpy as np
import pytest

from npformer.model.config import preset
from npformer.train.progress import Progress
from npformer.train.schedule import Schedule
from npformer.train.tasks import SequenceTask
from npformer.train.state import init_state, load_state
from npformer.train.trainer import TrainingDiverged, evaluate_loss, train

CFG = preset("tiny", vocab_size=12, d_model=32, h=2, d_ff=64, n_layers=1, max_len=32)
TASK = SequenceTask("reverse", vocab_size=12, min_len=2, max_len=6)


def noam(warmup, factor=1.0, d_model=CFG.d_model):
    return Schedule("noam", warmup, factor, d_model)


def losses(state):
    return [r["loss"] for r in state.history if r["kind"] == "train"]


def run(steps, seed=0, cfg=CFG, **kw):
    state = init_state(cfg, seed=seed)
    kw.setdefault("schedule", noam(10, d_model=cfg.d_model))
    train(state, cfg, TASK.batches(seed, batch_size=8), steps=steps, log_every=1, progress=False, **kw)
    return state


def test_overfits_one_batch():
    cfg = CFG.replace(p_drop=0.0, eps_ls=0.0)
    batch = TASK.batch(seed=0, step=1, batch_size=8)
    state = init_state(cfg, seed=0)
    train(state, cfg, lambda t: batch, steps=300, schedule=noam(20, 0.3), log_every=1, progress=False)
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
    train(state, CFG, TASK.batches(3, batch_size=8), steps=2 * k, schedule=noam(10), log_every=1, progress=False)
    assert losses(state) == losses(straight)
    assert losses(first) == losses(straight)[:k]
    for name in straight.params:
        np.testing.assert_array_equal(state.params[name], straight.params[name])


def test_linear_schedule_decays_to_zero_over_the_steps_and_resumes_exactly(tmp_path):
    linear = Schedule("linear", warmup=2, peak=1e-2)
    straight = run(8, seed=3, schedule=linear)
    rates = [r["lr"] for r in straight.history if r["kind"] == "train"]
    assert rates == pytest.approx([1e-2 * min(1, t / 2) * (1 - (t - 1) / 8) for t in range(1, 9)])
    batches = TASK.batches(3, batch_size=8)

    def stopped_at_5(t):  # the 8-step run, killed at step 5 after its step-4 checkpoint
        if t == 5:
            raise KeyboardInterrupt
        return batches(t)

    with pytest.raises(KeyboardInterrupt):
        train(init_state(CFG, seed=3), CFG, stopped_at_5, steps=8, schedule=linear, out_dir=str(tmp_path),
              save_every=4, log_every=1, progress=False)
    state, _ = load_state(tmp_path / "last.npz")
    assert state.step == 4
    train(state, CFG, batches, steps=8, schedule=linear, log_every=1, progress=False)
    assert losses(state) == losses(straight)


def test_linear_schedule_follows_the_clock_and_a_resume_continues_the_decay():
    state = init_state(CFG, seed=0)
    linear = Schedule("linear", warmup=1, peak=1e-2)
    train(state, CFG, TASK.batches(0, batch_size=4), minutes=1 / 60, schedule=linear, log_every=1, progress=False)
    records = [r for r in state.history if r["kind"] == "train"]
    progress = [r["progress"] for r in records]
    assert progress == sorted(progress) and progress[0] < 0.1 and 0.8 < progress[-1] <= 1
    assert [r["lr"] for r in records] == pytest.approx([1e-2 * (1 - p) for p in progress])
    end = progress[-1]
    train(state, CFG, TASK.batches(0, batch_size=4), minutes=1 / 60, schedule=linear, log_every=1, progress=False)
    resumed = [r["progress"] for r in state.history if r["kind"] == "train"][len(records):]
    assert end <= resumed[0] < end + 0.1 * (1 - end)  # from where it stopped, not from 0
    assert resumed[-1] > resumed[0]


def test_a_schedule_for_another_width_is_refused():
    with pytest.raises(ValueError, match="d_model=512"):
        run(1, schedule=Schedule("noam", 10))


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    state = init_state(CFG, seed=0)
    good = TASK.batches(0, batch_size=8)

    def poisoned(t):
        if t == 3:
            state.params["encoder.0.ffn.W_1"][0, 0] = np.nan
        return good(t)

    with pytest.raises(TrainingDiverged, match=r"step 3: loss nan.*last\.npz"):
        train(state, CFG, poisoned, steps=5, schedule=noam(10), out_dir=str(tmp_path), save_every=1,
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
    train(state, CFG, TASK.batches(0, batch_size=4), minutes=0.5 / 60, schedule=noam(10), progress=False)
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
