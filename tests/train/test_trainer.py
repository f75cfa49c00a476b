"""The training loop: it learns, it is deterministic, it resumes exactly, it stops on NaN."""
import io
import math
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from npformer.model.config import preset
from npformer.train.progress import Progress
from npformer.train.schedule import Schedule
from npformer.train.tasks import SequenceTask
from npformer.train.state import init_state, load_state
from npformer.train import trainer
from npformer.train.trainer import TrainingDiverged, best_record, evaluate_loss, train

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

    def eval_fn(params, seconds):
        calls.append(seconds)
        return {"val_loss": next(scripted)}

    state = run(6, out_dir=str(tmp_path), eval_fn=eval_fn, eval_every=2)
    evals = [(r["step"], r["val_loss"]) for r in state.history if r["kind"] == "eval"]
    assert evals == [(2, 3.0), (4, 1.0), (6, 2.0)] and len(calls) == 3  # no extra eval at the end
    _, best = load_state(tmp_path / "best.npz")
    _, last = load_state(tmp_path / "last.npz")
    assert best.step == 4 and last.step == 6
    assert all(seconds > 0 for seconds in calls)  # each evaluation is told its time
    assert all(0 <= r["eval_share"] <= 1 and r["eval_s"] >= 0 for r in state.history if r["kind"] == "eval")


def test_best_checkpoint_by_a_metric_to_maximize_where_the_loss_disagrees(tmp_path):
    """BLEU highest at step 4, the loss lowest at step 6: best.npz is step 4's."""
    scripted = iter([{"val_loss": 3.0, "dev_bleu": 5.0}, {"val_loss": 2.5, "dev_bleu": 12.0},
                     {"val_loss": 1.0, "dev_bleu": 9.0}])
    state = run(6, out_dir=str(tmp_path), eval_fn=lambda params, seconds: next(scripted), eval_every=2,
                best_key="dev_bleu", maximize=True)
    _, best = load_state(tmp_path / "best.npz")
    assert best.step == 4 and [r["dev_bleu"] for r in best.history if r["kind"] == "eval"] == [5.0, 12.0]
    assert best_record(state.history, "dev_bleu", maximize=True)["step"] == 4
    assert best_record(state.history, "val_loss")["step"] == 6


def test_an_evaluation_the_end_would_follow_closely_is_left_to_the_end(tmp_path):
    """With 7 steps and an evaluation every 3, step 6's would be followed by the end's
    one step later: it is left out, so that no evaluation follows fewer than 3 steps."""
    state = run(7, out_dir=str(tmp_path), eval_fn=lambda params, seconds: {"val_loss": 1.0}, eval_every=3,
                save_every=3)
    assert [r["step"] for r in state.history if r["kind"] == "eval"] == [3, 7]
    _, last = load_state(tmp_path / "last.npz")  # saved at 6, and again after the end's evaluation
    assert last.step == 7 and [r["step"] for r in last.history if r["kind"] == "eval"] == [3, 7]


def test_an_evaluation_is_put_off_until_the_time_since_the_last_has_earned_its_cost(monkeypatch):
    """Each step takes 1 s, each evaluation 3 s: an evaluation needs 3 x 19 = 57 s of
    training before it, so with one due every 10 steps only every 60th step evaluates;
    and by the clock, the one due 30 s before the end of a time budget is left to the end's."""
    clock = [0.0]
    monkeypatch.setattr(trainer, "time", SimpleNamespace(perf_counter=lambda: clock[0]))

    def eval_fn(params, seconds):
        clock[0] += 3.0
        return {"val_loss": 1.0}

    state = SimpleNamespace(params={}, step=0, history=[], comm=SimpleNamespace(bcast=lambda x, *a: x))
    budget = trainer.Budget(state, 1000, None)
    evaluation, bar = trainer.Evaluation(eval_fn, 10, "val_loss"), SimpleNamespace(write=lambda line: None)
    for t in range(1, 201):
        clock[0] += 1.0
        state.step = t
        if evaluation.due(t) and evaluation.affordable(t, budget, None):
            evaluation.run(state, bar)
    assert [r["step"] for r in state.history] == [10, 70, 130, 190]
    assert all(r["eval_share"] <= 0.05 for r in state.history[1:])
    timed = trainer.Budget(state, None, 10.0)  # 600 s
    assert timed.seconds_left(201, used=0.95, pace=1.0) == pytest.approx(30.0)
    clock[0] += 60.0  # 60 s since the last evaluation, 30 s left: the end's comes before an interval
    assert not evaluation.affordable(260, timed, used=0.95)
    assert evaluation.affordable(260, timed, used=0.5)


def test_an_evaluation_is_given_5_percent_of_the_time_since_the_last_and_records_its_cost(monkeypatch):
    """seconds = share / (1 - share) x the time since the last evaluation ended; the
    record's eval_share is the evaluation's part of its interval."""
    clock = [100.0]
    monkeypatch.setattr(trainer, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    given = []

    def eval_fn(params, seconds):
        given.append(seconds)
        clock[0] += 2.0  # the evaluation takes 2 s
        return {"val_loss": 1.0}

    evaluation = trainer.Evaluation(eval_fn, 10, "val_loss")
    state, lines = SimpleNamespace(params={}, step=10, history=[]), []
    bar = SimpleNamespace(write=lines.append)
    clock[0] += 38.0  # 38 s of training
    evaluation.run(state, bar)
    clock[0] += 95.0
    state.step = 20
    evaluation.run(state, bar)
    assert given == pytest.approx([38.0 * 0.05 / 0.95, 95.0 * 0.05 / 0.95])
    assert [(r["eval_s"], r["eval_share"]) for r in state.history] == [(2.0, 0.05), (2.0, round(2 / 97, 4))]
    assert lines[0] == "step 10: val_loss 1 (eval 5.0% of the time)"
    with pytest.raises(ValueError, match="eval_share"):
        trainer.Evaluation(eval_fn, 10, "val_loss", share=1.0)


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
