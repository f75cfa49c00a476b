"""Training on two MPI ranks, end to end, under ``mpiexec -n 2``: the same losses
as one process, one JSON line from rank 0, a killed or failing rank stopping
the other within 60 s with a message naming it, ranks that differ refused.
Skipped where MPI is missing, except in CI (see conftest.py)."""
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from npformer import checkpoint
from npformer.train.state import load_state

HERE = Path(__file__).resolve().parent
NPFORMER = [sys.executable, "-m", "npformer"]
REVERSE = ["train", "--task", "reverse", "--p-drop", "0", "--workers", "1"]


def hydra(mpiexec) -> bool:
    return "HYDRA" in subprocess.run([mpiexec, "--version"], capture_output=True, text=True).stdout


def losses(path):
    state, _ = load_state(path)
    return [r["loss"] for r in state.history if r["kind"] == "train"]


def test_collectives_and_training_on_two_ranks(mpiexec, run):
    proc = run([mpiexec, "-n", "2", sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-o", "addopts=",
                "-q", str(HERE / "mpi_collectives.py")])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("6 passed") == 2, proc.stdout


def test_two_ranks_print_one_json_line_and_train_like_one_process(mpiexec, tmp_path, run):
    steps = ["--steps", "30", "--log-every", "1", "--json", "--no-progress"]
    two = run([mpiexec, "-n", "2", *NPFORMER, *REVERSE, *steps, "--out", str(tmp_path / "two")])
    assert two.returncode == 0, two.stderr
    lines = two.stdout.strip().splitlines()
    assert len(lines) == 1, two.stdout  # rank 0 alone prints
    result = json.loads(lines[0])
    assert result["ranks"] == 2 and result["workers"] == 1 and result["steps"] == 30
    one = run([*NPFORMER, *REVERSE, *steps, "--out", str(tmp_path / "one")])
    assert one.returncode == 0, one.stderr
    assert json.loads(one.stdout.splitlines()[-1])["ranks"] == 1
    a, b = losses(tmp_path / "two" / "last.npz"), losses(tmp_path / "one" / "last.npz")
    assert len(a) == len(b) == 30
    np.testing.assert_allclose(a, b, rtol=2e-6)  # float32 rounding: only the summation order differs


class LongRun:
    """An endless two-rank run in the background; its output (stdout and stderr)
    gathered by a thread, through a pipe."""

    def __init__(self, mpiexec, env, run_dir, *launcher_options):
        self.proc = subprocess.Popen([mpiexec, *launcher_options, "-n", "2", *NPFORMER, *REVERSE, "--steps",
                                      "100000", "--eval-every", "2", "--out", str(run_dir)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        self.chunks = []
        self.reader = threading.Thread(target=lambda: self.chunks.extend(iter(lambda: self.proc.stdout.read1(4096),
                                                                              b"")))
        self.reader.start()

    @property
    def output(self) -> str:
        return b"".join(self.chunks).decode(errors="replace")

    def wait_for(self, condition, seconds):
        deadline = time.monotonic() + seconds
        while not condition():
            assert self.proc.poll() is None, "the run ended before it was interrupted:\n" + self.output
            assert time.monotonic() < deadline, "timed out waiting for the run:\n" + self.output
            time.sleep(0.2)

    def rank_pid(self, rank):
        found = re.search(rf"rank {rank} pid (\d+)", self.output)
        return int(found.group(1)) if found else None

    def close(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.reader.join()


@pytest.mark.parametrize("cleanup", ["launcher", "watchdog"])
def test_a_killed_rank_stops_the_other_within_60_s(mpiexec, tmp_path, cleanup, mpi_env):
    """The launcher stops the other rank (MPICH names the killed pid; rank 0's
    banner maps it to rank 1); without its clean-up, the watchdog does, unless
    MPICH ends the job first."""
    options = []
    if cleanup == "watchdog":
        if not hydra(mpiexec):
            pytest.skip("-disable-auto-cleanup is an MPICH (Hydra) option")
        options = ["-disable-auto-cleanup"]
    run_dir = tmp_path / "run"
    job = LongRun(mpiexec, mpi_env, run_dir, *options)
    try:
        job.wait_for(lambda: (run_dir / "last.npz").exists() and job.rank_pid(1), 240)
        pid = job.rank_pid(1)
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        rc = job.proc.wait(timeout=90)
        assert time.monotonic() - killed < 60
    finally:
        job.close()
    output = job.output
    assert rc != 0
    if cleanup == "watchdog":
        # The watchdog names the rank when it sees the death first. When rank 0 is blocked
        # in a collective with the dead rank, MPICH's shared-memory transport ends the job
        # itself, before any user code can speak; then the banner names the killed pid's rank.
        watchdog = f"rank 0 of 2: stopping every rank: rank 1 (pid {pid}) on this machine exited or was killed"
        assert watchdog in output or ("YOUR APPLICATION TERMINATED" in output and f"rank 1 pid {pid}" in output), \
            output
    else:
        assert f"rank 1 pid {pid}" in output and str(pid) in output.split(f"rank 1 pid {pid}", 1)[1]
    assert checkpoint.load(run_dir / "last.npz").step >= 2  # the last good checkpoint loads


INJECT = """
import sys
from npformer.train import trainer
real_step = trainer.train_step
def failing_step(state, *args, **kwargs):
    if state.step == 5:
        raise RuntimeError("injected fault at step 6")
    return real_step(state, *args, **kwargs)
trainer.train_step = failing_step
from npformer.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_rank_that_raises_stops_every_rank_naming_itself_and_the_cause(mpiexec, tmp_path, run):
    args = [*REVERSE, "--steps", "100000", "--eval-every", "2", "--no-progress", "--out", str(tmp_path / "run")]
    start = time.monotonic()
    proc = run([mpiexec, "-n", "1", *NPFORMER, *args, ":", "-n", "1", sys.executable, "-c", INJECT, *args],
               timeout=300)
    assert proc.returncode != 0 and time.monotonic() - start < 120
    assert ("npformer train: rank 1 of 2: error: RuntimeError: injected fault at step 6; stopping every rank"
            in proc.stderr), proc.stderr
    assert checkpoint.load(tmp_path / "run" / "last.npz").step == 4


def test_ranks_that_differ_are_refused_at_start_up(mpiexec, tmp_path, run):
    args = [*REVERSE, "--steps", "5", "--no-progress", "--out", str(tmp_path / "run")]
    proc = run([mpiexec, "-n", "1", *NPFORMER, *args, ":", "-n", "1", *NPFORMER, *args, "--seed", "1"])
    assert proc.returncode == 2
    assert "rank 1 has settings.seed = 1, rank 0 has 0" in proc.stderr and "refused" in proc.stderr
    assert proc.stderr.count("refused") == 1  # said once, by rank 0
    assert not (tmp_path / "run" / "last.npz").exists()
    # The same command on different data (a relative path, two directories): the vocabularies differ.
    for name, text in [("a", "the cat sat\tel gato\n" * 30), ("b", "a dog ran\tun perro\n" * 30)]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "pairs.tsv").write_text(text + "one more\tuno mas\n" * 10)
    corpus = ["train", "--data", "pairs.tsv", "--merges", "20", "--preset", "tiny", "--steps", "2",
              "--no-progress", "--workers", "1"]
    proc = run([mpiexec, "-n", "1", "-wdir", str(tmp_path / "a"), *NPFORMER, *corpus, ":",
                "-n", "1", "-wdir", str(tmp_path / "b"), *NPFORMER, *corpus])
    assert proc.returncode == 2, proc.stderr
    assert "rank 1 has vocabulary" in proc.stderr and "refused" in proc.stderr


def test_resume_on_another_number_of_ranks_says_so_and_continues(mpiexec, tmp_path, run):
    steps = ["--log-every", "1", "--no-progress", "--json"]
    first = run([mpiexec, "-n", "2", *NPFORMER, *REVERSE, "--steps", "4", *steps, "--out", str(tmp_path / "run")])
    assert first.returncode == 0, first.stderr
    again = run([*NPFORMER, *REVERSE, "--steps", "8", *steps, "--out", str(tmp_path / "run"), "--resume"])
    assert again.returncode == 0, again.stderr
    assert "resuming a run trained on 2 rank(s) x 1 thread(s) on 1 x 1" in again.stderr
    assert json.loads(again.stdout.splitlines()[-1])["steps"] == 8
    whole = run([*NPFORMER, *REVERSE, "--steps", "8", *steps, "--out", str(tmp_path / "whole")])
    assert whole.returncode == 0, whole.stderr
    np.testing.assert_allclose(losses(tmp_path / "run" / "last.npz"), losses(tmp_path / "whole" / "last.npz"),
                               rtol=2e-6)
