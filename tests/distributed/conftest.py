"""Finding ``mpiexec`` for the distributed tests: where MPI is missing they skip,
except in CI (CI=true), where they fail."""
import os
import shutil
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def find_mpiexec() -> tuple[str | None, str]:
    """``(path of mpiexec, "")`` where MPI can run here, else ``(None, why not)``."""
    if find_spec("mpi4py") is None:
        return None, "mpi4py is not installed (pip install '.[mpi]')"
    path = shutil.which("mpiexec", path=os.pathsep.join([os.path.dirname(sys.executable),
                                                          os.environ.get("PATH", "")]))
    return (path, "") if path else (None, "no mpiexec on PATH or beside the Python interpreter")


@pytest.fixture(scope="session")
def mpiexec():
    path, why = find_mpiexec()
    if path is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI must run the MPI tests, but {why}")
        pytest.skip(why)
    return path


def mpi_env(**more) -> dict:
    """The environment of an ``mpiexec`` subprocess: this checkout first on the
    path; Open MPI allowed to run as root (MPICH does not ask)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1", **more}
