"""The ``be`` fixture runs each test that takes it on every backend: numpy and cupysim (CuPy's
rules simulated on the CPU) always, cupy where a GPU is usable."""
import os
from pathlib import Path

import pytest
from hypothesis import settings

from npformer.backend import cupy_available, get_backend

settings.register_profile("ci", deadline=None, max_examples=25, derandomize=True)
settings.register_profile("dev", deadline=None, max_examples=25)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# NPFORMER_REQUIRE_CUPY=1 (benchmarks/gpu_check.sh) turns a missing GPU into errors, not skips
BACKENDS = ["numpy", "cupysim", "cupy" if os.environ.get("NPFORMER_REQUIRE_CUPY") == "1" else pytest.param(
    "cupy", marks=pytest.mark.skipif(not cupy_available(), reason="CuPy or a GPU is not available"))]


@pytest.fixture(params=BACKENDS)
def be(request):
    """The backend under test."""
    return get_backend(request.param)


ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def cli_env() -> dict:
    """The environment of every test's ``npformer`` subprocess: this checkout's package
    first on the path (whatever is installed), one BLAS thread (tests run side by
    side on a small machine), and no tracebacks for user errors (NPFORMER_DEBUG unset)."""
    env = {k: v for k, v in os.environ.items() if k != "NPFORMER_DEBUG"}
    env.update(PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    return env
