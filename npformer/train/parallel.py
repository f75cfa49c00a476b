"""Data parallelism over CPU cores: every batch split into shards, one per worker.

The paper trained on 8 GPUs (§5.2); each computed the gradient of its part of
every batch and the parts were summed. A CPU has cores instead of GPUs, and
the same split keeps all of them busy: NumPy's element-wise work (softmax,
LayerNorm, dropout, the loss, Adam) runs on one core per call, so one big
forward/backward leaves the other cores idle outside the matrix products.
Here the ``n`` threads of a worker pool (npformer/runtime/workers.py) each run the
unchanged forward and backward on a slice of the batch's sentences.

The math is exactly that of the whole batch. Split the B sentences into shards
s = 1..n with N_s non-pad targets each, N = sum_s N_s. The loss is a mean over
all N targets, so

    loss     = (1/N) sum_n loss_n = sum_s (N_s / N) loss_s        loss_s: the mean over shard s
    dL/dtheta = sum_s (N_s / N) dloss_s/dtheta

Each shard's backward is seeded with dloss = N_s / N instead of 1 (the
``dloss`` of ``cross_entropy_backward``), so its gradients come out already
weighted and the shards' gradients are simply summed. Every layer acts on one
sentence at a time (attention never mixes sentences), so only the summation
order differs from the unsplit batch: gradients agree to float rounding
(tests/train/test_parallel.py checks it with dropout off).

Dropout: worker s draws its masks from its own generator, built once per run
(``worker_generators``) and saved in checkpoints, so a run is reproducible for
a given worker count and a resumed run continues exactly; different worker
counts give different (equally valid) dropout masks.

On a GPU the batch arrives as host arrays: the shards and their token counts
are cut on the host and each shard is sent to the device, so nothing here
waits for the device.

The same workers also share the update: Adam and the gradient norm touch every
parameter once, element-wise, so the parameter arrays are dealt out to the
workers in groups of about equal size (train/optim.py).
"""
from __future__ import annotations

import numpy as np

from npformer.backend import backend_of
from npformer.runtime.distributed.buckets import Buckets
from npformer.model.transformer import loss_and_grads
from npformer.runtime.workers import Workers, as_workers


def worker_generators(backend, seed: int, n: int, first: int = 0) -> list:
    """The dropout generators of shards ``first .. first + n - 1``, built once per run.
    Shard 0's is seeded with ``seed`` itself (one worker draws exactly as
    ``backend.rng(seed)``), shard i's from (seed, i); a rank of an MPI run builds
    those of its own shards, so shard i draws the same masks whatever the layout."""
    seeds = [seed if i == 0 else int(np.random.SeedSequence([seed, i]).generate_state(1)[0])
             for i in range(first, first + n)]
    return [backend.rng(s) for s in seeds]


def shard_rows(tgt_out, pad_id: int, n: int) -> list[tuple[slice, int]]:
    """At most ``n`` contiguous row ranges of the batch with about equal numbers
    of non-pad targets each, as ``(rows, N_s)`` pairs; no shard has N_s = 0.
    ``tgt_out`` is best a host array (on a device, counting reads it back once)."""
    counts = backend_of(tgt_out).to_host((tgt_out != pad_id).sum(axis=1))  # (B,)
    B, n = len(counts), min(n, len(counts))
    ends = np.cumsum(counts)
    # Cut after the first row whose running token count reaches k/n of the total.
    cuts = [0] + [int(np.searchsorted(ends, ends[-1] * k / n)) + 1 for k in range(1, n)] + [B]
    cuts = sorted(set(min(c, B) for c in cuts))  # every cut is >= 0 already (searchsorted + 1)
    shards = [(slice(a, b), int(counts[a:b].sum())) for a, b in zip(cuts[:-1], cuts[1:])]
    return [(rows, n_s) for rows, n_s in shards if n_s > 0]


def sum_into(first: dict, others: list[dict], workers: Workers) -> dict:
    """``first[k] += other[k]`` for every other dict and key, in place; returns ``first``."""
    def add(keys):
        for k in keys:
            for g in others:
                first[k] += g[k]
    if others:
        workers.each_group(add, first)
    return first


def parallel_loss_and_grads(params, cfg, src, tgt_in, tgt_out, rngs=None, workers=None, comm=None,
                            what: str = "the gradient all-reduce"):
    """``loss_and_grads`` of the whole batch, computed shard by shard on the workers,
    and over the ranks of ``comm`` (an MPI run: train/ranks.py).

    src, tgt_in, tgt_out: the batch, best as host arrays (each shard is sent to
    the parameters' device). The batch is cut into at most P x W shards (P ranks
    of W workers); rank r computes shards rW .. rW + W - 1, its worker w shard
    rW + w. ``rngs``: the dropout generators of this rank's shards
    (``worker_generators``), or None for no dropout. Returns ``(loss, grads, N)``,
    N the whole batch's number of targets (an int); the loss is a 0-d array on
    the device, or a host float after the ranks' sum. With one worker and one
    rank it is ``loss_and_grads`` of the whole batch, drawing from ``rngs[0]``.
    """
    workers = as_workers(workers)
    P, r = (1, 0) if comm is None else (comm.size, comm.rank)
    be = backend_of(*params.values())
    shards = shard_rows(tgt_out, cfg.pad_id, workers.n * P)
    if not shards:
        raise ValueError("parallel_loss_and_grads: every target is padding; expected at least one "
                         "non-pad token")
    N = sum(n_s for _, n_s in shards)
    first = r * workers.n
    mine = range(first, min(first + workers.n, len(shards)))  # empty: a rank with no sentences

    def run(i):
        s, n_s = shards[i]
        return loss_and_grads(params, cfg, be.asarray(src[s]), be.asarray(tgt_in[s]), be.asarray(tgt_out[s]),
                              None if rngs is None else rngs[i - first], dloss=n_s / N)

    results = workers.map(run, mine)
    # in float64, so that ranks and threads add the same numbers in the same order
    loss = sum(res[0].astype(be.xp.float64) * (shards[i][1] / N) for res, i in zip(results, mine))
    if P == 1:
        return loss, sum_into(results[0][1], [res[1] for res in results[1:]], workers), N
    # ranks: this rank's sum goes into a few contiguous buckets, summed over the ranks in place
    if comm.buckets is None or not comm.buckets.matches(params):
        comm.buckets = Buckets(params)
    grads = comm.buckets.fill([res[1] for res in results], workers)
    del results  # the threads' gradients: the buckets hold their sum now
    comm.allreduce_sum(comm.buckets.buffers, what)
    loss, = comm.sum_floats([float(loss)], "the loss's sum over ranks")
    return loss, grads, N
