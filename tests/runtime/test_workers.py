"""The worker pool: groups that balance the work, BLAS pinned to one thread per
worker and restored after, and worker counts it refuses."""
import numpy as np
import pytest

from npformer.runtime import workers as workers_module
from npformer.runtime.workers import Workers, balanced_groups, blas_threads_controllable


@pytest.fixture(scope="module")
def workers():
    if not blas_threads_controllable():
        pytest.skip("threadpoolctl is not installed")
    pool = Workers(2)
    yield {2: pool}
    pool.close()


def test_work_groups_cover_every_key_once_and_balance_sizes():
    arrays = {f"p{i}": np.zeros(s) for i, s in enumerate([100, 60, 50, 40, 10, 5, 1])}
    assert Workers(1).groups(arrays) == [sorted(arrays, key=lambda k: -arrays[k].size)]
    groups = balanced_groups(arrays, 3)
    assert sorted(k for g in groups for k in g) == sorted(arrays)
    sizes = [sum(arrays[k].size for k in g) for g in groups]
    assert max(sizes) - min(sizes) <= 100


def test_blas_runs_one_thread_inside_the_workers_and_is_restored_after(workers):
    from threadpoolctl import threadpool_info

    def blas_threads(_):
        return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
    before = blas_threads(None)
    inside = workers[2].map(blas_threads, range(2))
    assert inside == [[1] * len(before)] * 2
    assert blas_threads(None) == before


def test_bad_worker_counts_are_refused(monkeypatch):
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="workers: n must be a positive integer"):
            Workers(bad)
    monkeypatch.setattr(workers_module, "blas_threads_controllable", lambda: False)
    with pytest.raises(RuntimeError, match=r"need threadpoolctl.*npformer\[train\]"):
        Workers(2)
    assert workers_module.default_workers("numpy") == 1 and workers_module.default_workers("cupy") == 1


def test_a_device_is_current_per_thread_on_cupysim():
    """cupysim keeps CuPy's rule: ``Device(n).use()`` changes the calling thread's
    device only, and a new thread starts on device 0."""
    import threading

    from npformer.cupysim import xp
    seen = []
    thread = threading.Thread(target=lambda: (xp.cuda.Device(1).use(), seen.append(xp.cuda.Device().id)))
    thread.start()
    thread.join()
    assert seen == [1] and xp.cuda.Device().id == 0


def test_worker_threads_use_the_device_of_the_thread_that_made_them(workers):
    """A rank on GPU 1 (launch calls ``Device(1).use()``) makes its worker threads:
    each of them must compute on GPU 1 too, not on CuPy's default GPU 0."""
    from npformer.cupysim import xp
    from npformer.runtime.workers import make_workers
    xp.cuda.Device(1).use()
    try:
        pool = make_workers(2, "cupysim")
        plain = Workers(2)
        try:
            barrier = threading_barrier(2)  # both threads of each pool answer
            assert pool.map(lambda _: (barrier.wait(), xp.cuda.Device().id)[1], range(2)) == [1, 1]
            assert plain.map(lambda _: (barrier.wait(), xp.cuda.Device().id)[1], range(2)) == [0, 0]
        finally:
            pool.close()
            plain.close()
    finally:
        xp.cuda.Device(0).use()


def threading_barrier(n):
    import threading
    return threading.Barrier(n, timeout=10)
