"""What training changes, and how it is kept on disk: ``TrainState``, its
checkpoints and its dropout generators' states.

Everything that changes during training lives in a ``TrainState``: the
parameters, Adam's moments, the step, the dropout generators (one per worker)
and a history of logged records. On a device backend the parameters are a
``FlatDict`` (npformer/runtime/flat.py), so that Adam updates them in one kernel. A checkpoint
stores all of it (``save_state``/``load_state``), so stopping at step k and
resuming gives the same losses as never stopping.

A run's checkpoints in its ``out_dir`` (``Saves``):

    last.npz       every ``save_every`` steps and at the end of a ``train`` call
    best.npz       whenever the evaluation's chosen metric improves (trainer.py decides when)
    step-<t>.npz   with ``keep_last`` K > 0, each save of last.npz also leaves one,
                   and only the K newest are kept: the checkpoints that
                   ``npformer average`` combines (paper §6.1 averages the last 5)

The training loop itself is trainer.py.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import numpy as np

from npformer import checkpoint
from npformer.backend import get_backend
from npformer.errors import UserError
from npformer.model.config import TransformerConfig
from npformer.model.params import init_params, params_backend
from npformer.runtime.distributed.communicator import Communicator, SingleProcess
from npformer.runtime.flat import FlatDict
from npformer.runtime.workers import Workers, as_workers
from npformer.train.optim import Adam
from npformer.train.parallel import worker_generators


@dataclass
class TrainState:
    params: dict
    optimizer: Adam
    rngs: list                # the backend generators that draw dropout masks, one per worker
    seed: int
    step: int = 0             # updates done so far
    history: list = field(default_factory=list)  # {"kind": "train"|"eval", "step", ...}
    workers: Workers = field(default_factory=Workers)  # threads sharing each step (npformer/runtime/workers.py)
    comm: Communicator = field(default_factory=SingleProcess)  # the ranks sharing each step (ranks.py)


def trainable(params: dict) -> dict:
    """The parameters in the layout training wants: a FlatDict on a device backend
    (one kernel updates them all), the dict itself on the host."""
    return FlatDict(params) if params_backend(params).on_device else params


def init_state(cfg: TransformerConfig, seed: int = 0, backend=None, dtype: str = "float32",
               workers=None, comm: Communicator | None = None) -> TrainState:
    """Fresh parameters and optimizer; the same ``seed`` (and number of
    ``workers``, default 1) gives the same run."""
    be = get_backend(backend)
    params = trainable(init_params(cfg, seed=seed, dtype=dtype, backend=be))
    workers, comm = as_workers(workers, be), comm or SingleProcess()
    rngs = worker_generators(be, seed, workers.n, first=comm.rank * workers.n)
    return TrainState(params, Adam(params), rngs, seed, workers=workers, comm=comm)


# --- the dropout generators ----------------------------------------------
def rng_state(state: TrainState) -> dict:
    """JSON-serialisable generator states, of every shard's generator (on several
    ranks, gathered from all of them: every rank must call this together). NumPy
    exposes them (``bit_generator.state``); CuPy keeps them on the device without
    an API, so there only the seed is saved."""
    saved = [g.bit_generator.state if isinstance(g, np.random.Generator) else None for g in state.rngs]
    if state.comm.size > 1:
        saved = [s for rank in state.comm.allgather(saved, "the gathering of the dropout generators")
                 for s in rank]
    if any(s is None for s in saved):
        saved = None
    return {"seed": state.seed, "bit_generator": saved[0] if saved else None,
            "worker_bit_generators": saved[1:] if saved else None}


def restore_rngs(be, saved: dict, step: int, n: int, comm=None) -> list:
    """The generators of this rank's ``n`` shards, continuing where ``saved`` left
    off. Without saved NumPy states for all P x n shards (a CuPy run, a NumPy
    state resumed on CuPy, another layout) the streams restart from seeds
    derived from (seed, step): resuming is then not bit-identical."""
    P, r = (1, 0) if comm is None else (comm.size, comm.rank)
    states = [saved.get("bit_generator")] + list(saved.get("worker_bit_generators") or [])
    if be.name == "numpy" and len(states) == P * n and all(s is not None for s in states):
        rngs = [np.random.default_rng() for _ in range(n)]
        for g, s in zip(rngs, states[r * n:(r + 1) * n]):
            g.bit_generator.state = s
        return rngs
    derived = int(np.random.SeedSequence([saved["seed"], step]).generate_state(1)[0])
    return worker_generators(be, derived, n, first=r * n)


# --- checkpoints -----------------------------------------------------------
def save_state(path, state: TrainState, cfg: TransformerConfig, tokenizer: dict | None = None,
               extra: dict | None = None, generators: dict | None = None) -> str:
    """Write a checkpoint; ``generators`` is ``rng_state(state)`` when the caller has
    it already (on several ranks it is gathered by all of them, before rank 0 saves)."""
    return checkpoint.save(path, state.params, cfg, optimizer=state.optimizer.state_dict(),
                           step=state.step, rng_state=generators or rng_state(state), history=state.history,
                           tokenizer=tokenizer, extra=extra)


def load_state(path, backend=None, workers=None, comm: Communicator | None = None):
    """``(TrainState, Checkpoint)`` from a checkpoint saved by ``save_state``."""
    ckpt = checkpoint.load(path, backend=backend)
    if ckpt.optimizer is None or ckpt.rng_state is None:
        raise UserError(f"checkpoint {ckpt.path}: has no optimizer or rng state, so it cannot be resumed; "
                        "expected a last.npz written by npformer train (not, say, npformer average's output)")
    be = get_backend(backend)
    params = trainable(ckpt.params)
    optimizer = Adam(params)
    optimizer.load_state_dict(ckpt.optimizer)
    workers, comm = as_workers(workers, be), comm or SingleProcess()
    rngs = restore_rngs(be, ckpt.rng_state, ckpt.step, workers.n, comm)
    state = TrainState(params, optimizer, rngs, int(ckpt.rng_state["seed"]), ckpt.step, ckpt.history, workers,
                       comm)
    return state, ckpt


def step_checkpoint_path(out_dir: str, step: int) -> str:
    return os.path.join(out_dir, f"step-{step}.npz")


def step_checkpoints(out_dir: str) -> list:
    """The ``step-<t>.npz`` files in ``out_dir``, oldest step first."""
    steps = [int(m.group(1)) for name in os.listdir(out_dir) if (m := _STEP_FILE.fullmatch(name))]
    return [step_checkpoint_path(out_dir, t) for t in sorted(steps)]


_STEP_FILE = re.compile(r"step-(\d+)\.npz")


def validate_saves(out_dir: str | None, save_every: int, keep_last: int) -> None:
    """``keep_last`` keeps some of the saves: it needs a directory and saves to keep."""
    if keep_last and not (out_dir and save_every):
        raise ValueError("keep_last needs out_dir and save_every > 0: it keeps the step-<t>.npz of those saves")


class Saves:
    """A run's checkpoints in ``out_dir`` (see the module docstring)."""

    def __init__(self, state: TrainState, cfg, out_dir, save_every: int, keep_last: int, tokenizer, extra):
        validate_saves(out_dir, save_every, keep_last)
        self.state, self.cfg, self.out_dir = state, cfg, out_dir
        self.save_every, self.keep_last, self.tokenizer, self.extra = save_every, keep_last, tokenizer, extra
        self.last_path = os.path.join(out_dir, "last.npz") if out_dir else None
        self.best_path = os.path.join(out_dir, "best.npz") if out_dir else None
        self.saved_at = state.step if self.last_path and os.path.exists(self.last_path) else None

    def due(self, t: int) -> bool:
        return bool(self.last_path and self.save_every and t % self.save_every == 0)

    def last_good(self) -> str:
        return self.last_path if self.saved_at is not None else "none"

    def save(self, path: str, generators: dict) -> str:
        return save_state(path, self.state, self.cfg, tokenizer=self.tokenizer, extra=self.extra,
                          generators=generators)

    def save_best(self, generators: dict) -> None:
        if self.best_path:
            self.save(self.best_path, generators)

    def save_last(self, generators: dict) -> None:
        if not self.keep_last:
            self.save(self.last_path, generators)
            return
        kept = self.save(step_checkpoint_path(self.out_dir, self.state.step), generators)
        checkpoint.link_or_copy(kept, self.last_path)
        for old in step_checkpoints(self.out_dir)[:-self.keep_last]:
            os.remove(old)
