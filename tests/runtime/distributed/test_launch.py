"""Finding this process's place from the launcher's variables; a plain run
never imports MPI; a launched run without mpi4py says what to install."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from npformer.errors import UserError
from npformer.runtime.distributed.launch import ranks_from_env, seconds_from_env
from npformer.runtime.distributed.mpi import Watchdog, process_alive

ROOT = Path(__file__).resolve().parents[2]

LAUNCHER_PREFIXES = ("PMI_", "OMPI_", "MV2_", "PMIX_")


def plain_env(**more):
    env = {k: v for k, v in os.environ.items() if not k.startswith(LAUNCHER_PREFIXES)}
    return {**env, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), **more}


@pytest.mark.parametrize("env, expected", [
    ({}, None),
    ({"PMI_RANK": "1", "PMI_SIZE": "4"}, (1, 4)),
    ({"OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "2"}, (0, 2)),
    ({"MV2_COMM_WORLD_RANK": "3", "MV2_COMM_WORLD_SIZE": "8"}, (3, 8)),
    ({"PMIX_RANK": "2"}, (2, None)),
])
def test_rank_and_size_come_from_the_launcher(env, expected):
    assert ranks_from_env(env) == expected


def test_garbled_launcher_variables_are_refused():
    with pytest.raises(RuntimeError, match="PMI_RANK='x'.*expected integers"):
        ranks_from_env({"PMI_RANK": "x", "PMI_SIZE": "2"})


def test_timeouts_from_the_environment(monkeypatch):
    monkeypatch.delenv("NPFORMER_COMM_TIMEOUT", raising=False)
    assert seconds_from_env("NPFORMER_COMM_TIMEOUT", 120.0) == 120.0
    for text, value in [("30", 30.0), ("0.5", 0.5), ("0", None), ("none", None)]:
        monkeypatch.setenv("NPFORMER_COMM_TIMEOUT", text)
        assert seconds_from_env("NPFORMER_COMM_TIMEOUT", 120.0) == value
    for bad in ("-1", "soon", "nan"):
        monkeypatch.setenv("NPFORMER_COMM_TIMEOUT", bad)
        with pytest.raises(UserError, match="NPFORMER_COMM_TIMEOUT"):
            seconds_from_env("NPFORMER_COMM_TIMEOUT", 120.0)


def test_a_plain_run_never_imports_mpi():
    code = ("import sys; from npformer.cli import main; "
            "rc = main(['train', '--task', 'copy', '--steps', '2', '--vocab-size', '8', '--max-len', '4', "
            "'--batch-size', '4', '--no-progress', '--workers', '1']); "
            "assert rc == 0 and 'mpi4py' not in sys.modules, sorted(m for m in sys.modules if 'mpi' in m)")
    proc = subprocess.run([sys.executable, "-c", code], env=plain_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr


def test_a_launched_rank_without_mpi4py_says_what_to_install():
    code = ("import sys; sys.modules['mpi4py'] = None; from npformer.cli import main; "
            "sys.exit(main(['train', '--task', 'copy', '--steps', '2']))")
    proc = subprocess.run([sys.executable, "-c", code], env=plain_env(PMI_RANK="0", PMI_SIZE="2"),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "started as rank 0 by an MPI launcher, but mpi4py cannot be imported" in proc.stderr
    assert "pip install 'npformer[mpi]'" in proc.stderr


def test_watchdog_reports_a_collective_past_its_deadline_and_a_peer_gone():
    reasons = []
    dog = Watchdog(reasons.append, poll_s=0.01)
    try:
        with dog.waiting("step 3's gradient all-reduce", 0.05):
            assert dog.problem() is None
            import time
            time.sleep(0.3)
        assert "step 3's gradient all-reduce waited 0.05 s" in reasons[0]
    finally:
        dog.disarm()
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not process_alive(child.pid) and process_alive(os.getpid())
    dog = Watchdog(reasons.append, poll_s=60)
    dog.peers = {1: child.pid}
    with dog.waiting("the end-of-run barrier", None):
        assert dog.problem() == (f"rank 1 (pid {child.pid}) on this machine exited or was killed while this "
                                 "rank waited in the end-of-run barrier")
    dog.disarm()
