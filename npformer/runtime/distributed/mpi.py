"""Ranks joined by MPI (mpi4py): NumPy buffers summed by ``MPI_Allreduce``.

Collectives block at full speed (MPI progresses them only while a rank is
inside an MPI call, so polling a nonblocking one would slow it down); a
``Watchdog`` thread keeps them from blocking forever. It stops every rank with
``MPI_Abort``, after saying why on stderr, when

  * a collective has waited longer than its deadline: another rank hangs, or
    died where this rank cannot see it (another machine);
  * a rank on this machine has exited or been killed while this one still
    needs it (MPICH's launcher kills the others when one is killed, but a rank
    that raised and exited would otherwise leave them waiting for ever).

A rank whose code raises does not reach the watchdog: ``launch`` prints its
error, naming the rank, and aborts the run (launch.py).

mpi4py initialises MPI with ``MPI_THREAD_MULTIPLE``, which lets the watchdog
call ``MPI_Abort`` while the main thread is inside a collective.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from contextlib import contextmanager

import numpy as np

from npformer.runtime.distributed.communicator import Communicator


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` on this machine still runs (a zombie does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):  # no /proc (not Linux): kill(pid, 0) is all we know
        return True


class Watchdog:
    """A daemon thread that calls ``stop(reason)`` when the collective in
    ``waiting(what, timeout)`` outlives its deadline, or a watched process on this
    machine (``peers``: rank -> pid) is gone. ``disarm()`` ends the watch."""

    def __init__(self, stop, poll_s: float = 0.25):
        self.stop, self.poll_s = stop, poll_s
        self.peers: dict[int, int] = {}
        self._waiting = None  # (what, timeout, deadline) of the collective in progress
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="npformer-watchdog", daemon=True)
        self._thread.start()

    @contextmanager
    def waiting(self, what: str, timeout: float | None):
        self._waiting = (what, timeout, None if timeout is None else time.monotonic() + timeout)
        try:
            yield
        finally:
            self._waiting = None

    def disarm(self) -> None:
        self._done.set()
        if self._thread is not threading.current_thread():
            self._thread.join()

    def problem(self) -> str | None:
        """Why the run must stop now, or None."""
        waiting = self._waiting
        where = f" while this rank waited in {waiting[0]}" if waiting else ""
        gone = [f"rank {r} (pid {pid})" for r, pid in sorted(self.peers.items()) if not process_alive(pid)]
        if gone:
            return f"{', '.join(gone)} on this machine exited or was killed{where}"
        if waiting and waiting[2] is not None and time.monotonic() > waiting[2]:
            return (f"{waiting[0]} waited {waiting[1]:g} s for the other ranks: one of them hangs, or "
                    "died on another machine (NPFORMER_COMM_TIMEOUT / NPFORMER_WAIT_TIMEOUT set the limits)")
        return None

    def _run(self) -> None:
        while not self._done.wait(self.poll_s):
            reason = self.problem()
            if reason is not None and not self._done.is_set():
                self.stop(reason)
                return


class MPICommunicator(Communicator):
    """``MPI.COMM_WORLD`` (duplicated, so that no other library's messages mix in)."""

    name = "mpi"

    def __init__(self, timeout: float | None = 120.0, wait_timeout: float | None = 3600.0,
                 poll_s: float = 0.25):
        from mpi4py import MPI
        self.MPI = MPI
        self.comm = MPI.COMM_WORLD.Dup()
        # a collective that fails (a peer's connection closed) raises here instead of
        # ending this process at once, so that ``watched`` can say which rank is gone
        self.comm.Set_errhandler(MPI.ERRORS_RETURN)
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.timeout, self.wait_timeout = timeout, wait_timeout
        self.finished = False
        self.watchdog = Watchdog(self._stop_every_rank, poll_s)
        here = (MPI.Get_processor_name(), os.getpid())
        self.places = self.allgather(here, "the start-up exchange of host names", self.wait_timeout)
        local = [r for r, (host, _) in enumerate(self.places) if host == here[0]]
        self.local_size, self.local_rank = len(local), local.index(self.rank)
        self.watchdog.peers = {r: pid for r, (host, pid) in enumerate(self.places)
                               if host == here[0] and r != self.rank}

    def describe(self) -> str:
        library = self.MPI.Get_library_version().splitlines()[0].strip()
        where = ", ".join(f"rank {r} pid {pid} on {host}" for r, (host, pid) in enumerate(self.places))
        return f"{self.size} ranks over MPI ({library}): {where}"

    def _stop_every_rank(self, reason: str) -> None:
        print(f"npformer: rank {self.rank} of {self.size}: stopping every rank: {reason}", file=sys.stderr,
              flush=True)
        self.abort(1)

    def abort(self, code: int = 1) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        self.MPI.COMM_WORLD.Abort(code)

    @contextmanager
    def watched(self, what: str, timeout: float | None):
        if self.finished:
            raise RuntimeError(f"{what}: the ranks have finished; no collective can follow")
        with self.watchdog.waiting(what, timeout):
            try:
                yield
            except self.MPI.Exception as e:
                self._stop_every_rank(self.watchdog.problem() or f"{what} failed: {e}")

    def allreduce_sum(self, buffers: list, what: str = "the gradient all-reduce") -> None:
        with self.watched(what, self.timeout):
            for b in buffers:
                self.comm.Allreduce(self.MPI.IN_PLACE, b, op=self.MPI.SUM)

    def sum_floats(self, values, what: str = "a sum over ranks") -> list[float]:
        buffer = np.array([float(v) for v in values], dtype=np.float64)
        self.allreduce_sum([buffer], what)
        return buffer.tolist()

    def allgather(self, obj, what: str = "an exchange between ranks", timeout: float | None = None) -> list:
        with self.watched(what, timeout or self.wait_timeout):
            return self.comm.allgather(obj)

    def bcast(self, obj, root: int = 0, what: str = "a broadcast from rank 0"):
        with self.watched(what, self.wait_timeout):
            return self.comm.bcast(obj, root=root)

    def barrier(self, what: str = "a barrier") -> None:
        with self.watched(what, self.wait_timeout):
            self.comm.Barrier()

    def finish(self) -> None:
        if not self.finished:
            self.barrier("the end-of-run barrier")
            self.finished = True
            self.watchdog.disarm()
