"""Finding ``mpiexec`` for the distributed tests: where MPI is missing they skip,
except in CI (CI=true), where they fail."""
import os
import shutil
import subprocess
import sys
from importlib.util import find_spec
import pytest


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


@pytest.fixture(scope="session")
def mpi_env(cli_env) -> dict:
    """The environment of an ``mpiexec`` subprocess: ``cli_env``, and Open MPI allowed
    to run as root (MPICH does not ask)."""
    return {**cli_env, "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}


@pytest.fixture(scope="session")
def run(mpi_env):
    """``run(cmd, timeout=600, **kw)`` -> CompletedProcess, in ``mpi_env``."""
    def run(cmd, timeout=600, **kw):
        return subprocess.run(cmd, capture_output=True, text=True, env=mpi_env, timeout=timeout, **kw)
    return run
