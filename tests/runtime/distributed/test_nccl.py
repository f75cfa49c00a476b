"""The NCCL communicator's code run over NumPy buffers: a stand-in for
``cupy.cuda.nccl`` whose ranks are threads, reading each other's buffers
through the pointers the communicator passes, as NCCL does on the GPUs."""
import ctypes
import threading

import numpy as np
import pytest

from npformer.runtime.distributed.buckets import Buckets
from npformer.runtime.distributed.nccl import NCCLCommunicator, buffer_pointer

CODES = {1: np.float16, 7: np.float32, 8: np.float64}  # NCCL's ncclFloat16/32/64


class FakeNccl:
    """The parts of cupy.cuda.nccl that NCCLCommunicator uses, for P thread ranks."""
    NCCL_FLOAT16, NCCL_FLOAT32, NCCL_FLOAT64, NCCL_SUM = 1, 7, 8, 0

    def __init__(self, size):
        self.size, self.calls, self.groups = size, [], 0
        self.barrier = threading.Barrier(size, timeout=30)
        self.posted = {}

    def get_unique_id(self):
        return bytes(range(128))

    def groupStart(self):
        self.groups += 1

    def groupEnd(self):
        self.groups -= 1

    def NcclCommunicator(self, ndev, uid, rank):
        assert ndev == self.size and uid == bytes(range(128))
        return FakeRankComm(self, rank)


class FakeRankComm:
    def __init__(self, nccl, rank):
        self.nccl, self.rank, self.aborted = nccl, rank, False

    def allReduce(self, sendbuf, recvbuf, count, datatype, op, stream):
        nccl = self.nccl
        assert sendbuf == recvbuf and op == nccl.NCCL_SUM and stream == 1234  # in place, on our stream
        nccl.calls.append((self.rank, count, datatype))
        dtype = np.dtype(CODES[datatype])
        nccl.posted[self.rank] = np.ctypeslib.as_array(
            (ctypes.c_byte * (count * dtype.itemsize)).from_address(sendbuf)).view(dtype)
        nccl.barrier.wait()
        total = sum((nccl.posted[r].copy() for r in range(1, nccl.size)), nccl.posted[0].copy())
        nccl.barrier.wait()
        nccl.posted[self.rank][...] = total
        nccl.barrier.wait()

    def check_async_error(self):
        pass

    def abort(self):
        self.aborted = True


class FakeHost:
    """The MPI side: rank, size, the unique id's broadcast, the watch."""

    def __init__(self, rank, size, shared):
        self.rank, self.size, self.local_size, self.shared = rank, size, size, shared
        self.timeout = self.wait_timeout = 30.0

    def bcast(self, obj, root=0, what=""):
        if self.rank == root:
            self.shared["uid"] = obj
        self.shared["barrier"].wait()
        return self.shared["uid"]

    def watched(self, what, timeout):
        from contextlib import nullcontext
        return nullcontext()


class Stream:
    ptr = 1234

    def record(self):
        return type("Event", (), {"done": True})()


def run_ranks(size, fn):
    nccl, shared = FakeNccl(size), {"barrier": threading.Barrier(size, timeout=30)}
    results, errors = [None] * size, []

    def one(rank):
        try:
            comm = NCCLCommunicator(FakeHost(rank, size, shared), nccl=nccl, stream=Stream())
            results[rank] = fn(rank, comm)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
            nccl.barrier.abort()
    threads = [threading.Thread(target=one, args=(r,)) for r in range(size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return nccl, results


@pytest.mark.parametrize("size", [2, 3])
def test_buckets_are_summed_in_place_across_ranks(size):
    shapes = {"W": (6, 5), "b": (5,), "E": (40, 3)}

    def grads(rank):
        rng = np.random.default_rng(rank)
        return {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}

    def one(rank, comm):
        b = Buckets(grads(0), bucket_bytes=200)  # several buffers
        views = b.fill([grads(rank)])
        comm.allreduce_sum(b.buffers)
        return {k: v.copy() for k, v in views.items()}, len(b.buffers)
    nccl, results = run_ranks(size, one)
    expected = {k: sum((grads(r)[k] for r in range(1, size)), grads(0)[k]) for k in shapes}
    for summed, _ in results:
        for k in shapes:
            np.testing.assert_allclose(summed[k], expected[k], rtol=1e-6, err_msg=k)
    n_buffers = results[0][1]
    assert n_buffers > 1 and len(nccl.calls) == size * n_buffers and nccl.groups == 0
    assert {code for _, _, code in nccl.calls} == {FakeNccl.NCCL_FLOAT32}
    assert sum(count for r, count, _ in nccl.calls if r == 0) == sum(np.prod(s) for s in shapes.values())


def test_float64_buffers_and_refused_dtypes():
    def one(rank, comm):
        x = np.full(4, rank + 1.0)
        comm.allreduce_sum([x])
        with pytest.raises(TypeError, match="cannot sum int32"):
            comm.allreduce_sum([np.zeros(3, np.int32)])
        return x
    nccl, results = run_ranks(2, one)
    assert all(np.array_equal(x, np.full(4, 3.0)) for x in results)
    assert nccl.groups == 0  # the group is closed even when a buffer is refused


def test_abort_frees_the_nccl_communicator_first():
    class Host:
        rank, size, local_size, timeout, wait_timeout = 0, 1, 1, None, None
        aborted = None

        def bcast(self, obj, root=0, what=""):
            return obj

        def watched(self, what, timeout):
            from contextlib import nullcontext
            return nullcontext()

        def abort(self, code):
            self.aborted = code
    host = Host()
    comm = NCCLCommunicator(host, nccl=FakeNccl(1), stream=Stream())
    comm.abort(3)
    assert comm.comm.aborted and host.aborted == 3


def test_pointers_are_the_first_element_and_need_contiguous_buffers():
    a = np.arange(10, dtype=np.float32)
    assert buffer_pointer(a[2:]) == buffer_pointer(a) + 8
    with pytest.raises(ValueError, match="contiguous"):
        buffer_pointer(a[::2])
