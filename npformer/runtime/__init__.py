"""The machinery that runs the Transformer, apart from its math.

Nothing here changes what the model computes; it changes where and how fast:
    cpu.py          OpenBLAS's kernel choice on AVX-512 CPUs (``tune_openblas``)
    flat.py         arrays as views of one buffer, for one-kernel updates on a GPU
    workers.py      threads that share a step's work on the CPU cores
    distributed/    ranks over MPI (CPU) or NCCL (GPUs): launch, all-reduce, buckets
The Transformer itself (ops/, model/, decode/, train/) reads on its own.
"""
