"""A pool of CPU threads that share work: batches, parameters, sentences.

NumPy releases Python's GIL inside its array loops and BLAS calls, so ``n``
threads that each run array code on their own part of the work keep ``n``
cores busy. Each thread limits BLAS to one thread while it runs (through
``threadpoolctl``, the ``train`` extra): otherwise every worker would start a
full set of BLAS threads and they would fight over the cores.

Who uses it: the data-parallel loss (train/parallel.py) gives each worker a
slice of the batch's sentences; Adam and the gradient norm (train/optim.py)
deal the parameters out in groups of about equal size (``balanced_groups``);
dev loss and decoding (train/trainer.py, translation.py) take several batches
at once.
"""
from __future__ import annotations

from npformer.errors import UserError
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np

TRAIN_EXTRA = "pip install 'npformer[train]'"  # brings threadpoolctl


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def blas_threads_controllable() -> bool:
    """Whether ``threadpoolctl`` (the ``train`` extra) is there to pin BLAS to one
    thread inside the workers; without it, worker threads would each start a
    full set of BLAS threads and oversubscribe the cores."""
    try:
        import threadpoolctl  # noqa: F401
    except ImportError:
        return False
    return True


def limit_blas_threads(n: int) -> bool:
    """From now on, let this process's BLAS use at most ``n`` threads (threadpoolctl);
    False where threadpoolctl is missing. For several processes sharing a machine,
    whose BLAS libraries would each start one thread per core."""
    if not blas_threads_controllable():
        return False
    from threadpoolctl import threadpool_limits
    threadpool_limits(limits=max(1, int(n)), user_api="blas")
    return True


def default_workers(backend_name: str) -> int:
    """One worker per core on the CPU (when BLAS threads can be pinned), one on a GPU."""
    if backend_name != "numpy" or not blas_threads_controllable():
        return 1
    return available_cores()


class Workers:
    """``n`` threads that run functions on parts of the work, BLAS pinned to one
    thread each while they do. ``Workers(1)`` runs everything inline."""

    def __init__(self, n: int = 1, initializer=None):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"workers: n must be a positive integer, got {n!r}")
        if n > 1 and not blas_threads_controllable():
            raise UserError(f"workers: {n} workers need threadpoolctl to pin BLAS to one thread per "
                               f"worker: {TRAIN_EXTRA}, or use 1 worker")
        self.n = int(n)
        # initializer: runs once in each new thread (Backend.thread_setup: the GPU that thread uses)
        self._pool = ThreadPoolExecutor(self.n, thread_name_prefix="npformer",
                                        initializer=initializer) if self.n > 1 else None
        self._blas = None

    def __repr__(self) -> str:
        return f"Workers({self.n})"

    @contextmanager
    def _one_blas_thread(self):
        if self._blas is None:  # created lazily: it inspects the BLAS libraries loaded so far
            from threadpoolctl import ThreadpoolController
            self._blas = ThreadpoolController()
        with self._blas.limit(limits=1, user_api="blas"):
            yield

    def map(self, fn, items) -> list:
        """``[fn(item) for item in items]``, the items spread over the threads."""
        items = list(items)
        if self._pool is None or len(items) < 2:
            return [fn(item) for item in items]
        with self._one_blas_thread():
            return list(self._pool.map(fn, items))

    def groups(self, arrays: dict) -> list[list]:
        """``balanced_groups(arrays, n)``: the keys to hand to each thread."""
        return balanced_groups(arrays, self.n)

    def each_group(self, fn, arrays: dict) -> list:
        """``fn(keys)`` for each group of ``arrays``' keys, one group per thread: for
        element-wise passes over every parameter (or gradient)."""
        return self.map(fn, self.groups(arrays))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


def balanced_groups(arrays: dict, n: int) -> list[list]:
    """The keys of ``arrays`` dealt into at most ``n`` groups of about equal total
    size (largest first, each to the lightest group), for element-wise passes."""
    groups, sizes = [[] for _ in range(n)], [0] * n
    for k in sorted(arrays, key=lambda k: -arrays[k].size):
        i = sizes.index(min(sizes))
        groups[i].append(k)
        sizes[i] += arrays[k].size
    return [g for g in groups if g]


def make_workers(n: int | None, backend=None) -> Workers:
    """``Workers(n)`` whose threads use the device this thread uses now; ``n`` None
    picks ``default_workers`` for the backend (name or Backend)."""
    from npformer.backend import get_backend
    be = get_backend(backend)
    if n is None:
        n = default_workers(be.name)
    return Workers(n, initializer=be.thread_setup())


def as_workers(workers, backend=None) -> Workers:
    """``None`` -> Workers(1); a Workers as it is; an int n -> ``make_workers(n, backend)``
    with a backend, else plain threads (which, on CuPy, would start on GPU 0)."""
    if workers is None:
        return Workers(1)
    if isinstance(workers, Workers):
        return workers
    return make_workers(workers, backend) if backend is not None else Workers(workers)
