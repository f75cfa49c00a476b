"""The training loop, shared by the synthetic tasks and translation. Paper §5.

One step t = 1, 2, ...:
    batch          = batches(t)                         a pure function of t: resumable
    check the batch on the host                         (ids in range, some targets)
    loss, g        = loss_and_grads(params, batch, rng)  forward + backward, dropout from rng
                                                        (split over the CPU workers and the ranks
                                                        of an MPI run: parallel.py)
    ||g||          = global norm
    read loss and ||g|| to the host, together           the step's one wait for a GPU
    stop if loss or ||g|| is not finite                  (before the update: params stay good)
    lr_t           = schedule(t, progress)               §5.3's, or linear to 0 over the budget
    params        <- Adam(params, s g, lr_t)            s = min(1, clip / ||g||) if clip is set

The run's state (parameters, Adam's moments, step, dropout generators,
history) is a ``TrainState``, and its checkpoints are kept by state.py:
stopping at step k and resuming gives the same losses as never stopping.

Every ``eval_every`` steps ``eval_fn(params, seconds) -> {metric: value}``
runs, given the ``seconds`` that keep the evaluations to ``eval_share`` (5%)
of the run; one that would take more is put off, or left to the end's
(``Evaluation``). Its record, with what it cost, joins the history; when its
``best_key`` improves (lower is better, or higher with ``maximize``; default
"val_loss", lower), ``out_dir/best.npz`` is written. Every ``save_every``
steps and at the end, ``out_dir/last.npz`` is written (and with ``keep_last``
K > 0, the K newest ``step-<t>.npz``).

On several ranks (``state.comm``), every rank runs this loop on the same
batches and keeps the same parameters; rank 0 alone shows progress, evaluates
and writes checkpoints while the others wait for it, and the ranks agree on
when a time budget runs out.
"""
from __future__ import annotations

import math
import time
from typing import Callable

import numpy as np

from npformer.errors import UserError
from npformer.data.batching import Batch
from npformer.model.config import TransformerConfig
from npformer.model.params import params_backend
from npformer.model.transformer import validate_batch, transformer_forward
from npformer.ops.cross_entropy import cross_entropy_forward
from npformer.runtime.flat import FlatDict
from npformer.runtime.workers import as_workers
from npformer.train.optim import clip_scale, squared_norm
from npformer.train.parallel import parallel_loss_and_grads
from npformer.train.progress import Progress
from npformer.train.ranks import require_parameters_agree
from npformer.train.schedule import Schedule
from npformer.train.state import Saves, TrainState, rng_state


# An evaluation may take this share of the run's time (Evaluation).
EVAL_SHARE = 0.05


class TrainingDiverged(UserError):
    """The loss or the gradient norm stopped being a finite number."""


# --- evaluation ----------------------------------------------------------
def evaluate_loss(params, cfg: TransformerConfig, batches, workers=None) -> float:
    """Token-weighted mean loss (label-smoothed, as trained) over ``batches``,
    teacher-forced and without dropout; ``workers`` take several batches at once.
    The sum stays on the device until the end: one read for all the batches."""
    be = params_backend(params)

    def batch_loss(b):
        n_tokens = validate_batch(cfg, b.src, b.tgt_in, b.tgt_out)
        logits, _ = transformer_forward(params, cfg, be.asarray(b.src), be.asarray(b.tgt_in))
        loss, _ = cross_entropy_forward(logits, be.asarray(b.tgt_out), cfg.pad_id, cfg.eps_ls)
        return loss.astype(be.xp.float64) * n_tokens, n_tokens
    sums = as_workers(workers).map(batch_loss, batches)
    return float(sum(s for s, _ in sums)) / sum(n for _, n in sums)


def best_record(history: list, key: str = "val_loss", maximize: bool = False) -> dict | None:
    """The eval record of ``history`` with the best ``key`` (the lowest, or the highest
    when ``maximize``), the earliest of equals: the one ``best.npz`` holds."""
    best = None
    for r in history:
        if r.get("kind") == "eval" and key in r and (best is None or better(r[key], best[key], maximize)):
            best = r
    return best


def better(value: float, than: float, maximize: bool) -> bool:
    return value > than if maximize else value < than


def throughput(records: list) -> float | None:
    """Target tokens per second of training steps over the given train records."""
    records = [r for r in records if r.get("kind") == "train"]
    seconds = sum(r["tokens"] / r["tokens_per_s"] for r in records)
    return sum(r["tokens"] for r in records) / seconds if records else None


def elapsed_so_far(history: list) -> float:
    """Training seconds recorded by earlier calls (the last train record)."""
    return next((r["elapsed_s"] for r in reversed(history) if r.get("kind") == "train"), 0.0)


# --- the loop ------------------------------------------------------------
def train_step(state: TrainState, cfg: TransformerConfig, batch: Batch, lr: float,
               clip: float | None = None) -> tuple[float, float, int]:
    """One update of ``state`` at learning rate ``lr``: ``(loss, gradient norm, n_tokens)``.

    The batch is checked on the host before anything is sent to the device. The
    loss and the squared gradient norm come back to the host in one read, which
    on a GPU is the step's only wait. Raises ``TrainingDiverged`` (and leaves the
    parameters alone) when the loss or the gradient norm is not finite.
    """
    be = params_backend(state.params)
    validate_batch(cfg, batch.src, batch.tgt_in, batch.tgt_out)
    loss, grads, n_tokens = parallel_loss_and_grads(state.params, cfg, batch.src, batch.tgt_in, batch.tgt_out,
                                                    state.rngs, state.workers, state.comm,
                                                    f"step {state.step + 1}'s gradient all-reduce")
    if be.on_device:
        # One buffer, laid out as the parameters' (the backward returns its gradients in
        # another order): the norm and Adam are then one kernel each, and Adam's kernel
        # pairs params.flat[i] with grads.flat[i].
        grads = FlatDict(grads, layout=state.params)
    sq_norm = squared_norm(grads, state.workers)
    loss, sq_norm = (float(x) for x in be.to_host(be.xp.stack([be.xp.asarray(loss, dtype=sq_norm.dtype),
                                                                 sq_norm])))
    norm = math.sqrt(sq_norm)
    if not (math.isfinite(loss) and math.isfinite(norm)):
        raise TrainingDiverged(f"step {state.step + 1}: loss {loss}, gradient norm {norm}; "
                               "stopped before the update")
    state.optimizer.update(state.params, grads, lr, state.workers, grad_scale=clip_scale(norm, clip))
    be.synchronize()  # the step's time must include the queued device work
    state.step += 1
    return loss, norm, n_tokens


def train(state: TrainState, cfg: TransformerConfig, batches: Callable[[int], Batch], *,
          steps: int | None = None, minutes: float | None = None, schedule: Schedule | None = None,
          clip: float | None = None,
          eval_fn: Callable[[dict, float], dict] | None = None, eval_every: int = 0,
          best_key: str = "val_loss", maximize: bool = False, eval_share: float = EVAL_SHARE,
          out_dir: str | None = None, save_every: int = 0, log_every: int = 10,
          progress: bool = True, checkpoint_extra: dict | None = None,
          tokenizer: dict | None = None, keep_last: int = 0) -> TrainState:
    """Train ``state`` in place until ``state.step == steps`` or ``minutes`` have passed.

    ``batches(t)`` returns the Batch of step t (t counts from 1) and must be a
    pure function of t for resuming to be exact. ``steps`` is the total step
    count, counting steps done before a resume; ``minutes`` is the wall-clock
    budget of this call. A ``log_every`` record holds the token-weighted mean
    loss of its window, the last lr, the mean gradient norm and target tokens/s.
    ``progress``: show a progress bar (rank 0 only). ``eval_fn(params, seconds)``
    is given the seconds its evaluation may take: ``eval_share`` of the time
    since the last one (see ``Evaluation``); ``best_key`` and ``maximize`` say which
    of its metrics picks ``best.npz``.
    """
    schedule = schedule or Schedule("noam", 4000, d_model=cfg.d_model)
    validate_train_options(cfg, steps, minutes, schedule)
    budget = Budget(state, steps, minutes)
    saves = Saves(state, cfg, out_dir, save_every, keep_last, tokenizer, checkpoint_extra)
    evaluation = Evaluation(eval_fn, eval_every, best_key, maximize, eval_share)
    bar = Progress(total=steps, initial=state.step, seconds=None if minutes is None else 60 * minutes,
                   enabled=progress and state.comm.rank == 0)
    if state.comm.size > 1:
        bar.write(f"training on {state.comm.describe()}, {state.workers.n} worker thread(s) each")
    try:
        run_steps(state, cfg, batches, schedule, clip, budget, saves, evaluation, log_every, bar)
        finish(state, saves, evaluation, bar)
    finally:
        bar.close()
    return state


def validate_train_options(cfg, steps, minutes, schedule) -> None:
    if steps is None and minutes is None:
        raise ValueError("train: give steps or minutes (or both)")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1):
        raise ValueError(f"train: steps must be a positive integer, got {steps!r}")
    if minutes is not None and not (math.isfinite(minutes) and minutes > 0):
        raise ValueError(f"train: minutes must be a positive number, got {minutes!r}")
    if schedule.kind == "noam" and schedule.d_model != cfg.d_model:
        raise ValueError(f"train: the schedule was built for d_model={schedule.d_model}, the model has {cfg.d_model}")


def run_steps(state: TrainState, cfg, batches, schedule: Schedule, clip, budget: Budget, saves: Saves,
              evaluation: Evaluation, log_every: int, bar: Progress) -> None:
    """The steps of one ``train`` call, each followed by its records, evaluation and save."""
    window, total = _Window(), _Window()  # since the last train record / in this call
    lr = share = None
    while not budget.steps_done(state.step):
        used = budget.time_used()
        if used is not None and used >= 1:
            break
        t = state.step + 1
        share = budget.share_at(t, used)
        lr = schedule(t, share)
        batch = batches(t)
        t0 = time.perf_counter()
        try:
            loss, norm, n_tokens = train_step(state, cfg, batch, lr, clip)
        except TrainingDiverged as e:
            raise TrainingDiverged(f"{e} (last good checkpoint: {saves.last_good()})") from None
        seconds = time.perf_counter() - t0

        window.add(loss, n_tokens, norm, seconds)
        total.add(loss, n_tokens, norm, seconds)
        bar.update(t, window.loss_sum / window.tokens, lr, total.tokens / total.seconds)
        if log_every and t % log_every == 0:
            state.history.append(window.close(t, lr, budget.elapsed(), share))
        # rank 0 times the evaluations: its decision is everyone's (each rank gathers its generators)
        do_eval = evaluation.due(t) and state.comm.bcast(evaluation.affordable(t, budget, used), 0,
                                                         f"the decision to evaluate at step {t}")
        do_save = saves.due(t)
        if do_eval or do_save:
            evaluate_and_save(state, evaluation, saves, bar, do_eval, do_save)
    if window.steps:
        state.history.append(window.close(state.step, lr, budget.elapsed(), share))


def finish(state: TrainState, saves: Saves, evaluation: Evaluation, bar: Progress) -> None:
    """The end of a ``train`` call: evaluate and save the last step unless that was
    just done, and (on several ranks) check that the ranks' parameters agree."""
    comm = state.comm
    last_eval = next((r["step"] for r in reversed(state.history) if r.get("kind") == "eval"), None)
    # rank 0 alone keeps the evaluation records: its decision is everyone's
    do_eval = comm.bcast(bool(evaluation.eval_fn and last_eval != state.step), 0, "the end-of-run evaluation")
    # last.npz is saved again after an evaluation at its step, which its history must hold
    do_save = bool(saves.last_path and (saves.saved_at != state.step or do_eval))
    if do_eval or do_save:
        evaluate_and_save(state, evaluation, saves, bar, do_eval, do_save)
    if comm.size > 1:
        require_parameters_agree(state)


def evaluate_and_save(state: TrainState, evaluation: Evaluation, saves: Saves, bar: Progress,
                      do_eval: bool, do_save: bool) -> None:
    """Rank 0 evaluates and saves; every rank first gives its generators' states
    to the checkpoint, and afterwards waits for rank 0."""
    generators = rng_state(state)  # on several ranks: gathered from all of them
    if state.comm.rank == 0:
        if do_eval:
            metrics = evaluation.run(state, bar)
            if evaluation.improved(metrics):
                saves.save_best(generators)
        if do_save:
            saves.save_last(generators)
    if do_save:
        saves.saved_at = state.step
    if state.comm.size > 1:
        state.comm.barrier(f"the wait for rank 0's evaluation and checkpoint at step {state.step}")


class Budget:
    """When a ``train`` call stops, and the share of the whole run's budget used
    before a step, which the linear schedule decays by."""

    def __init__(self, state: TrainState, steps: int | None, minutes: float | None):
        self.steps, self.minutes, self.comm = steps, minutes, state.comm
        self.start, self.first = time.perf_counter(), state.step
        self.elapsed_before = elapsed_so_far(state.history)
        # The part of the budget used before this call: a resumed run continues its decay.
        self.share_before = next((r["progress"] for r in reversed(state.history) if "progress" in r), 0.0)

    def steps_done(self, step: int) -> bool:
        return self.steps is not None and step >= self.steps

    def seconds_left(self, t: int, used: float | None, pace: float) -> float | None:
        """How long this call will go on after step t: the steps left at ``pace``
        seconds a step, or the time budget's rest (``used`` of it before step t)."""
        left = [] if self.steps is None else [(self.steps - t) * pace]
        if used is not None:
            left.append((1 - used) * 60 * self.minutes)
        return min(left) if left else None

    def time_used(self) -> float | None:
        """The share of this call's time budget used, on rank 0's clock: every rank stops
        (and sets its learning rate) at the same step, or they would hang or drift apart."""
        if self.minutes is None:
            return None
        return self.comm.bcast((time.perf_counter() - self.start) / (60 * self.minutes), 0,
                               "the time-budget clock")

    def share_at(self, t: int, used: float | None) -> float:
        """The share of the whole run's budget used before step t."""
        shares = [] if self.steps is None else [(t - 1) / self.steps]
        if used is not None:
            shares.append(self.share_before + (1 - self.share_before) * used)
        return min(1.0, max(shares))

    def elapsed(self) -> float:
        """Training seconds of the whole run so far, earlier calls included."""
        return self.elapsed_before + time.perf_counter() - self.start


class Evaluation:
    """``eval_fn(params, seconds)`` at the due steps; its record joins the history.

    The evaluations should cost at most ``share`` of the run. ``seconds``, the
    time an evaluation is given, is share / (1 - share) x the seconds since the
    previous one ended (or this ``train`` call began): evaluation / (training +
    evaluation) is then ``share``. Every record says what it cost: ``eval_s``, and
    ``eval_share``, that fraction of its interval. A due evaluation is put off
    (``affordable``) while the time since the last one has not earned the last
    one's cost, and left to the end's when the end would follow before an
    interval as long has passed: each evaluation then keeps to its share, the
    end's included, when ``eval_fn`` keeps to its ``seconds``."""

    def __init__(self, eval_fn, every: int, best_key: str, maximize: bool = False, share: float = EVAL_SHARE):
        if not 0 < share < 1:
            raise ValueError(f"train: eval_share must be in (0, 1), got {share!r}")
        self.eval_fn, self.every, self.best_key, self.maximize, self.share = eval_fn, every, best_key, maximize, share
        self.best = None
        self.since, self.since_step, self.cost = time.perf_counter(), None, None

    def due(self, t: int) -> bool:
        return bool(self.eval_fn and self.every and t % self.every == 0)

    def affordable(self, t: int, budget: Budget, used: float | None) -> bool:
        """Whether to evaluate at the due step t (see the class docstring)."""
        trained = time.perf_counter() - self.since
        needed = 0.0 if self.cost is None else self.cost * (1 - self.share) / self.share
        if trained < needed:
            return False
        pace = trained / max(1, t - (budget.first if self.since_step is None else self.since_step))
        left = budget.seconds_left(t, used, pace)
        return left is None or not 0 < left < max(needed, trained)

    def run(self, state: TrainState, bar: Progress) -> dict:
        self.best = best_record(state.history, self.best_key, self.maximize)  # before this record joins
        start = time.perf_counter()
        trained = start - self.since
        metrics = self.eval_fn(state.params, self.share / (1 - self.share) * trained)
        self.since, self.since_step = time.perf_counter(), state.step
        seconds = self.cost = self.since - start
        cost = {"eval_s": round(seconds, 3), "eval_share": round(seconds / (seconds + trained), 4)}
        state.history.append({"kind": "eval", "step": state.step, **metrics, **cost})
        bar.write(f"step {state.step}: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items())
                  + f" (eval {100 * cost['eval_share']:.1f}% of the time)")
        return metrics

    def improved(self, metrics: dict) -> bool:
        """Better than every earlier record: lower, or higher with ``maximize``."""
        return self.best_key in metrics and (
            self.best is None or better(metrics[self.best_key], self.best[self.best_key], self.maximize))


class _Window:
    """Sums over a run of steps, turned into one train record by ``close``."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.loss_sum, self.tokens, self.norm_sum, self.steps, self.seconds = 0.0, 0, 0.0, 0, 0.0

    def add(self, loss: float, n_tokens: int, norm: float, seconds: float) -> None:
        self.loss_sum += loss * n_tokens  # the loss is a per-token mean: weight it back
        self.tokens += n_tokens
        self.norm_sum += norm
        self.steps += 1
        self.seconds += seconds

    def close(self, step: int, lr: float, elapsed: float, progress: float) -> dict:
        """The train record of the steps added since the last close; starts afresh."""
        record = {"kind": "train", "step": step, "loss": self.loss_sum / self.tokens, "lr": lr,
                  "grad_norm": self.norm_sum / self.steps, "tokens": self.tokens,
                  "tokens_per_s": self.tokens / self.seconds, "elapsed_s": elapsed, "progress": progress}
        self.reset()
        return record
