"""cupysim: CuPy's rules, simulated on the CPU. A debugging backend.

Code written for NumPy tends to break on a GPU in three ways that a NumPy run
never shows:
  * it mixes a host (NumPy) array into device math, which CuPy refuses with
    ``TypeError``, or converts a device array to NumPy implicitly
    (``np.asarray``), which CuPy also refuses;
  * it calls a function that one supported CuPy version lacks;
  * it reads device values back to the host (``float(loss)``, ``int(a.max())``,
    ``if mask.any():``) inside a hot loop. Each read waits for every queued GPU
    kernel to finish, so the GPU idles while Python catches up.

The ``cupysim`` backend runs on NumPy underneath but enforces these rules:
  * its arrays (``SimArray``) are their own type; mixing one with a NumPy array
    in an operation raises ``TypeError``, as CuPy does. Indexing with a NumPy
    array and assigning a NumPy array into a slice are allowed, as in CuPy
    (both copy host -> device);
  * ``np.asarray(a)`` / ``a.__array__()`` raise; only ``asnumpy``, ``.get()``
    and the backend's ``to_host`` cross over to the host;
  * every read back to the host is counted: ``float()``, ``int()``, ``bool()``,
    ``.item()``, ``.tolist()``, ``.get()``, ``asnumpy``/``to_host``, ``repr``.
    ``host_reads()`` counts them and says where they happened;
  * every operation that would launch a GPU kernel (an operator, a ufunc, a
    reduction, a matrix product, a copy, fancy indexing, a random draw, a
    transfer from the host) is counted too: ``kernel_launches()`` counts them
    and says which lines made the most. A GPU step of many small kernels is
    bound by the launch overhead (a few microseconds each), not by arithmetic,
    so this count is what a faster GPU step has to bring down. Views (reshape,
    transpose, basic slicing) launch nothing; a ``cupy.fuse`` function counts
    as one kernel, however many operations its body has;
  * its namespace and its arrays offer only the names that every supported CuPy
    version has (npformer/cupy_api.json, written by tools/cupy_api.py from
    CuPy's own sources). Anything else raises ``AttributeError``.

Use it to check code for a GPU on a machine without one:
    NPFORMER_BACKEND=cupysim python -m pytest ...       npformer train --backend cupysim ...

What it does not simulate: speed, memory, the kernels that one CuPy call
may launch in more than one (a count is a lower bound), the exact random streams of CuPy's
generators, CuPy's silent wrapping of out-of-range indices (they raise
``IndexError`` here, as in NumPy), and CUDA C kernels (``ElementwiseKernel``, ``RawKernel``). Fused
element-wise code should use ``cupy.fuse``, whose Python body runs here as it is.
"""
from __future__ import annotations

import json
import sys
import threading
from collections import Counter
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import numpy as np

_API = json.loads(resources.files("npformer").joinpath("cupy_api.json").read_text())
SUPPORTED_CUPY = tuple(_API["versions"])
_NAMES = {space: frozenset(names) for space, names in _API["names"].items()}


# --- counting reads back to the host ---------------------------------------
class HostRead(NamedTuple):
    kind: str    # "float", "int", "bool", "item", "tolist", "get", "asnumpy", "repr"
    where: str   # "file:line" of the first caller outside this module


class HostReads:
    """The reads back to the host made while it was active (``len``, ``.reads``)."""

    def __init__(self):
        self.reads: list[HostRead] = []

    def __len__(self) -> int:
        return len(self.reads)

    def __repr__(self) -> str:
        return f"HostReads({len(self.reads)}: " + ", ".join(f"{r.kind} at {r.where}" for r in self.reads) + ")"


_active: list[HostReads] = []
# a read is reported at its caller's line, not inside these files
_PLUMBING = {__file__, str(Path(__file__).parent / "backend.py")}
_lock = threading.Lock()


@contextmanager
def host_reads():
    """Count the reads back to the host inside the ``with`` block, from any thread:

        with host_reads() as reads:
            train_step(...)
        assert len(reads) <= 2, reads      # the repr says where each read happened
    """
    counter = HostReads()
    with _lock:
        _active.append(counter)
    try:
        yield counter
    finally:
        with _lock:
            _active.remove(counter)


def _record(kind: str) -> None:
    if not _active:
        return
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename in _PLUMBING:
        frame = frame.f_back
    where = f"{frame.f_code.co_filename}:{frame.f_lineno}" if frame is not None else "?"
    read = HostRead(kind, where)
    with _lock:
        for counter in _active:
            counter.reads.append(read)


# --- counting kernel launches ---------------------------------------------------
class KernelLaunches:
    """The kernel launches made while it was active: ``len``, and ``.where``, a Counter
    of "file:line" -> launches (``most_common(n)`` names the busiest lines)."""

    def __init__(self):
        self.where: Counter = Counter()

    def __len__(self) -> int:
        return sum(self.where.values())

    def __repr__(self) -> str:
        top = ", ".join(f"{n} at {w}" for w, n in self.where.most_common(5))
        return f"KernelLaunches({len(self)}; most at: {top})"


_launch_counters: list[KernelLaunches] = []
_fused = threading.local()  # depth of cupy.fuse bodies running on this thread
# CuPy functions and array methods that return a view or metadata: no kernel
_VIEWS = frozenset({"reshape", "swapaxes", "transpose", "view", "squeeze", "expand_dims", "broadcast_to",
                    "moveaxis", "rollaxis", "atleast_1d", "atleast_2d", "atleast_3d", "split", "array_split",
                    "broadcast_arrays", "result_type", "can_cast", "shape", "ndim", "size", "isscalar",
                    "get_array_module", "finfo", "iinfo", "dtype"})


@contextmanager
def kernel_launches():
    """Count the kernels launched inside the ``with`` block, from any thread:

        with kernel_launches() as launches:
            train_step(...)
        print(len(launches), launches.where.most_common(10))
    """
    counter = KernelLaunches()
    with _lock:
        _launch_counters.append(counter)
    try:
        yield counter
    finally:
        with _lock:
            _launch_counters.remove(counter)


def _launch() -> None:
    if not _launch_counters or getattr(_fused, "depth", 0):
        return
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename in _PLUMBING:
        frame = frame.f_back
    where = f"{frame.f_code.co_filename}:{frame.f_lineno}" if frame is not None else "?"
    with _lock:
        for counter in _launch_counters:
            counter.where[where] += 1


def _is_basic(key) -> bool:
    """Basic indexing (ints, slices, None, Ellipsis) gives a view: no kernel."""
    parts = key if isinstance(key, tuple) else (key,)
    return all(k is None or k is Ellipsis or isinstance(k, (int, slice)) for k in parts)


# --- moving between SimArray and NumPy inside the simulation ----------------
def _host_array_error(x) -> TypeError:
    return TypeError(
        f"Unsupported type {type(x)}: a host (NumPy) array met a device array, which CuPy refuses; "
        "move it to the device first (Backend.asarray / cupy.asarray)")


def _unwrap(x):
    """SimArray -> its NumPy array; scalars pass; a NumPy array raises (CuPy would)."""
    if isinstance(x, SimArray):
        return x._a
    if isinstance(x, np.ndarray):
        raise _host_array_error(x)
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap(v) for v in x)
    if isinstance(x, dict):
        return {k: _unwrap(v) for k, v in x.items()}
    return x


def _wrap(x):
    """NumPy results -> SimArray. A NumPy scalar becomes a 0-d array, since CuPy's
    reductions return 0-d device arrays, not host numbers."""
    if isinstance(x, np.ndarray):
        return SimArray(x)
    if isinstance(x, np.generic):
        return SimArray(np.asarray(x))
    if isinstance(x, tuple):
        return tuple(_wrap(v) for v in x)
    if isinstance(x, list):
        return [_wrap(v) for v in x]
    return x


def _index(key):
    """An index for ``a[key]``: NumPy arrays and lists are allowed (CuPy copies them to the device)."""
    if isinstance(key, SimArray):
        return key._a
    if isinstance(key, tuple):
        return tuple(_index(k) for k in key)
    return key


def _call(fn, args, kwargs, name=None):
    if (name or getattr(fn, "__name__", "")) not in _VIEWS:
        _launch()
    return _wrap(fn(*_unwrap(args), **_unwrap(kwargs)))


def _operand(other):
    """The other side of an operator: scalars and device arrays pass; a host array or
    a list raises TypeError, as in CuPy."""
    if isinstance(other, np.ndarray):
        raise _host_array_error(other)
    if isinstance(other, (list, tuple)):
        raise TypeError(f"Unsupported type {type(other)}")
    return _unwrap(other)


def _binary(op):
    def method(self, other):
        _launch()
        return _wrap(op(self._a, _operand(other)))
    return method


def _inplace(op):
    def method(self, other):
        _launch()
        op(self._a, _operand(other), out=self._a)
        return self
    return method


def _reflected(op):
    def method(self, other):
        _launch()
        return _wrap(op(_unwrap(other), self._a))
    return method


def _unary(op):
    def method(self):
        _launch()
        return SimArray(op(self._a))
    return method


# --- the array ---------------------------------------------------------------
class SimArray:
    """A device array of the simulation: a NumPy array behind CuPy's rules."""

    __slots__ = ("_a",)
    __npformer_backend__ = "cupysim"  # how backend.backend_of recognises it
    __hash__ = None

    def __init__(self, a: np.ndarray):
        self._a = a

    # reads back to the host: counted
    def __float__(self):
        _record("float")
        return float(self._a)

    def __int__(self):
        _record("int")
        return int(self._a)

    def __complex__(self):
        _record("complex")
        return complex(self._a)

    def __bool__(self):
        _record("bool")
        return bool(self._a)

    def item(self):
        _record("item")
        return self._a.item()

    def tolist(self):
        _record("tolist")
        return self._a.tolist()

    def get(self, stream=None, order="C", out=None, blocking=True):
        """The host copy (CuPy's name for it)."""
        _record("get")
        return self._a.copy(order=order)

    def __repr__(self):
        _record("repr")
        return "cupysim." + repr(self._a)

    def __str__(self):
        _record("repr")
        return str(self._a)

    def __format__(self, spec):
        _record("repr")
        return format(self._a, spec)

    # no implicit conversion to NumPy
    def __array__(self, dtype=None, copy=None):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. "
                        "Please use `.get()` to construct a NumPy array explicitly.")

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        # np.exp(a) with a device array runs CuPy's exp, as CuPy's ndarray does
        if ufunc.__name__ not in _NAMES["cupy"]:
            return NotImplemented
        return _call(getattr(ufunc, method), inputs, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        if func.__name__ not in _NAMES["cupy"]:
            return NotImplemented  # NumPy then raises TypeError: no implementation found
        return _call(func, args, kwargs)

    # metadata: host values, no read
    @property
    def shape(self):
        return self._a.shape

    @property
    def dtype(self):
        return self._a.dtype

    @property
    def ndim(self):
        return self._a.ndim

    @property
    def size(self):
        return self._a.size

    @property
    def T(self):
        return SimArray(self._a.T)

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        if self._a.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (SimArray(self._a[i]) if self._a.ndim > 1 else _wrap(self._a[i]) for i in range(len(self._a)))

    def __getitem__(self, key):
        if not _is_basic(key):
            _launch()  # fancy indexing gathers in a kernel
        return _wrap(self._a[_index(key)])

    def __setitem__(self, key, value):
        _launch()  # a copy or fill kernel
        self._a[_index(key)] = value._a if isinstance(value, SimArray) else value

    def __getattr__(self, name):
        if name not in _NAMES["ndarray"]:
            raise AttributeError(f"'cupy.ndarray' object has no attribute {name!r} in every supported "
                                 f"CuPy version ({', '.join(SUPPORTED_CUPY)})")
        value = getattr(self._a, name)
        if callable(value):
            return lambda *args, **kwargs: _call(value, args, kwargs, name)
        return _wrap(value)

    __neg__ = _unary(np.negative)
    __pos__ = _unary(np.positive)
    __abs__ = _unary(np.absolute)
    __invert__ = _unary(np.invert)


_OPERATORS = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "truediv": np.true_divide,
              "floordiv": np.floor_divide, "mod": np.remainder, "pow": np.power, "matmul": np.matmul,
              "and": np.bitwise_and, "or": np.bitwise_or, "xor": np.bitwise_xor,
              "lshift": np.left_shift, "rshift": np.right_shift}
for _name, _op in _OPERATORS.items():
    setattr(SimArray, f"__{_name}__", _binary(_op))
    setattr(SimArray, f"__r{_name}__", _reflected(_op))
    if _name != "matmul":
        setattr(SimArray, f"__i{_name}__", _inplace(_op))
for _name, _op in {"eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal,
                   "gt": np.greater, "ge": np.greater_equal}.items():
    setattr(SimArray, f"__{_name}__", _binary(_op))


# --- the namespace -------------------------------------------------------------
class _Ufunc:
    """A NumPy ufunc behind CuPy's rules, with the ufunc methods CuPy has."""

    def __init__(self, ufunc):
        self._u = ufunc
        self.__name__ = ufunc.__name__

    def __call__(self, *args, **kwargs):
        return _call(self._u, args, kwargs)

    def __getattr__(self, method):
        if method not in ("at", "reduce", "accumulate", "reduceat", "outer"):
            raise AttributeError(f"cupy ufunc {self.__name__!r} has no method {method!r}")
        return lambda *args, **kwargs: _call(getattr(self._u, method), args, kwargs)


class SimGenerator:
    """``cupy.random.Generator``: random, standard_normal, integers, uniform, as device arrays."""

    def __init__(self, seed=None):
        self._g = np.random.default_rng(seed)

    def random(self, size=None, dtype=np.float64, out=None):
        _launch()
        return _wrap(self._g.random(size, dtype=dtype))

    def standard_normal(self, size=None, dtype=np.float64, out=None):
        _launch()
        return _wrap(self._g.standard_normal(size, dtype=dtype))

    def integers(self, low, high=None, size=None, dtype=np.int64, endpoint=False):
        _launch()
        return _wrap(self._g.integers(low, high, size, dtype=dtype, endpoint=endpoint))

    def uniform(self, low=0.0, high=1.0, size=None, dtype=np.float64):
        _launch()
        return _wrap(self._g.uniform(low, high, size).astype(dtype, copy=False))


class _Device:
    """``cupy.cuda.Device``: ``Device()`` is the calling thread's current device,
    ``Device(n).use()`` makes n current for the calling thread only (as on CuPy,
    where every new thread starts on device 0)."""
    _current = threading.local()

    def __init__(self, device=None):
        self.id = getattr(self._current, "id", 0) if device is None else int(device)

    def use(self):
        _Device._current.id = self.id

    def synchronize(self):
        """Nothing is queued on the CPU; kept so that timing code reads as it does on CuPy."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _fuse(*args, **kwargs):
    """``cupy.fuse``: the function's Python body runs element-wise, counted as the one
    kernel CuPy compiles it into."""
    def fused(f):
        def kernel(*a, **kw):
            _launch()
            _fused.depth = getattr(_fused, "depth", 0) + 1
            try:
                return f(*a, **kw)
            finally:
                _fused.depth -= 1
        kernel.__name__ = getattr(f, "__name__", "fused")
        return kernel
    if len(args) == 1 and not kwargs and callable(args[0]):
        return fused(args[0])
    return fused


def _asarray(a, dtype=None, order=None, **kwargs):
    """Host -> device: the one way in (NumPy arrays, lists and scalars)."""
    if isinstance(a, SimArray):
        if dtype is not None and a._a.dtype != dtype:
            _launch()  # a cast
        return SimArray(a._a if dtype is None else a._a.astype(dtype, copy=False))
    _launch()  # a copy to the device
    if isinstance(a, (list, tuple)) and any(isinstance(v, SimArray) for v in a):
        a = [v._a if isinstance(v, SimArray) else v for v in a]
    return SimArray(np.array(a, dtype=dtype, order=order or "K"))


def _array(a, dtype=None, copy=True, order=None, **kwargs):
    """``cupy.array``: a copy by default, as in CuPy (``asarray`` shares where it can)."""
    out = _asarray(a, dtype=dtype, order=order)
    if copy and isinstance(a, SimArray) and np.shares_memory(out._a, a._a):
        _launch()
        out = SimArray(out._a.copy())
    return out


def _asnumpy(a, stream=None, order="C", out=None, blocking=True):
    if isinstance(a, SimArray):
        _record("asnumpy")
        return np.array(a._a, order=order)
    return np.asarray(a, order=order)


class _Namespace:
    """A module-like view of ``source`` (numpy, numpy.random, ...) with only ``names``."""

    def __init__(self, name, source, names, special=None):
        self.__name__ = name
        self._source, self._names, self._special = source, names, special or {}

    def __repr__(self):
        return f"<cupysim namespace {self.__name__}>"

    def __getattr__(self, attr):
        if attr not in self._names:
            raise AttributeError(f"module {self.__name__!r} has no attribute {attr!r} in every supported "
                                 f"CuPy version ({', '.join(SUPPORTED_CUPY)})")
        if attr in self._special:
            return self._special[attr]
        value = getattr(self._source, attr, None)
        if value is None:
            raise NotImplementedError(f"cupysim does not simulate {self.__name__}.{attr}")
        if isinstance(value, np.ufunc):
            return _Ufunc(value)
        if isinstance(value, type) or not callable(value):
            return value  # dtypes (cupy.float32 is numpy.float32), constants
        return lambda *args, **kwargs: _call(value, args, kwargs)


def _not_simulated(what):
    def fail(*args, **kwargs):
        raise NotImplementedError(f"cupysim cannot run {what}: it compiles CUDA C; write the element-wise "
                                  "body as Python with cupy.fuse, which runs here as it is")
    return fail


random = _Namespace("cupy.random", np.random, _NAMES["cupy.random"],
                    {"default_rng": SimGenerator, "Generator": SimGenerator})
linalg = _Namespace("cupy.linalg", np.linalg, _NAMES["cupy.linalg"])
cuda = _Namespace("cupy.cuda", None, {"Device"}, {"Device": _Device})
xp = _Namespace("cupysim", np, _NAMES["cupy"], {
    "asarray": _asarray, "array": _array, "asnumpy": _asnumpy, "fuse": _fuse, "ndarray": SimArray,
    "random": random, "linalg": linalg, "cuda": cuda,
    "get_array_module": lambda *arrays: xp,
    "ElementwiseKernel": _not_simulated("ElementwiseKernel"), "RawKernel": _not_simulated("RawKernel"),
    "ReductionKernel": _not_simulated("ReductionKernel"), "RawModule": _not_simulated("RawModule")})
