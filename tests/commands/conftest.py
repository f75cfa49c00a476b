"""How every CLI test runs ``npformer`` in a fresh process: ``run_npformer(*args)``,
in the environment of ``cli_env`` (tests/conftest.py)."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def run_npformer(cli_env):
    """``run_npformer(*args, stdin=None, timeout=300, env=None)`` -> CompletedProcess of
    ``python -m npformer ARGS``; ``env`` adds variables to ``cli_env``."""
    def run(*args, stdin=None, timeout=300, env=None):
        return subprocess.run([sys.executable, "-m", "npformer", *map(str, args)], input=stdin,
                              capture_output=True, text=True, env={**cli_env, **(env or {})}, timeout=timeout,
                              cwd=ROOT)
    return run

