"""Data parallelism over processes: P ranks, on one machine or many, each
computing the gradient of its share of every batch (paper §5.2: 8 GPUs).

    communicator.py  the interface training uses; SingleProcess; the start-up check
    buckets.py       gradients in a few large contiguous buffers, summed in place
    mpi.py           MPI through mpi4py, for NumPy; the watchdog on every collective
    nccl.py          NCCL through CuPy, for GPUs (one rank per GPU)
    launch.py        rank and size from the MPI launcher; how a failing run ends

The split of each batch between ranks and threads, and the training step
built on these, are in npformer/train/ranks.py.
"""
from npformer.runtime.distributed.buckets import Buckets
from npformer.runtime.distributed.communicator import AgreedError, Communicator, RanksDisagree, SingleProcess
from npformer.runtime.distributed.launch import launch, ranks_from_env

__all__ = ["AgreedError", "Buckets", "Communicator", "RanksDisagree", "SingleProcess", "launch", "ranks_from_env"]
