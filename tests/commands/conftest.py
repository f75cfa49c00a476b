"""How every CLI test runs ``npformer`` in a fresh process: ``run_npformer(*args)``.

The subprocess imports this checkout's package (whatever is installed), runs one
BLAS thread (tests run side by side on a small machine) and never shows
tracebacks for user errors (NPFORMER_DEBUG unset).
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def cli_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "NPFORMER_DEBUG"}
    env.update(PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    return env


@pytest.fixture(scope="session")
def run_npformer(cli_env):
    """``run_npformer(*args, stdin=None, timeout=300, env=None)`` -> CompletedProcess of
    ``python -m npformer ARGS``; ``env`` adds variables to ``cli_env``."""
    def run(*args, stdin=None, timeout=300, env=None):
        return subprocess.run([sys.executable, "-m", "npformer", *map(str, args)], input=stdin,
                              capture_output=True, text=True, env={**cli_env, **(env or {})}, timeout=timeout,
                              cwd=ROOT)
    return run

