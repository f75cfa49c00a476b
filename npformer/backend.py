"""The one place where NumPy and CuPy differ.

A backend is data, not a global: an array namespace ``xp`` plus the few
primitives that are not portable between NumPy and CuPy:

  * ``scatter_add(target, indices, values)``: ``target[indices] += values`` with
    repeated indices accumulated (plain fancy-index ``+=`` drops repeats);
  * ``rng(seed)``: a random generator living on the device;
  * ``to_host(a)``: a NumPy copy of any array (on a GPU, a read that waits for it);
  * ``synchronize()``: wait for queued device work (before reading a clock).

Three backends: ``numpy`` (the CPU), ``cupy`` (a GPU) and ``cupysim``, CuPy's
rules simulated on the CPU for finding GPU faults without a GPU (cupysim.py).

Ops never import numpy for array math. They ask ``backend_of(*arrays)`` for the
backend that owns their inputs, which also refuses to mix host and device arrays.
"""
from __future__ import annotations

from npformer.errors import UserError
import os
from typing import Any

import numpy as np

BACKEND_NAMES = ("numpy", "cupy", "cupysim")
# The oldest CuPy whose API npformer uses throughout (cupy_api.json lists it)
MIN_CUPY = (13, 0)
DTYPES = ("float32", "float64")


class Backend:
    """An array namespace plus the non-portable primitives, for one device.

    ``on_device`` is True where arrays live apart from the host (CuPy, cupysim):
    there every read of a value back to the host waits for the device, and ids
    are validated on the host before they are sent (model/transformer.py, ``validate_batch``)."""

    def __init__(self, name: str, xp: Any, on_device: bool = False):
        self.name = name
        self.xp = xp
        self.on_device = on_device

    def __repr__(self) -> str:
        return f"Backend({self.name!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Backend) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)

    # --- the non-portable primitives -------------------------------------
    def scatter_add(self, target, indices, values) -> None:
        """In place: ``target[indices[n]] += values[n]`` for every n, repeats summed.

        target (V, d), indices (N,) int, values (N, d). Both forms sort the
        indices, so that equal ones sit in runs, and add each run's sum to its
        row; the summation order is fixed, so the result is the same bit for bit
        at every call (atomic adds, as in ``cupy.add.at``, are not).
          * host: ``np.add.reduceat`` sums each run in float64, rounded once to
            the target's dtype, as the device form does.
          * device: running sums in float64, C[i] = sum_{j<i} values[order[j]];
            a run [lo, hi) sums to C[hi] - C[lo]. That difference is not
            exact: each C[i] carries the rounding of every addition before it,
            so with N values and float64's eps = 2^-52 it is off by at most
            about N * eps * sum_j |values[j]| (column by column, the sum over
            the whole column, not the run). That is far below float32's
            rounding of the run's own sum unless the run's sum is smaller than
            about N * 2^-28 * sum_j |values[j]|: a run of 1 between 1e17 and
            -1e17 comes out 0, where the host form gives 1. Every row of a
            run writes the same total, so the duplicate writes of the final
            fancy-index assignment agree. No step needs a value on the host.
        """
        xp = self.xp
        if len(indices) == 0:
            return
        if not self.on_device:
            order = np.argsort(indices, kind="stable")
            sorted_idx = indices[order]
            starts = np.flatnonzero(np.concatenate(([True], sorted_idx[1:] != sorted_idx[:-1])))
            sums = np.add.reduceat(values[order], starts, axis=0, dtype=np.float64)  # (runs, d)
            target[sorted_idx[starts]] += sums.astype(target.dtype)
            return
        order = xp.argsort(indices)  # stable on CuPy
        sorted_idx = indices[order]  # (N,)
        running = xp.zeros((len(indices) + 1, values.shape[1]), dtype=xp.float64)  # (N+1, d)
        xp.cumsum(values[order], axis=0, dtype=xp.float64, out=running[1:])
        lo = xp.searchsorted(sorted_idx, sorted_idx, side="left")  # (N,) start of each row's run
        hi = xp.searchsorted(sorted_idx, sorted_idx, side="right")  # (N,) its end
        target[sorted_idx] += (running[hi] - running[lo]).astype(target.dtype)

    def fuse(self, fn):
        """``fn``, an element-wise function of arrays and scalars, compiled into one
        kernel on a device (``cupy.fuse``); on the host, ``fn`` itself."""
        return self.xp.fuse(fn) if self.on_device else fn

    def rng(self, seed: int | None = None):
        """A ``Generator`` on this device with ``random(size, dtype)`` and
        ``standard_normal(size, dtype)``."""
        return self.xp.random.default_rng(seed)

    def to_host(self, a) -> np.ndarray:
        """A NumPy array holding ``a``'s values (a copy when ``a`` is on the GPU)."""
        if self.on_device:
            return self.xp.asnumpy(a)
        return np.asarray(a)

    def asarray(self, a, dtype=None):
        """``a`` as an array on this backend's device (host -> device copy if needed)."""
        return self.xp.asarray(a, dtype=dtype)

    def synchronize(self) -> None:
        if self.on_device:
            self.xp.cuda.Device().synchronize()

    def thread_setup(self):
        """A function that makes the thread calling it use the device that the
        thread calling ``thread_setup`` uses now (None on the host). CuPy's current
        device is per thread: a new thread starts on GPU 0, whatever
        ``cupy.cuda.Device(n).use()`` said in the thread that created it, so a
        rank's worker threads must each be pointed at the rank's GPU."""
        if not self.on_device:
            return None
        device = self.xp.cuda.Device().id
        return lambda: self.xp.cuda.Device(device).use()


_NUMPY = Backend("numpy", np)
_CACHE: dict[str, Backend] = {"numpy": _NUMPY}


def get_backend(name: str | None = None) -> Backend:
    """The backend called ``name``; default ``$NPFORMER_BACKEND``, else numpy.

    Asking for CuPy where it is not installed, or where no GPU is visible,
    raises ``RuntimeError`` saying which of the two is missing.
    """
    if name is None:
        name = os.environ.get("NPFORMER_BACKEND", "numpy") or "numpy"
    if isinstance(name, Backend):
        return name
    name = str(name).lower()
    if name not in BACKEND_NAMES:
        raise ValueError(f"backend: unknown backend {name!r}; expected one of {', '.join(BACKEND_NAMES)}")
    if name in _CACHE:
        return _CACHE[name]
    if name == "cupysim":
        from npformer import cupysim
        _CACHE[name] = Backend("cupysim", cupysim.xp, on_device=True)
        return _CACHE[name]
    try:
        import cupy
    except ImportError as e:
        raise UserError(
            "backend 'cupy' requested but CuPy is not installed "
            f"({e}); install it with `pip install npformer[gpu]` (or the cupy wheel for your CUDA)") from e
    try:
        n_gpus = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # CUDA driver missing or broken
        raise UserError(f"backend 'cupy' requested: CuPy is installed but no GPU is usable ({e})") from e
    if n_gpus == 0:
        raise UserError("backend 'cupy' requested: CuPy is installed but no GPU is visible")
    validate_cupy_version(cupy.__version__)
    _CACHE[name] = Backend("cupy", cupy, on_device=True)
    return _CACHE[name]


def min_cupy_for(numpy_version: str) -> tuple:
    """The oldest CuPy that works with this NumPy: CuPy 13.2 first supports NumPy 2,
    13.6 NumPy 2.3 and later; NumPy 1 works from ``MIN_CUPY``."""
    try:
        major, minor = (int(p) for p in numpy_version.split(".")[:2])
    except ValueError:
        return MIN_CUPY
    if (major, minor) >= (2, 3):
        return (13, 6)
    return (13, 2) if major >= 2 else MIN_CUPY


def validate_cupy_version(version: str, numpy_version: str | None = None) -> None:
    """Refuse a CuPy older than ``MIN_CUPY``, or too old for the installed NumPy,
    with a message that says what to install."""
    try:
        major_minor = tuple(int(p) for p in version.split(".")[:2])
    except ValueError:
        return  # a development build: let it try
    numpy_version = numpy_version or np.__version__
    needed = min_cupy_for(numpy_version)
    if MIN_CUPY <= major_minor < needed:
        raise UserError(f"backend 'cupy': CuPy {version} does not support NumPy {numpy_version}; it needs "
                        f"CuPy >= {needed[0]}.{needed[1]} (pip install -U 'npformer[gpu]'), or an older NumPy")
    if major_minor < MIN_CUPY:
        raise UserError(f"backend 'cupy': CuPy {version} is too old; npformer needs CuPy >= "
                           f"{MIN_CUPY[0]}.{MIN_CUPY[1]} (pip install 'npformer[gpu]', or the cupy wheel "
                           "for your CUDA version, e.g. cupy-cuda12x)")


def cupy_available() -> bool:
    """True where ``get_backend('cupy')`` would succeed."""
    try:
        get_backend("cupy")
        return True
    except RuntimeError:
        return False


def _array_backend_name(a) -> str | None:
    if isinstance(a, np.ndarray) or isinstance(a, np.generic):
        return "numpy"
    declared = getattr(type(a), "__npformer_backend__", None)  # cupysim's arrays say so
    if declared is not None:
        return declared
    module = type(a).__module__
    if module.startswith("cupy"):
        return "cupy"
    return None


def backend_of(*arrays) -> Backend:
    """The backend that owns ``arrays`` (``None`` entries are skipped).

    Raises ``TypeError`` when CPU and GPU arrays are mixed, or when an argument
    is not an array at all: silently moving data between devices hides bugs
    and costs time.
    """
    found = None
    for i, a in enumerate(arrays):
        if a is None:
            continue
        name = _array_backend_name(a)
        if name is None:
            raise TypeError(f"argument {i}: expected a numpy or cupy array, got {type(a).__name__}")
        if found is None:
            found = name
        elif name != found:
            raise TypeError(
                f"arrays from different devices: argument {i} is a {name} array but an earlier one "
                f"is a {found} array; move them to one backend first (Backend.asarray / to_host)")
    return get_backend(found or "numpy")


def validate_dtype(name: str) -> str:
    """Validate a floating dtype name for the model ('float32' or 'float64')."""
    if str(name) not in DTYPES:
        raise ValueError(f"dtype: unknown dtype {name!r}; expected one of {', '.join(DTYPES)}")
    return str(name)
