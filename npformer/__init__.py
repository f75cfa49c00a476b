"""npformer: the Transformer of "Attention Is All You Need" in explicit array math.

Every component is a forward/backward pair of pure functions over NumPy (CPU)
or CuPy (GPU) arrays; see README.md for a map of the package.
"""
from npformer import _cpu

_cpu.apply()  # must run before NumPy loads; see npformer/_cpu.py

from npformer.backend import Backend, get_backend, backend_of  # noqa: E402

__version__ = "0.1.0"
__all__ = ["Backend", "get_backend", "backend_of", "__version__"]
