"""Data parallelism over CPU cores: every batch split into shards, one per worker.

The paper trained on 8 GPUs (§5.2); each computed the gradient of its part of
every batch and the parts were summed. A CPU has cores instead of GPUs, and
the same split keeps all of them busy: NumPy's element-wise work (softmax,
LayerNorm, dropout, the loss, Adam) runs on one core per call, so one big
forward/backward leaves the other cores idle outside the matrix products.
Here the ``n`` threads of a worker pool (npformer/workers.py) each run the
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
from npformer.model.transformer import loss_and_grads
from npformer.workers import Workers, as_workers


def worker_generators(backend, seed: int, n: int) -> list:
    """``n`` dropout generators for the workers: the first seeded with ``seed`` itself
    (one worker draws exactly as ``backend.rng(seed)``), the others from (seed, i)."""
    seeds = [seed] + [int(np.random.SeedSequence([seed, i]).generate_state(1)[0]) for i in range(1, n)]
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
    cuts = sorted(set(min(max(c, 0), B) for c in cuts))
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


def parallel_loss_and_grads(params, cfg, src, tgt_in, tgt_out, rngs=None, workers=None):
    """``loss_and_grads`` of the whole batch, computed shard by shard on the workers.

    src, tgt_in, tgt_out: the batch, best as host arrays (each shard is sent to
    the parameters' device). ``rngs``: one dropout generator per worker
    (``worker_generators``), or None for no dropout. Returns ``(loss, grads, N)``:
    the loss a 0-d array on the device, N the batch's number of targets (an int).
    With one worker it is ``loss_and_grads`` of the whole batch, drawing from ``rngs[0]``.
    """
    workers = as_workers(workers)
    be = backend_of(*params.values())
    shards = shard_rows(tgt_out, cfg.pad_id, workers.n)
    if not shards:
        raise ValueError("parallel_loss_and_grads: every target is padding; expected at least one "
                         "non-pad token")
    N = sum(n_s for _, n_s in shards)

    def run(i):
        s, n_s = shards[i]
        return loss_and_grads(params, cfg, be.asarray(src[s]), be.asarray(tgt_in[s]), be.asarray(tgt_out[s]),
                              None if rngs is None else rngs[i], dloss=n_s / N)

    results = workers.map(run, range(len(shards)))
    loss = sum(r[0] * (n_s / N) for r, (_, n_s) in zip(results, shards))
    grads = sum_into(results[0][1], [r[1] for r in results[1:]], workers)
    return loss, grads, N
