"""One fixture runs every test on every backend: numpy and cupysim (CuPy's rules simulated on
the CPU) always, cupy where a GPU is usable."""
import os

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
