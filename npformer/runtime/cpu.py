"""Let NumPy's bundled OpenBLAS use its AVX-512 kernels where the CPU has them.

NumPy wheels ship OpenBLAS, which on some AVX-512 CPUs picks its older AVX2
("Haswell") kernels. Setting ``OPENBLAS_CORETYPE=SkylakeX`` *before NumPy is
first imported* selects the AVX-512 kernels instead: where OpenBLAS had chosen
Haswell, float32 matmul gets much faster, with the same results to rounding.
OpenBLAS builds that already pick SkylakeX on their own are unaffected, so the
setting is harmless there. ``python -m benchmarks.common`` prints the matmul
rate of this machine and what was set.

We only ever set it when all of these hold, so it is safe:
  * the CPU reports ``avx512f`` in /proc/cpuinfo (Linux),
  * the user has not set OPENBLAS_CORETYPE themselves,
  * NumPy has not been imported yet in this process (afterwards it has no effect),
  * NPFORMER_NO_AVX512 is not set (the opt-out).

Nothing sets it on import. The ``npformer`` command calls ``tune_openblas()``
at its start, and so do the benchmarks; a library user who wants the same
calls it first thing, before NumPy is imported:

    from npformer.runtime.cpu import tune_openblas
    tune_openblas()
    import numpy as np

``blas_tuning()`` reports what happened; the benchmarks print it.
"""
import os
import sys

_STATE = {"applied": False, "reason": "not attempted"}


def cpu_has_avx512f() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return " avx512f" in line
    except OSError:
        pass
    return False


def tune_openblas() -> None:
    """Set OPENBLAS_CORETYPE=SkylakeX in this process where all the conditions above hold."""
    if os.environ.get("NPFORMER_NO_AVX512"):
        _STATE.update(applied=False, reason="disabled by NPFORMER_NO_AVX512")
    elif "OPENBLAS_CORETYPE" in os.environ:
        _STATE.update(applied=False, reason="OPENBLAS_CORETYPE already set to "
                      + os.environ["OPENBLAS_CORETYPE"])
    elif "numpy" in sys.modules:
        _STATE.update(applied=False, reason="numpy was imported before npformer")
    elif not cpu_has_avx512f():
        _STATE.update(applied=False, reason="CPU does not report avx512f")
    else:
        os.environ["OPENBLAS_CORETYPE"] = "SkylakeX"
        _STATE.update(applied=True, reason="CPU reports avx512f")


def blas_tuning() -> dict:
    """What npformer did about OpenBLAS kernels in this process."""
    return {"openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
            "set_by_npformer": _STATE["applied"], "reason": _STATE["reason"]}
