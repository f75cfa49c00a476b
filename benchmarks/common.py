"""Helpers shared by the benchmark scripts: machine facts, timing, peak GEMM rate, output.

Only the standard library is imported at module load. NumPy is imported inside the
functions that need it, so a script can still call :func:`set_threads` (or set
``OPENBLAS_CORETYPE``) before NumPy's BLAS is loaded. torch is never imported here:
where it matters we only look at ``sys.modules`` to see whether the caller loaded it.

Conventions for every benchmark script:
  * validate before timing (finite loss, loss goes down, results match a reference);
  * report device, dtype and shapes next to the numbers;
  * on a GPU, pass ``sync`` so the clock is read only after the device finished;
  * ``--json`` prints exactly one JSON object, as the last line of output (:func:`emit`).
"""
import json
import math
import os
import platform
import statistics
import sys
import time

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


# ----------------------------------------------------------------------------- machine

def _cpuinfo_field(name):
    """First value of ``name`` in /proc/cpuinfo (Linux), or None."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                key, sep, value = line.partition(":")
                if sep and key.strip() == name:
                    return value.strip()
    except OSError:
        pass
    return None


def cpu_has_avx512f() -> bool:
    """Whether the CPU reports ``avx512f`` in /proc/cpuinfo (False where unknown)."""
    flags = _cpuinfo_field("flags") or ""
    return "avx512f" in flags.split()


def _blas_from_show_config(np):
    """BLAS/LAPACK entries of ``numpy.show_config(mode="dicts")`` (NumPy >= 1.26)."""
    try:
        cfg = np.show_config(mode="dicts")
    except TypeError:  # older NumPy: no ``mode``, it only prints
        cfg = None
    if isinstance(cfg, dict):
        deps = cfg.get("Build Dependencies", {})
        out = {}
        for key in ("blas", "lapack"):
            d = deps.get(key) or {}
            out[key] = {k: d.get(k) for k in ("name", "version", "openblas configuration")
                        if d.get(k) is not None}
        simd = cfg.get("SIMD Extensions")
        if simd:
            out["numpy_simd"] = simd
        return out
    # Best effort for older NumPy: capture what show_config() prints.
    import contextlib
    import io
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            np.show_config()
    except Exception as exc:  # pragma: no cover - depends on the NumPy build
        return {"error": repr(exc)}
    lines = [ln.strip() for ln in buf.getvalue().splitlines()]
    return {"show_config": [ln for ln in lines if "blas" in ln.lower() or "lapack" in ln.lower()]}


def _threadpool_info():
    """What threadpoolctl (optional) sees in the loaded BLAS/OpenMP libraries.

    For OpenBLAS, ``architecture`` is the kernel core type actually in use (e.g.
    ``SkylakeX`` for the AVX-512 kernels, ``Haswell`` for AVX2)."""
    try:
        import threadpoolctl
    except ImportError:
        return None
    try:
        info = threadpoolctl.threadpool_info()
    except Exception as exc:  # pragma: no cover
        return [{"error": repr(exc)}]
    keep = ("user_api", "internal_api", "prefix", "version", "num_threads",
            "threading_layer", "architecture")
    return [{k: d.get(k) for k in keep if k in d} for d in info]


def _openblas_corename_ctypes():
    """OpenBLAS core type in use, read from the loaded library itself (Linux), or None.

    A fallback for when threadpoolctl is absent: find the OpenBLAS that NumPy loaded in
    /proc/self/maps and call its ``*_get_corename`` (name varies with the build)."""
    import ctypes

    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            paths = {ln.split()[-1] for ln in f if "openblas" in ln.lower() and "/" in ln}
    except OSError:
        return None
    names = ("openblas_get_corename", "openblas_get_corename64_",
             "scipy_openblas_get_corename64_", "scipy_openblas_get_corename")
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in names:
            fn = getattr(lib, name, None)
            if fn is not None:
                fn.restype = ctypes.c_char_p
                core = fn()
                return core.decode("ascii", "replace") if core else None
    return None


def machine_info() -> dict:
    """Facts about this machine and the numeric libraries, for the benchmark report.

    Keys: cpu_model, cpu_cores, avx512f, python, platform, numpy, blas (from
    ``numpy.show_config``; its "openblas configuration" names the *build* target, e.g.
    "DYNAMIC_ARCH ... Haswell", not the kernels chosen at run time), OPENBLAS_CORETYPE
    (the env var), thread_env, openblas_coretype_in_use (the kernels OpenBLAS actually
    picked, via threadpoolctl if installed, else read from the library), threadpools
    (threadpoolctl only) and torch (only if the caller imported it).

    Imports NumPy (so call it after any :func:`set_threads` / ``OPENBLAS_CORETYPE``
    setup)."""
    import numpy as np

    info = {
        "cpu_model": _cpuinfo_field("model name") or platform.processor() or None,
        "cpu_cores": os.cpu_count(),
        "avx512f": cpu_has_avx512f(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": np.__version__,
        "blas": _blas_from_show_config(np),
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "thread_env": {k: os.environ.get(k) for k in THREAD_ENV_VARS},
    }
    pools = _threadpool_info()
    if pools is not None:
        info["threadpools"] = pools
        openblas = [p for p in pools if p.get("internal_api") == "openblas"]
        if openblas:
            info["openblas_coretype_in_use"] = openblas[0].get("architecture")
    if "openblas_coretype_in_use" not in info and "openblas" in str(info["blas"]).lower():
        info["openblas_coretype_in_use"] = _openblas_corename_ctypes()
    torch = sys.modules.get("torch")
    if torch is not None:
        t = {"version": getattr(torch, "__version__", None)}
        try:
            t["num_threads"] = torch.get_num_threads()
            t["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        except Exception:  # pragma: no cover - older torch
            pass
        info["torch"] = t
    return info


def set_threads(n: int) -> dict:
    """Ask every numeric library in this process to use ``n`` threads.

    Sets ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` and ``MKL_NUM_THREADS``.
    BLAS libraries read these only when they are first loaded, so for the env vars to
    count this must run **before NumPy (or torch) is imported**, i.e. at the top of a
    fresh process / subprocess. If torch is already imported, ``torch.set_num_threads(n)``
    is called too; if NumPy is already imported and the optional ``threadpoolctl`` is
    present, its BLAS pool is resized with it. Returns what was done.
    """
    n = int(n)
    if n < 1:
        raise ValueError(f"set_threads: need n >= 1, got {n}")
    for k in THREAD_ENV_VARS:
        os.environ[k] = str(n)
    done = {"threads": n, "env": list(THREAD_ENV_VARS),
            "numpy_already_imported": "numpy" in sys.modules,
            "torch": False, "threadpoolctl": False}
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)
        done["torch"] = True
    if done["numpy_already_imported"]:
        try:
            import threadpoolctl
            threadpoolctl.threadpool_limits(limits=n)  # applies now, kept for the process
            done["threadpoolctl"] = True
        except ImportError:
            pass
    return done


# ----------------------------------------------------------------------------- timing

def median_time(fn, warmup=2, repeats=5, sync=None):
    """Call ``fn()`` ``warmup`` times untimed, then ``repeats`` times timed.

    ``sync`` (e.g. a CUDA device synchronise) is called before starting and before
    stopping each clock, so asynchronous GPU work is counted. Returns
    ``(median_seconds, [seconds of each timed call])``."""
    if repeats < 1:
        raise ValueError("median_time: repeats must be >= 1")
    for _ in range(warmup):
        fn()
    if sync is not None:
        sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if sync is not None:
            sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def _system_busy_cpu_s():
    """CPU seconds all CPUs spent busy since boot (Linux /proc/stat), or None.

    Busy = user + nice + system + irq + softirq + steal (steal: taken by the hypervisor
    for other guests, which slows us down just the same)."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


class OtherLoad:
    """Context manager: how much CPU OTHER processes used while the block ran.

    On a shared machine, a benchmark's threads compete with other work (and OpenMP
    spin-waiting makes that much worse than the share of CPU taken would suggest).
    After the block, ``other_cores`` is the average number of cores kept busy by
    everything but this process (0.0 on an idle machine; None where unknown, i.e.
    not Linux). Report it next to the timings so noisy numbers can be recognised."""

    def __enter__(self):
        self._t0, self._busy0, self._own0 = time.perf_counter(), _system_busy_cpu_s(), os.times()
        return self

    def __exit__(self, *exc):
        busy1, own1 = _system_busy_cpu_s(), os.times()
        self.wall_s = time.perf_counter() - self._t0
        # this process and the children it waited for (benchmark workers) are not "other"
        own = sum(own1[:4]) - sum(self._own0[:4])
        if busy1 is None or self._busy0 is None or self.wall_s <= 0:
            self.other_cpu_s = self.other_cores = None
        else:
            self.other_cpu_s = max(0.0, busy1 - self._busy0 - own)
            self.other_cores = round(self.other_cpu_s / self.wall_s, 3)
        return False


def matmul_peak_gflops(dtype="float32", n=2048, repeats=5, xp=None, sync=None) -> float:
    """GEMM rate in GFLOP/s: ``2 n^3`` flops of one (n, n) @ (n, n) over the median time.

    ``xp`` is the array namespace (default NumPy; CuPy or torch work too: it needs
    ``asarray`` and ``matmul(a, b, out=c)``). Inputs are random, so no shortcut for
    zeros applies. One warm-up call precedes the timed ones. Pass ``sync`` for a GPU."""
    import numpy as np

    if xp is None:
        xp = np
    rng = np.random.default_rng(0)
    a_host = rng.standard_normal((n, n)).astype(dtype)  # (n, n)
    b_host = rng.standard_normal((n, n)).astype(dtype)  # (n, n)
    a, b = xp.asarray(a_host), xp.asarray(b_host)
    c = xp.matmul(a, b)  # (n, n), also the warm-up
    if sync is not None:
        sync()
    med, _ = median_time(lambda: xp.matmul(a, b, out=c), warmup=1, repeats=repeats, sync=sync)
    return 2.0 * n ** 3 / med / 1e9


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB (``ru_maxrss``)."""
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return rss / (1024.0 * 1024.0) if sys.platform == "darwin" else rss / 1024.0


# ----------------------------------------------------------------------------- output

def _jsonable(x):
    """Plain JSON types: NumPy scalars/arrays unwrapped, non-finite floats to None."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, (str, int, bool)) or x is None:
        return x
    if hasattr(x, "tolist"):  # NumPy / CuPy scalars and arrays
        return _jsonable(x.tolist())
    if hasattr(x, "item"):
        return _jsonable(x.item())
    return str(x)


def _fmt(v):
    """Short text for a table cell."""
    if isinstance(v, float):
        a = abs(v)
        if not math.isfinite(v) or a == 0:
            return str(v)
        if a >= 1e7 or a < 1e-3:
            return f"{v:.3e}"
        if a >= 1000:
            return f"{v:,.1f}"
        return f"{v:.4g}"
    return "" if v is None else str(v)


def print_table(rows, columns, file=None):
    """Print ``rows`` (dicts) as a plain text table with the given ``columns``.

    Text is left-aligned, numbers right-aligned; missing cells are blank."""
    file = sys.stdout if file is None else file
    cells = [[_fmt(r.get(c)) for c in columns] for r in rows]
    numeric = [all(isinstance(r.get(c), (int, float)) and not isinstance(r.get(c), bool)
                   for r in rows if r.get(c) is not None) for c in columns]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]

    def line(values):
        return "  ".join(v.rjust(w) if num else v.ljust(w)
                         for v, w, num in zip(values, widths, numeric)).rstrip()

    print(line(columns), file=file)
    print("  ".join("-" * w for w in widths), file=file)
    for row in cells:
        print(line(row), file=file)


def emit(result: dict, as_json: bool, table_rows=None, columns=None):
    """Report a benchmark result.

    With ``as_json`` print exactly one JSON object on one line (the last line of
    output). Otherwise print ``table_rows`` as a table (columns: ``columns`` or the
    keys of the first row), or, without rows, ``result`` as ``key: value`` lines."""
    if as_json:
        print(json.dumps(_jsonable(result), allow_nan=False), flush=True)
        return
    if table_rows:
        if columns is None:
            columns = list(table_rows[0].keys())
        print_table(table_rows, columns)
    else:
        width = max((len(str(k)) for k in result), default=0)
        for k, v in result.items():
            print(f"{str(k).ljust(width)} : {_fmt(v) if not isinstance(v, (dict, list)) else json.dumps(_jsonable(v))}")
    sys.stdout.flush()


if __name__ == "__main__":  # quick look: python -m benchmarks.common [--json]
    res = machine_info()
    res["matmul_float32_gflops"] = matmul_peak_gflops("float32")
    res["matmul_float64_gflops"] = matmul_peak_gflops("float64")
    emit(res, "--json" in sys.argv)
