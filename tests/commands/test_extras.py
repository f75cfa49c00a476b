"""With the core install only (NumPy, no extras), a command that needs an optional
dependency says which extra to install before it starts its work, and the
commands that can do without one still run.

The subprocess hides the extras' modules (a ``sitecustomize`` that sets
``sys.modules[name] = None``, which makes ``import name`` fail as if it were not
installed), so the test holds whatever this machine has installed.
"""
import time

import pytest

EXTRA_MODULES = ("sacrebleu", "tqdm", "threadpoolctl", "matplotlib")


@pytest.fixture
def core_only(tmp_path, cli_env):
    """Environment variables for ``run_npformer`` that hide every extra's modules."""
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(
        "import sys\n" + "".join(f"sys.modules[{name!r}] = None\n" for name in EXTRA_MODULES))
    return {"PYTHONPATH": f"{shim}:{cli_env['PYTHONPATH']}"}


@pytest.mark.parametrize("argv,extra", [
    (["demo", "--out", "{tmp}/demo"], "npformer[eval]"),
    (["train", "--workers", "2"], "npformer[train]"),
    (["train", "--task", "reverse", "--workers", "2", "--out", "{tmp}/run"], "npformer[train]"),
    (["evaluate", "--checkpoint", "{tmp}/last.npz"], "npformer[eval]"),
    (["plot", "{tmp}"], "npformer[plot]"),
])
def test_a_missing_extra_is_named_within_seconds_before_any_work(argv, extra, tmp_path, core_only, run_npformer):
    t0 = time.perf_counter()
    proc = run_npformer(*[a.format(tmp=tmp_path) for a in argv], env=core_only, timeout=60)
    seconds = time.perf_counter() - t0
    assert proc.returncode == 2 and proc.stdout == "", proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and f"pip install '{extra}'" in proc.stderr, proc.stderr
    assert seconds < 5, f"took {seconds:.1f} s to refuse"
    assert not (tmp_path / "demo").exists() and not (tmp_path / "run").exists()  # nothing was started


def test_training_runs_without_any_extra(tmp_path, core_only, run_npformer):
    """No tqdm: plain progress lines; no threadpoolctl: one worker; no sacreBLEU: no BLEU needed."""
    proc = run_npformer("train", "--task", "reverse", "--steps", "12", "--eval-every", "6",
                        "--out", tmp_path / "run", "--json", env=core_only, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert '"workers": 1' in proc.stdout and (tmp_path / "run" / "last.npz").is_file()
    assert "step 12/12" in proc.stderr  # the plain log line that stands in for the tqdm bar
