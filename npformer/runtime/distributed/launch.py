"""Where this process stands: alone, or one of P ranks started by an MPI launcher.

    npformer train ...                  one process: ``SingleProcess``, MPI never imported
    mpiexec -n P npformer train ...     P ranks: MPI (NumPy) or NCCL (``--backend cupy``)

A launcher tells each process its rank in environment variables (MPICH and
Intel MPI: PMI_RANK / PMI_SIZE; Open MPI: OMPI_COMM_WORLD_*; MVAPICH2:
MV2_COMM_WORLD_*; PMIx, as under Slurm's srun: PMIX_RANK). They are read
before mpi4py is imported, so that a plain run never initialises MPI.

``launch`` also decides how a run that fails on one rank ends. An error that
every rank raises at the same point (a start-up mismatch, a diverged loss,
which all ranks see after the same all-reduce) is printed once, by rank 0, and
every rank exits with code 2. Any other error is printed with the rank that
raised it and ends every rank through ``MPI_Abort``, so that none of them is
left waiting in a collective.
"""
from __future__ import annotations

import os
import sys
import traceback
from contextlib import contextmanager

from npformer.errors import UserError

from npformer.runtime.distributed.communicator import AgreedError, SingleProcess

# (rank variable, size variable) of each launcher; None: the size is asked from MPI.
LAUNCHER_VARIABLES = (("PMI_RANK", "PMI_SIZE"), ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
                      ("MV2_COMM_WORLD_RANK", "MV2_COMM_WORLD_SIZE"), ("PMIX_RANK", None))
TIMEOUT_S = 120.0       # a step's collective: ranks do equal work, so they arrive together
WAIT_TIMEOUT_S = 3600.0  # start-up, and waiting while rank 0 evaluates or saves


def ranks_from_env(environ=None) -> tuple[int, int | None] | None:
    """``(rank, size)`` as a launcher set them, ``size`` None where only MPI knows
    it; None when no launcher started this process."""
    environ = os.environ if environ is None else environ
    for rank_var, size_var in LAUNCHER_VARIABLES:
        if rank_var in environ:
            size = environ.get(size_var) if size_var else None
            try:
                return int(environ[rank_var]), None if size is None else int(size)
            except ValueError:
                raise UserError(f"{rank_var}={environ[rank_var]!r}"
                                   f"{'' if size is None else f', {size_var}={size!r}'}: expected integers "
                                   "(set by an MPI launcher)") from None
    return None


def seconds_from_env(name: str, default: float) -> float | None:
    """A positive number of seconds from ``$name``; 0 or "none" means no limit. The
    user sets it, so anything else is a ``UserError``."""
    text = os.environ.get(name, "").strip().lower()
    if not text:
        return default
    if text in ("0", "none"):
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise UserError(f"${name}={os.environ[name]!r}: expected seconds (a positive number), 0 or none")
    return value


def connect(backend=None):
    """The communicator of this rank: MPI for NumPy arrays, NCCL (one GPU per
    rank, chosen here before anything touches a GPU) for CuPy arrays."""
    place = ranks_from_env()
    try:
        from npformer.runtime.distributed.mpi import MPICommunicator
        host = MPICommunicator(seconds_from_env("NPFORMER_COMM_TIMEOUT", TIMEOUT_S),
                               seconds_from_env("NPFORMER_WAIT_TIMEOUT", WAIT_TIMEOUT_S))
    except ImportError as e:
        raise UserError(f"started as rank {place[0]} by an MPI launcher, but mpi4py cannot be imported "
                           f"({e}); install it with: pip install 'npformer[mpi]'") from None
    name = getattr(backend, "name", backend) or os.environ.get("NPFORMER_BACKEND") or "numpy"
    if name != "cupy":
        return host
    try:
        import cupy
        gpus = cupy.cuda.runtime.getDeviceCount()
        if host.local_size > gpus:
            raise UserError(f"{host.local_size} ranks on {host.places[host.rank][0]} but {gpus} GPU(s): "
                               "start one rank per GPU (mpiexec -n GPUs, or a hostfile with slots=GPUs)")
        cupy.cuda.Device(host.local_rank).use()
        from npformer.runtime.distributed.nccl import NCCLCommunicator
        return NCCLCommunicator(host)
    except BaseException:
        host.finish()  # every rank fails here alike; none must take the others' exit for a crash
        raise


@contextmanager
def launch(backend=None, command: str = "train", agreed: tuple = ()):
    """``with launch(...) as comm``: the communicator of this process (see the
    module docstring for how errors end the run). ``agreed``: exception types
    that every rank raises together; ``AgreedError`` always is one."""
    place = ranks_from_env()
    if place is None or place[1] == 1:
        yield SingleProcess()
        return
    comm = connect(backend)
    try:
        yield comm
    except (AgreedError, *agreed):
        comm.finish()
        if comm.rank == 0:
            raise
        raise SystemExit(2) from None
    except BaseException as e:
        if getattr(comm, "finished", False):  # after the last collective an error is this rank's alone
            raise
        what = "interrupted" if isinstance(e, KeyboardInterrupt) else f"error: {type(e).__name__}: {e}"
        if os.environ.get("NPFORMER_DEBUG"):
            traceback.print_exc()
        print(f"npformer {command}: rank {comm.rank} of {comm.size}: {what}; stopping every rank",
              file=sys.stderr, flush=True)
        comm.abort(130 if isinstance(e, KeyboardInterrupt) else 2)
        raise
    else:
        comm.finish()
