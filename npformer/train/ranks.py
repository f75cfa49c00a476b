"""Data parallelism over processes (ranks) and threads, with one split rule.

P ranks, each with W worker threads (parallel.py), share every step's batch:

    every rank   draws the same global batch: ``batches(t)`` is a pure function of t
    split        the batch's sentences into at most P x W token-balanced shards
                 (``parallel.shard_rows``), in order: rank r takes shards
                 rW .. rW + W - 1, its thread w shard rW + w
                 (``parallel.parallel_loss_and_grads`` does all of this step)
    backward     shard s seeded with dloss = N_s / N, where N counts the targets
                 of the whole batch (every rank has it, so all agree on N)
    sum          each rank adds its threads' gradients into a few contiguous
                 buckets (distributed/buckets.py); one all-reduce sums the ranks'
    update       every rank applies the same Adam step to the same sum:
                 the parameters stay identical, bit for bit

so the step computes sum_s (N_s / N) dloss_s/dtheta, the whole batch's
gradient (the derivation is in parallel.py), whatever P and W are. Only the
summation order depends on the split.

Dropout: shard s draws from its own generator, built once per run from
(seed, s) (``parallel.worker_generators``); rank r builds those of its shards.
A run on P ranks of W threads therefore draws the same masks as a run on P'
ranks of W' threads whenever P x W = P' x W'; 2 ranks of 1 thread and 1
process of 2 threads even compute the same floats (one addition of two
partial sums). A checkpoint gathers every rank's generator states, so a resume
on the same P x W continues exactly.
"""
from __future__ import annotations

import hashlib
import os

from npformer.backend import backend_of
from npformer.runtime.distributed.communicator import RanksDisagree, digest
from npformer.runtime.workers import available_cores, default_workers, limit_blas_threads, make_workers


def threads_per_rank(n: int | None, backend, comm) -> int:
    """``--workers``, or by default this rank's share of the machine's cores: the
    cores it may run on, divided between the ranks on this machine unless the
    launcher bound each rank to its own cores already. On several ranks, each
    rank's BLAS keeps to that share too."""
    from npformer.backend import get_backend
    name = get_backend(backend).name
    if comm.size == 1:
        return default_workers(name) if n is None else n
    bound = available_cores() < (os.cpu_count() or 0)  # the launcher gave each rank its own cores
    share = available_cores() if bound else max(1, available_cores() // comm.local_size)
    # each rank's BLAS, too, keeps to its share: P ranks with a thread per core each would
    # put P threads on every core
    limit_blas_threads(share)
    return min(default_workers(name), share) if n is None else n


def workers_per_rank(n: int | None, backend, comm):
    """The worker pool of this rank: ``threads_per_rank`` threads."""
    return make_workers(threads_per_rank(n, backend, comm), backend)


def parameters_digest(params: dict) -> str:
    """One digest of every parameter's name, dtype, shape and bytes, in order."""
    h = hashlib.blake2b(digest_size=12)
    for k, a in params.items():
        h.update(k.encode())
        h.update(digest(backend_of(a).to_host(a)).encode())
    return h.hexdigest()


def fingerprint(state, cfg, **more) -> dict:
    """What every rank must agree on before the first step: the model, the state it
    starts from (parameters, optimizer, step, seed) and the layout, plus ``more`` (the
    run settings, digests of the vocabulary and of the first batch)."""
    from npformer import __version__
    be = backend_of(*state.params.values())
    return {"npformer": __version__, "config": cfg.to_dict(), "backend": be.name,
            "dtype": str(next(iter(state.params.values())).dtype), "workers": state.workers.n,
            "step": state.step, "parameters": parameters_digest(state.params),
            "optimizer": digest({"t": state.optimizer.t, "m": parameters_digest(state.optimizer.m),
                                 "v": parameters_digest(state.optimizer.v)}),
            "seed": state.seed, **more}


def require_parameters_agree(state) -> None:
    """Raise ``RanksDisagree`` on every rank when the ranks' parameters differ."""
    digests = state.comm.allgather(parameters_digest(state.params), "the end-of-run parameter check")
    differ = [r for r, d in enumerate(digests) if d != digests[0]]
    if differ:
        raise RanksDisagree(f"after step {state.step} the parameters of rank(s) {differ} differ from rank 0's; "
                            "the ranks' all-reduce or update is not deterministic")
