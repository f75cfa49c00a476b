"""A process killed (SIGKILL) in the middle of a checkpoint save loses nothing:
the previous checkpoint stays loadable, and the killed save's temporary file is
cleaned up by the next save. With real processes, at random moments.

(Failures inside a save that Python sees, truncated and corrupted files, and
refusing pickle are tested in tests/test_checkpoint.py.)
"""
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from npformer import checkpoint
from npformer.model.config import TransformerConfig
from npformer.model.params import init_params

ROOT = Path(__file__).resolve().parents[1]
CFG = TransformerConfig(vocab_size=2000, d_model=64, h=2, d_ff=128, n_layers=1, max_len=16)

# Saves versions first, first + 1, ... of a model whose every entry equals its
# version, printing each version once it is saved. Its writes go out in 64 KiB
# pieces with a pause after each, so that a kill usually lands mid-write.
CHILD = """
import sys, time
import numpy as np
from npformer import checkpoint
from npformer.model.config import TransformerConfig
from npformer.model.params import param_shapes

path, first = sys.argv[1], int(sys.argv[2])
cfg = TransformerConfig(**{cfg})
real_savez = np.savez


class SlowFile:
    def __init__(self, f):
        self.f = f

    def write(self, data):
        data = memoryview(data).cast("B")
        for i in range(0, len(data), 1 << 16):
            self.f.write(data[i:i + (1 << 16)])
            time.sleep(0.001)
        return len(data)

    def __getattr__(self, name):
        return getattr(self.f, name)


checkpoint.np.savez = lambda f, **arrays: real_savez(SlowFile(f), **arrays)
for version in range(first, first + 10**6):
    params = {{k: np.full(s, version, dtype=np.float32) for k, s in param_shapes(cfg).items()}}
    checkpoint.save(path, params, cfg, step=version)
    print(version, flush=True)
"""


def temporaries(directory):
    return sorted(n for n in os.listdir(directory) if n.endswith(".tmp"))


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL is POSIX")
def test_sigkill_in_the_middle_of_a_save_leaves_the_previous_checkpoint(tmp_path):
    child = tmp_path / "child.py"
    child.write_text(CHILD.format(cfg=CFG.to_dict()))
    run = tmp_path / "run"
    path = run / "last.npz"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    rng = random.Random(0)
    version, kills_mid_write = 0, 0
    for _ in range(5):
        proc = subprocess.Popen([sys.executable, str(child), str(path), str(version)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        watchdog = threading.Timer(60, proc.kill)  # never hang the test suite
        watchdog.start()
        try:
            first = proc.stdout.readline()  # one save done: the child is in its loop
            assert first.strip() == str(version), proc.stderr.read()
            time.sleep(rng.uniform(0.0, 0.8))  # a save takes ~0.3 s
            proc.send_signal(signal.SIGKILL)
            rest, _ = proc.communicate()
        finally:
            watchdog.cancel()
        assert proc.returncode == -signal.SIGKILL
        printed = [int(first)] + [int(v) for v in rest.split()]
        kills_mid_write += bool(temporaries(run))

        ck = checkpoint.load(path)  # stray temporary files or not
        # the last version reported, or the one in flight if its rename beat its print
        assert ck.step in (printed[-1], printed[-1] + 1)
        for name, a in ck.params.items():
            assert (a == ck.step).all(), f"{name} mixes versions"
        version = ck.step + 1
    assert kills_mid_write >= 1, "no kill landed in the middle of a save; the test proved nothing"

    # the next save deletes the temporary files of the killed processes
    checkpoint.save(path, init_params(CFG), CFG, step=version)
    assert os.listdir(run) == ["last.npz"]
    assert checkpoint.load(path).step == version


@pytest.mark.skipif(os.name != "posix", reason="process ids are checked with os.kill(pid, 0)")
def test_only_temporaries_of_dead_processes_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".last.npz.{dead.pid}.0a1b2c3d.tmp"
    live = tmp_path / f".last.npz.{os.getpid()}.0a1b2c3d.tmp"  # a save in progress
    other = tmp_path / f".best.npz.{dead.pid}.0a1b2c3d.tmp"  # another checkpoint's
    for p in (stale, live, other):
        p.write_bytes(b"half a checkpoint")
    checkpoint.save(tmp_path / "last.npz", init_params(CFG), CFG)
    assert not stale.exists() and live.exists() and other.exists()
    np.testing.assert_array_equal(checkpoint.load(tmp_path / "last.npz").params["embed"],
                                  init_params(CFG)["embed"])
