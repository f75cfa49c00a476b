"""Every command that offers ``--backend`` runs on cupysim, CuPy's rules on the CPU:
a device-only fault (an array left on the device, a host-only call) shows up here,
not first on a GPU. One tiny translation run is trained on cupysim; the commands
that read a checkpoint then read that one."""
import gzip
import json
from pathlib import Path

import pytest

from npformer.cli import build_parser
from npformer.data.corpus import DEFAULT_CORPUS

TESTS = Path(__file__).resolve().parents[1]
# Commands whose cupysim run is in another test file, which this test checks exists
ELSEWHERE = {"demo": (TESTS / "commands" / "test_translate.py", "test_demo_runs_within_a_tiny_budget"),
             "gradient-flow": (TESTS / "test_gradient_flow.py", "test_gradient_flow_command")}
HERE = ("train", "translate", "evaluate", "plot", "gradcheck")


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def commands_with_backend() -> set:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return {name for name, p in sub.choices.items() if any("--backend" in a.option_strings for a in p._actions)}


def test_every_backend_command_has_a_cupysim_run():
    assert commands_with_backend() == set(HERE) | set(ELSEWHERE)
    for name, (path, test) in ELSEWHERE.items():
        source = path.read_text(encoding="utf-8")
        assert f"def {test}" in source and "cupysim" in source, f"{name}: {path.name}::{test} runs no cupysim case"


@pytest.fixture(scope="module")
def sim_run(tmp_path_factory, run_npformer):
    d = tmp_path_factory.mktemp("cupysim")
    with gzip.open(DEFAULT_CORPUS, "rt", encoding="utf-8") as f:
        lines = [next(f) for _ in range(300)]
    (d / "corpus.tsv").write_text("".join(lines), encoding="utf-8")
    out = run_npformer("train", "--data", d / "corpus.tsv", "--preset", "tiny", "--merges", "100", "--steps", "3",
                       "--eval-every", "3", "--log-every", "1", "--out", d / "run", "--json", "--no-progress",
                       "--backend", "cupysim")
    assert out.returncode == 0, out.stderr
    assert last_json(out.stdout)["steps"] == 3
    return d


def test_train_resumes_on_cupysim(sim_run, run_npformer):
    out = run_npformer("train", "--out", sim_run / "run", "--resume", "--steps", "4", "--json", "--no-progress",
                       "--backend", "cupysim")
    assert out.returncode == 0, out.stderr
    assert last_json(out.stdout)["steps"] == 4


def test_translate_on_cupysim(sim_run, run_npformer):
    out = run_npformer("translate", "--checkpoint", sim_run / "run" / "best.npz", "--beam", "2", "--backend",
                       "cupysim", "In the beginning.", "And God said.")
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.strip().splitlines()) == 2


def test_evaluate_on_cupysim(sim_run, run_npformer):
    pytest.importorskip("sacrebleu")
    out = run_npformer("evaluate", "--checkpoint", sim_run / "run" / "best.npz", "--data", sim_run / "corpus.tsv",
                       "--beam", "1", "--json", "--backend", "cupysim")
    assert out.returncode == 0, out.stderr
    assert {"bleu", "chrf"} <= set(last_json(out.stdout))


def test_plot_on_cupysim(sim_run, run_npformer, tmp_path):
    pytest.importorskip("matplotlib")
    out = run_npformer("plot", sim_run / "run", "--out", tmp_path, "--sentence", "God said.", "--json",
                       "--backend", "cupysim")
    assert out.returncode == 0, out.stderr
    assert all(Path(f).stat().st_size > 0 for f in last_json(out.stdout)["files"])


def test_gradcheck_on_cupysim(run_npformer):
    out = run_npformer("gradcheck", "--backend", "cupysim", "--quick", "--json")
    assert out.returncode == 0, out.stderr
    assert last_json(out.stdout)["passed"]
