"""benchmarks/gpu_check.sh: without a usable GPU it stops at once, loudly, with exit 1."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from npformer.backend import cupy_available

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.sh"


@pytest.mark.skipif(cupy_available(), reason="a GPU is usable here: the script would run its checks")
@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_without_a_gpu_the_check_fails_at_once_saying_why(tmp_path):
    proc = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "GPU_CHECK_OUT": str(tmp_path)})
    assert proc.returncode == 1
    assert "gpu_check: FAILED: backend 'cupy' is not usable here" in proc.stderr
    assert "CuPy is not installed" in proc.stderr or "no GPU" in proc.stderr
    assert (tmp_path / "stages.txt").read_text() == ""  # no stage ran


def test_an_unknown_backend_is_refused_the_same_way(tmp_path):
    proc = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "GPU_CHECK_OUT": str(tmp_path), "GPU_CHECK_BACKEND": "tpu"})
    assert proc.returncode == 1 and "unknown backend 'tpu'" in proc.stderr
