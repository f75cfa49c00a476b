"""Data parallelism over processes (ranks) and threads, with one split rule.

P ranks, each with W worker threads (parallel.py), share every step's batch:

    every rank   draws the same global batch: ``batches(t)`` is a pure function of t
    split        the batch's sentences into at most P x W token-balanced shards
                 (``parallel.shard_rows``), in order: rank r takes shards
                 rW .. rW + W - 1, its thread w shard rW + w
    backward     shard s seeded with dloss = N_s / N, where N counts the targets
                 of the whole batch (every rank has it, so all agree on N)
    sum          each rank adds its threads' gradients into a few contiguous
                 buckets (distributed/buckets.py); one all-reduce sums the ranks'
    update       every rank applies the same Adam step to the same sum:
                 the parameters stay identical, bit for bit

so the step computes sum_s (N_s / N) dloss_s/dtheta, the whole batch's
gradient (the derivation is in parallel.py), whatever P and W are. Only the
summation order depends on the split.

Dropout: the run's generator draws one seed per shard, P x W of them on every
rank, so the generators stay in step across ranks (rank 0's, saved in the
checkpoint, is everyone's) and shard s's masks depend only on s. A run on P
ranks of W threads therefore draws the same masks as a run on P' ranks of W'
threads whenever P x W = P' x W'; 2 ranks of 1 thread and 1 process of 2
threads even compute the same floats (one addition of two partial sums).
"""
from __future__ import annotations

import hashlib
import os

from npformer.backend import backend_of
from npformer.distributed.buckets import Buckets
from npformer.distributed.communicator import RanksDisagree, digest
from npformer.model.transformer import loss_and_grads
from npformer.train.parallel import as_workers, available_cores, default_workers, make_workers, shard_rows


def rank_shards(tgt_out, pad_id: int, workers: int, rank: int, ranks: int):
    """``(shards, mine)``: the batch's ``shard_rows`` for ``ranks x workers`` shards
    and the indices of those that rank ``rank`` computes (possibly none)."""
    shards = shard_rows(tgt_out, pad_id, workers * ranks)
    return shards, range(rank * workers, min((rank + 1) * workers, len(shards)))


def ranks_loss_and_grads(params, cfg, src, tgt_in, tgt_out, rng, workers, comm,
                         what: str = "the gradient all-reduce"):
    """``(loss, grads, N)`` of the whole batch, like ``loss_and_grads``, computed by
    every rank of ``comm`` together; ``grads`` are views into the summed buckets
    (valid until the next call)."""
    workers = as_workers(workers)
    be = backend_of(src, tgt_in, tgt_out)
    shards, mine = rank_shards(tgt_out, cfg.pad_id, workers.n, comm.rank, comm.size)
    N = sum(n_s for _, n_s in shards)
    seeds = None if rng is None else [int(s) for s in rng.integers(0, 2 ** 63 - 1, size=len(shards))]

    def run(i):
        s, n_s = shards[i]
        return loss_and_grads(params, cfg, src[s], tgt_in[s], tgt_out[s],
                              None if seeds is None else be.rng(seeds[i]), dloss=n_s / N)

    results = workers.map(run, mine)
    local_loss = sum(r[0] * shards[i][1] / N for r, i in zip(results, mine))
    if comm.buckets is None or not comm.buckets.matches(params):
        comm.buckets = Buckets(params)
    grads = comm.buckets.fill([r[1] for r in results], workers)
    del results  # the threads' gradients: the buckets hold their sum now
    comm.allreduce_sum(comm.buckets.buffers, what)
    loss, = comm.sum_floats([local_loss], "the loss's sum over ranks")
    return loss, grads, N


def workers_per_rank(n: int | None, backend, comm):
    """``--workers``, or by default this rank's share of the machine's cores: the
    cores it may run on, divided between the ranks on this machine unless the
    launcher bound each rank to its own cores already."""
    if n is not None or comm.size == 1:
        return make_workers(n, backend)
    from npformer.backend import get_backend
    n = default_workers(get_backend(backend).name)
    if n > 1 and available_cores() >= (os.cpu_count() or 0):  # not bound: share the machine
        n = max(1, n // comm.local_size)
    return make_workers(n, backend)


def parameters_digest(params: dict) -> str:
    """One digest of every parameter's name, dtype, shape and bytes, in order."""
    h = hashlib.blake2b(digest_size=12)
    for k, a in params.items():
        h.update(k.encode())
        h.update(digest(backend_of(a).to_host(a)).encode())
    return h.hexdigest()


def fingerprint(state, cfg, **more) -> dict:
    """What every rank must agree on before the first step: the model, the state it
    starts from (parameters, step, generator) and the layout, plus ``more`` (the
    run settings, digests of the vocabulary and of the first batch)."""
    from npformer import __version__
    from npformer.train.trainer import rng_state
    be = backend_of(*state.params.values())
    return {"npformer": __version__, "config": cfg.to_dict(), "backend": be.name,
            "dtype": str(next(iter(state.params.values())).dtype), "workers": state.workers.n,
            "step": state.step, "parameters": parameters_digest(state.params),
            "optimizer": digest({"t": state.optimizer.t, "m": parameters_digest(state.optimizer.m),
                                 "v": parameters_digest(state.optimizer.v)}),
            "generator": digest(rng_state(state)), **more}


def check_parameters_agree(state) -> None:
    """Raise ``RanksDisagree`` on every rank when the ranks' parameters differ."""
    digests = state.comm.allgather(parameters_digest(state.params), "the end-of-run parameter check")
    differ = [r for r, d in enumerate(digests) if d != digests[0]]
    if differ:
        raise RanksDisagree(f"after step {state.step} the parameters of rank(s) {differ} differ from rank 0's; "
                            "the ranks' all-reduce or update is not deterministic")
