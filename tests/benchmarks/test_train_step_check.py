"""train_step.py's computation check: npformer's and PyTorch's losses from the same
initial weights agree step by step, and a planted bug in npformer's update fails it.
The end-to-end cases run the benchmark's worker processes at toy sizes (a few
seconds); those that need PyTorch skip without it."""
import json
import os
import subprocess
import sys

import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from benchmarks import train_step  # noqa: E402

TOY = ["--preset", "tiny", "--vocab", "300", "--batch", "4", "--src-len", "16", "--tgt-len", "16",
       "--threads", "1", "--steps", "1", "--json"]

# The bug the old check (last loss below the first) let through: gradients applied to
# the wrong parameters.
BUGGY_NPFORMER = [9.502, 9.458, 9.464]
TORCH = [9.500, 9.335, 9.170]


def test_compare_names_the_step_and_both_losses():
    with pytest.raises(train_step.CheckFailed, match=r"check step 1 of 3: npformer loss 9.502000, "
                                                     r"PyTorch loss 9.500000"):
        train_step.compare_check_losses(BUGGY_NPFORMER, TORCH)
    same_start = [9.500, 9.458, 9.464]
    with pytest.raises(train_step.CheckFailed, match=r"check step 2 of 3: npformer loss 9.458000, "
                                                     r"PyTorch loss 9.335000, relative difference 1.32e-02"):
        train_step.compare_check_losses(same_start, TORCH)
    close = [x * (1 + 1e-5) for x in TORCH]
    diffs = train_step.compare_check_losses(close, TORCH)
    assert len(diffs) == 3 and max(diffs) == pytest.approx(1e-5)
    with pytest.raises(train_step.CheckFailed, match="check step 3"):
        train_step.compare_check_losses(TORCH[:2] + [float("nan")], TORCH)
    with pytest.raises(train_step.CheckFailed):
        train_step.compare_check_losses(TORCH[:2], TORCH)
    # The TF32 tolerance is looser, yet still catches this bug.
    with pytest.raises(train_step.CheckFailed, match="check step 2"):
        train_step.compare_check_losses(same_start, TORCH, train_step.CHECK_RTOL_TF32)


def test_npformer_alone_must_fall_at_every_step():
    train_step.check_decreases(TORCH)
    with pytest.raises(train_step.CheckFailed, match=r"did not decrease at check step 3: 9.458000 -> 9.464000"):
        train_step.check_decreases(BUGGY_NPFORMER)
    with pytest.raises(train_step.CheckFailed, match="check step 2 is nan"):
        train_step.check_decreases([9.5, float("nan"), 9.0])


@pytest.mark.parametrize("n", [1, train_step.MAX_CHECK_STEPS + 1])
def test_check_steps_out_of_range_is_refused(n, capsys):
    with pytest.raises(SystemExit) as e:
        train_step.main(["--check-steps", str(n), "--no-torch"])
    assert e.value.code == 2 and "--check-steps must be 2 to" in capsys.readouterr().err


def _run(extra=(), env=None):
    return subprocess.run([sys.executable, os.path.join(_ROOT, "benchmarks", "train_step.py"), *TOY, *extra],
                          capture_output=True, text=True, env=env, timeout=300)


def test_without_torch_checks_npformer_alone():
    out = _run(["--no-torch"])
    assert out.returncode == 0, out.stderr[-2000:]
    check = json.loads(out.stdout.strip().splitlines()[-1])["check"]
    assert check["compared_with_torch"] is False and len(check["npformer_losses"]) == 3
    assert "torch_losses" not in check


def test_same_weights_give_the_same_losses():
    pytest.importorskip("torch")
    out = _run()
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    check = result["check"]
    assert check["compared_with_torch"] and check["rtol"] == train_step.CHECK_RTOL
    assert check["max_rel_diff"] <= 1e-5   # measured about 1e-7 at this size
    assert check["npformer_losses"] == pytest.approx(check["torch_losses"], rel=train_step.CHECK_RTOL)
    assert "ratio" in result


PLANT = '''
import sys
if "--worker" in sys.argv and "npformer" in sys.argv:   # the npformer worker only
    from npformer.train import optim
    update = optim.Adam.update

    def swapped(self, params, grads, lr, *args, **kwargs):
        g = dict(grads)   # every attention's W_q gets W_k's gradient, and back
        for k in grads:
            if k.endswith(".W_q"):
                g[k], g[k[:-1] + "k"] = grads[k[:-1] + "k"], grads[k]
        return update(self, params, g, lr, *args, **kwargs)
    optim.Adam.update = swapped
'''


def test_a_planted_bug_in_the_update_fails_the_check(tmp_path):
    pytest.importorskip("torch")
    (tmp_path / "sitecustomize.py").write_text(PLANT)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), _ROOT, os.environ.get("PYTHONPATH", "")]))
    out = _run(env=env)
    assert out.returncode == 1
    # Measured: step 1 equal (6.315072 both), step 2 npformer 6.233543 against 6.226401.
    assert "computation check failed at check step 2 of 3: npformer loss" in out.stderr
    assert "PyTorch loss" in out.stderr and not out.stdout.strip()
