"""Ranks on GPUs: gradient buckets summed on the devices by NCCL (``cupy.cuda.nccl``).

One rank per GPU. MPI starts the ranks and carries the small host messages
(the start-up check, the loss, the time budget); the gradients never leave the
device: each bucket is all-reduced in place by ``ncclAllReduce`` on the
current CuPy stream, all buckets in one NCCL group (one launch).

    start-up   rank 0: uid = nccl.get_unique_id(); MPI broadcasts uid;
               every rank: NcclCommunicator(P, uid, rank) (blocks until all P join)
    each step  groupStart; allReduce(ptr, ptr, count, FLOAT32, SUM, stream) per bucket;
               groupEnd; then wait for the stream, within the step's deadline

Waiting polls an event recorded after the all-reduce (the GPU progresses NCCL
on its own, so polling costs it nothing) and asks NCCL for asynchronous errors
(a peer gone from the ring); the MPI watchdog stops the run at the deadline.

The NCCL module, and the stream, can be stand-ins with the same methods:
tests/runtime/distributed/test_nccl.py runs this code over NumPy buffers.
"""
from __future__ import annotations

from npformer.errors import UserError
import time

from npformer.runtime.distributed.communicator import Communicator


def buffer_pointer(a) -> int:
    """The address of ``a``'s first element: device memory for CuPy, host for NumPy."""
    if not a.flags.c_contiguous:
        raise ValueError("nccl: buffers must be contiguous")
    interface = getattr(a, "__cuda_array_interface__", None) or a.__array_interface__
    return int(interface["data"][0])


class NCCLCommunicator(Communicator):
    """Gradients through NCCL, everything else through ``host`` (an MPICommunicator)."""

    name = "nccl"

    def __init__(self, host, nccl=None, stream=None, poll_s: float = 1e-4):
        if nccl is None:
            from cupy.cuda import nccl
            if not getattr(nccl, "available", True):
                raise UserError("backend cupy over several ranks needs NCCL, which the CuPy wheels do not bundle: "
                                "pip install nvidia-nccl-cu12 (or -cu13, matching your cupy-cuda wheel), or install "
                                "the system's libnccl")
        self.host, self.nccl, self._stream, self.poll_s = host, nccl, stream, poll_s
        self.rank, self.size, self.local_size = host.rank, host.size, host.local_size
        self.timeout, self.wait_timeout = host.timeout, host.wait_timeout
        uid = host.bcast(nccl.get_unique_id() if host.rank == 0 else None, what="the NCCL unique id")
        with host.watched("NCCL's start-up", host.wait_timeout):
            self.comm = nccl.NcclCommunicator(host.size, uid, host.rank)
        self.dtypes = {"float16": nccl.NCCL_FLOAT16, "float32": nccl.NCCL_FLOAT32,
                       "float64": nccl.NCCL_FLOAT64}

    def describe(self) -> str:
        return f"{self.size} ranks over NCCL, one GPU each; host messages: {self.host.describe()}"

    def stream(self):
        if self._stream is None:
            import cupy
            return cupy.cuda.get_current_stream()
        return self._stream

    def allreduce_sum(self, buffers: list, what: str = "the gradient all-reduce") -> None:
        stream = self.stream()
        with self.host.watched(what, self.timeout):
            self.nccl.groupStart()
            try:
                for b in buffers:
                    if str(b.dtype) not in self.dtypes:
                        raise TypeError(f"nccl: cannot sum {b.dtype} buffers; expected one of {sorted(self.dtypes)}")
                    self.comm.allReduce(buffer_pointer(b), buffer_pointer(b), b.size, self.dtypes[str(b.dtype)],
                                        self.nccl.NCCL_SUM, stream.ptr)
            finally:
                self.nccl.groupEnd()
            done = stream.record()
            while not done.done:
                self.comm.check_async_error()  # raises NcclError when a peer has failed
                time.sleep(self.poll_s)

    def sum_floats(self, values, what: str = "a sum over ranks") -> list[float]:
        return self.host.sum_floats(values, what)

    def any(self, flag: bool, what: str = "an agreement between ranks") -> bool:
        return self.host.any(flag, what)

    def allgather(self, obj, what: str = "an exchange between ranks") -> list:
        return self.host.allgather(obj, what)

    def bcast(self, obj, root: int = 0, what: str = "a broadcast from rank 0"):
        return self.host.bcast(obj, root, what)

    def barrier(self, what: str = "a barrier") -> None:
        self.host.barrier(what)

    def finish(self) -> None:
        self.host.finish()

    def abort(self, code: int = 1) -> None:
        self.comm.abort()  # frees the GPUs' NCCL kernels before MPI ends the processes
        self.host.abort(code)
