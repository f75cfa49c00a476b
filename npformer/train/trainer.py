"""The training loop, shared by the synthetic tasks and translation. Paper §5.

One step t = 1, 2, ...:
    batch          = batches(t)                         a pure function of t: resumable
    loss, g        = loss_and_grads(params, batch, rng)  forward + backward, dropout from rng
                                                        (split over the CPU workers: parallel.py)
    ||g||          = global norm; clipped to ``clip`` if set
    stop if loss or ||g|| is not finite                  (before the update: params stay good)
    lr_t           = factor * d_model^-0.5 * min(t^-0.5, t * warmup^-1.5)      §5.3
    params        <- Adam(params, g, lr_t)

Everything that changes during training lives in a ``TrainState``: the
parameters, Adam's moments, the step, the dropout generator and a history of
logged records. A checkpoint stores all of it (``save_state``/``load_state``),
so stopping at step k and resuming gives the same losses as never stopping.

Every ``eval_every`` steps ``eval_fn(params) -> {metric: value}`` runs and its
record joins the history; when its ``best_key`` (lower is better, default
"val_loss") improves, ``out_dir/best.npz`` is written. Every ``save_every``
steps and at the end, ``out_dir/last.npz`` is written. With ``keep_last`` K > 0
each of those saves also leaves ``out_dir/step-<t>.npz``, and only the K
newest of these are kept: the checkpoints that ``npformer average`` combines
(paper §6.1 averages the last 5).
"""
from __future__ import annotations

import math
import os
import re
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from npformer import checkpoint
from npformer.backend import backend_of, get_backend
from npformer.data.batching import Batch
from npformer.model.config import TransformerConfig
from npformer.model.params import init_params
from npformer.model.transformer import transformer_forward
from npformer.ops.cross_entropy import cross_entropy_forward
from npformer.train.optim import Adam, clip_grad_norm, global_norm
from npformer.train.parallel import Workers, as_workers, parallel_loss_and_grads
from npformer.train.progress import Progress
from npformer.train.schedule import noam_lr


class TrainingDiverged(RuntimeError):
    """The loss or the gradient norm stopped being a finite number."""


@dataclass
class TrainState:
    params: dict
    optimizer: Adam
    rng: object               # the backend generator that draws dropout masks
    seed: int
    step: int = 0             # updates done so far
    history: list = field(default_factory=list)  # {"kind": "train"|"eval", "step", ...}
    workers: Workers = field(default_factory=Workers)  # threads sharing each step (parallel.py)


def init_state(cfg: TransformerConfig, seed: int = 0, backend=None, dtype: str = "float32",
               workers=None) -> TrainState:
    """Fresh parameters and optimizer; the same ``seed`` (and number of
    ``workers``, default 1) gives the same run."""
    be = get_backend(backend)
    params = init_params(cfg, seed=seed, dtype=dtype, backend=be)
    return TrainState(params, Adam(params), be.rng(seed), seed, workers=as_workers(workers))


# --- saving and resuming -------------------------------------------------
def rng_state(state: TrainState) -> dict:
    """JSON-serialisable generator state. NumPy exposes it (``bit_generator.state``);
    CuPy keeps it on the device without an API, so there only the seed is saved."""
    bit_generator = getattr(state.rng, "bit_generator", None)
    saved = bit_generator.state if isinstance(state.rng, np.random.Generator) else None
    return {"seed": state.seed, "bit_generator": saved}


def restore_rng(be, saved: dict, step: int):
    """A generator continuing where ``saved`` left off. Without a saved NumPy state
    (a CuPy run, or a NumPy state resumed on CuPy) the stream restarts from a
    seed derived from (seed, step): resuming is then not bit-identical."""
    if saved.get("bit_generator") is not None and be.name == "numpy":
        rng = np.random.default_rng()
        rng.bit_generator.state = saved["bit_generator"]
        return rng
    derived = int(np.random.SeedSequence([saved["seed"], step]).generate_state(1)[0])
    return be.rng(derived)


def save_state(path, state: TrainState, cfg: TransformerConfig, tokenizer: dict | None = None,
               extra: dict | None = None) -> str:
    return checkpoint.save(path, state.params, cfg, optimizer=state.optimizer.state_dict(),
                           step=state.step, rng_state=rng_state(state), history=state.history,
                           tokenizer=tokenizer, extra=extra)


def load_state(path, backend=None, expected_config: TransformerConfig | None = None, workers=None):
    """``(TrainState, Checkpoint)`` from a checkpoint saved by ``save_state``."""
    ckpt = checkpoint.load(path, backend=backend, expected_config=expected_config)
    if ckpt.optimizer is None or ckpt.rng_state is None:
        raise ValueError(f"checkpoint {ckpt.path}: has no optimizer or rng state; it cannot be resumed")
    be = get_backend(backend)
    optimizer = Adam(ckpt.params)
    optimizer.load_state_dict(ckpt.optimizer)
    rng = restore_rng(be, ckpt.rng_state, ckpt.step)
    state = TrainState(ckpt.params, optimizer, rng, int(ckpt.rng_state["seed"]), ckpt.step, ckpt.history,
                       as_workers(workers))
    return state, ckpt


def step_checkpoint_path(out_dir: str, step: int) -> str:
    return os.path.join(out_dir, f"step-{step}.npz")


def step_checkpoints(out_dir: str) -> list:
    """The ``step-<t>.npz`` files in ``out_dir``, oldest step first."""
    steps = [int(m.group(1)) for name in os.listdir(out_dir) if (m := _STEP_FILE.fullmatch(name))]
    return [step_checkpoint_path(out_dir, t) for t in sorted(steps)]


_STEP_FILE = re.compile(r"step-(\d+)\.npz")


# --- evaluation ----------------------------------------------------------
def evaluate_loss(params, cfg: TransformerConfig, batches, workers=None) -> float:
    """Token-weighted mean loss (label-smoothed, as trained) over ``batches``,
    teacher-forced and without dropout; ``workers`` take several batches at once."""
    be = backend_of(*params.values())

    def batch_loss(b):
        logits, _ = transformer_forward(params, cfg, be.asarray(b.src), be.asarray(b.tgt_in))
        loss, ce = cross_entropy_forward(logits, be.asarray(b.tgt_out), cfg.pad_id, cfg.eps_ls)
        return float(loss) * ce.n_tokens, ce.n_tokens
    sums = as_workers(workers).map(batch_loss, batches)
    return sum(s for s, _ in sums) / sum(n for _, n in sums)


def best_so_far(history: list, key: str = "val_loss") -> float | None:
    values = [r[key] for r in history if r.get("kind") == "eval" and key in r]
    return min(values) if values else None


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

    Raises ``TrainingDiverged`` (and leaves the parameters alone) when the loss
    or the gradient norm is not finite.
    """
    be = backend_of(*state.params.values())
    src, tgt_in, tgt_out = (be.asarray(a) for a in (batch.src, batch.tgt_in, batch.tgt_out))
    loss, grads, n_tokens = parallel_loss_and_grads(state.params, cfg, src, tgt_in, tgt_out, state.rng,
                                                    state.workers)
    norm = clip_grad_norm(grads, clip, state.workers) if clip else global_norm(grads, state.workers)
    if not (math.isfinite(loss) and math.isfinite(norm)):
        raise TrainingDiverged(f"step {state.step + 1}: loss {loss}, gradient norm {norm}; "
                               "stopped before the update")
    state.optimizer.update(state.params, grads, lr, state.workers)
    be.synchronize()  # the step's time must include the queued device work
    state.step += 1
    return loss, norm, n_tokens


def train(state: TrainState, cfg: TransformerConfig, batches: Callable[[int], Batch], *,
          steps: int | None = None, minutes: float | None = None, warmup: int = 4000,
          lr_factor: float = 1.0, clip: float | None = None,
          eval_fn: Callable[[dict], dict] | None = None, eval_every: int = 0, best_key: str = "val_loss",
          out_dir: str | None = None, save_every: int = 0, log_every: int = 10,
          progress: bool = True, checkpoint_extra: dict | None = None,
          tokenizer: dict | None = None, keep_last: int = 0) -> TrainState:
    """Train ``state`` in place until ``state.step == steps`` or ``minutes`` have passed.

    ``batches(t)`` returns the Batch of step t (t counts from 1) and must be a
    pure function of t for resuming to be exact. ``steps`` is the total step
    count, counting steps done before a resume; ``minutes`` is the wall-clock
    budget of this call. A ``log_every`` record holds the token-weighted mean
    loss of its window, the last lr, the mean gradient norm and target tokens/s.
    """
    if steps is None and minutes is None:
        raise ValueError("train: give steps or minutes (or both)")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1):
        raise ValueError(f"train: steps must be a positive integer, got {steps!r}")
    if minutes is not None and not (math.isfinite(minutes) and minutes > 0):
        raise ValueError(f"train: minutes must be a positive number, got {minutes!r}")
    if keep_last and not (out_dir and save_every):
        raise ValueError("train: keep_last needs out_dir and save_every > 0 (the saves it keeps)")
    last_path = os.path.join(out_dir, "last.npz") if out_dir else None
    best_path = os.path.join(out_dir, "best.npz") if out_dir else None
    saved_at = state.step if last_path and os.path.exists(last_path) else None

    def save(path):
        return save_state(path, state, cfg, tokenizer=tokenizer, extra=checkpoint_extra)

    def save_last():
        if not keep_last:
            save(last_path)
            return
        checkpoint.link_or_copy(save(step_checkpoint_path(out_dir, state.step)), last_path)
        for old in step_checkpoints(out_dir)[:-keep_last]:
            os.remove(old)

    def evaluate():
        metrics = eval_fn(state.params)
        best = best_so_far(state.history, best_key)
        state.history.append({"kind": "eval", "step": state.step, **metrics})
        bar.write(f"step {state.step}: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
        if best_path and best_key in metrics and (best is None or metrics[best_key] < best):
            save(best_path)

    start, before = time.perf_counter(), elapsed_so_far(state.history)
    bar = Progress(total=steps, initial=state.step, seconds=None if minutes is None else 60 * minutes,
                   enabled=progress)
    window, total = _Window(), _Window()  # since the last train record / in this call
    try:
        while (steps is None or state.step < steps) and (
                minutes is None or time.perf_counter() - start < 60 * minutes):
            t = state.step + 1
            lr = noam_lr(t, cfg.d_model, warmup, lr_factor)
            batch = batches(t)
            t0 = time.perf_counter()
            try:
                loss, norm, n_tokens = train_step(state, cfg, batch, lr, clip)
            except TrainingDiverged as e:
                raise TrainingDiverged(f"{e} (last good checkpoint: "
                                       f"{last_path if saved_at is not None else 'none'})") from None
            seconds = time.perf_counter() - t0

            window.add(loss, n_tokens, norm, seconds)
            total.add(loss, n_tokens, norm, seconds)
            bar.update(t, window.loss_sum / window.tokens, lr, total.tokens / total.seconds)
            if log_every and t % log_every == 0:
                state.history.append(window.close(t, lr, before + time.perf_counter() - start))
            if eval_fn and eval_every and t % eval_every == 0:
                evaluate()
            if last_path and save_every and t % save_every == 0:
                save_last()
                saved_at = t
        if window.steps:
            state.history.append(window.close(state.step, lr, before + time.perf_counter() - start))
        last_eval = next((r["step"] for r in reversed(state.history) if r.get("kind") == "eval"), None)
        if eval_fn and last_eval != state.step:
            evaluate()
        if last_path and saved_at != state.step:
            save_last()
    finally:
        bar.close()
    return state


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

    def close(self, step: int, lr: float, elapsed: float) -> dict:
        """The train record of the steps added since the last close; starts afresh."""
        record = {"kind": "train", "step": step, "loss": self.loss_sum / self.tokens, "lr": lr,
                  "grad_norm": self.norm_sum / self.steps, "tokens": self.tokens,
                  "tokens_per_s": self.tokens / self.seconds, "elapsed_s": elapsed}
        self.reset()
        return record
