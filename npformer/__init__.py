"""npformer: the Transformer of "Attention Is All You Need" in explicit array math.

Every component is a forward/backward pair of pure functions over NumPy (CPU)
or CuPy (GPU) arrays; see README.md for a map of the package. Importing the
package loads nothing and changes nothing in the process: ``get_backend`` and
friends load NumPy on first use.
"""
__version__ = "0.1.0"
__all__ = ["Backend", "get_backend", "backend_of", "__version__"]


def __getattr__(name):
    if name in ("Backend", "get_backend", "backend_of"):
        from npformer import backend
        return getattr(backend, name)
    raise AttributeError(f"module 'npformer' has no attribute {name!r}")
