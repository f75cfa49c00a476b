"""``npformer train`` end to end: JSON result, checkpoints, resume, one-line errors,
and the defaults and help of its two uses (translation, synthetic tasks)."""
import json
import os

import pytest

from npformer.cli import build_parser, main
from npformer.commands.train import given_settings
from npformer.run import resolve_settings


def test_reverse_task_json_via_subprocess(tmp_path, run_npformer):
    proc = run_npformer("train", "--task", "reverse", "--steps", "20", "--preset", "tiny", "--json",
                        "--out", tmp_path / "run", timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["steps"] == 20 and result["task"] == "reverse"
    assert 0.0 <= result["exact_match"] <= 1.0 and result["heldout_size"] == 500
    assert result["final_loss"] > 0 and result["val_loss"] > 0 and result["tokens_per_s"] > 0
    assert result["checkpoint"] == str(tmp_path / "run" / "last.npz")
    assert result["workers"] >= 1 and result["dev_bleu"] is None and result["dev_chrf"] is None
    assert (tmp_path / "run" / "last.npz").is_file() and (tmp_path / "run" / "best.npz").is_file()


def run_cli(capsys, *argv):
    code = main(["train", "--task", "copy", "--vocab-size", "10", "--min-len", "2", "--max-len", "5",
                 "--batch-size", "8", "--warmup", "10", "--no-progress", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_resume_continues_the_run(tmp_path, capsys):
    run = str(tmp_path / "run")
    code, out, _ = run_cli(capsys, "--steps", "6", "--eval-every", "3", "--out", run, "--json")
    assert code == 0 and json.loads(out.splitlines()[-1])["steps"] == 6
    code, out, err = run_cli(capsys, "--steps", "9", "--out", run, "--resume", "--json")
    assert code == 0, err
    result = json.loads(out.splitlines()[-1])
    assert result["steps"] == 9 and result["checkpoint"].endswith("last.npz")

    from npformer.train.state import load_state
    state, ck = load_state(os.path.join(run, "last.npz"))
    assert ck.step == 9 and ck.extra["settings"]["vocab_size"] == 10
    assert [r["step"] for r in state.history if r["kind"] == "eval"] == [3, 6, 9]


@pytest.mark.parametrize("argv,message", [
    (["--resume", "--steps", "2"], "--resume needs --out"),
    (["--steps", "2", "--vocab-size", "4"], "vocab_size must exceed 4"),
    (["--steps", "2", "--min-len", "9"], "min_len <= max_len"),
])
def test_user_errors_are_one_line(argv, message, capsys):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err


def test_resume_refuses_different_settings(tmp_path, capsys):
    run = str(tmp_path / "run")
    assert run_cli(capsys, "--steps", "2", "--out", run)[0] == 0
    code, _, err = run_cli(capsys, "--steps", "4", "--out", run, "--resume", "--lr-factor", "2")
    assert code == 2 and "--lr-factor 2.0 (the run has 0.5)" in err
    code, _, err = run_cli(capsys, "--steps", "4", "--out", run)
    assert code == 2 and "pass --resume" in err


@pytest.mark.parametrize("argv,preset,max_len", [
    (["--data", "my.tsv"], "small", 100),    # translation of the user's corpus: translation's defaults
    ([], "small", 100),                      # the bundled corpus
    (["--task", "reverse"], "tiny", 12),
])
def test_each_use_gets_its_own_defaults(argv, preset, max_len):
    args = build_parser().parse_args(["train", *argv])
    settings = resolve_settings(given_settings(args), None, args.task)
    assert (settings["preset"], settings["max_len"]) == (preset, max_len)


def test_help_groups_the_options_by_use(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    text = text[text.index("options:"):]  # the groups, after the usage lines
    tasks, recipe = text.index("synthetic tasks only (--task):"), text.index("the recipe: derived for translation")
    assert tasks < text.index("--vocab-size") < text.index("--min-len") < recipe < text.index("--merges")
    flat = " ".join(text.split())
    assert "(default small / tiny)" in flat
    assert "warmup steps of the schedule (default: derived from the corpus and budget; task: 300)" in flat


def test_layers_and_d_ff_override_the_preset_and_stay_with_the_run(tmp_path, capsys):
    run = str(tmp_path / "run")
    code, _, err = run_cli(capsys, "--steps", "2", "--preset", "tiny", "--layers", "1", "--d-ff", "48", "--out", run)
    assert code == 0, err
    from npformer.train.state import load_state
    state, ck = load_state(os.path.join(run, "last.npz"))
    assert (ck.config.n_layers, ck.config.d_ff, ck.config.d_model) == (1, 48, 64)
    assert state.params["encoder.0.ffn.W_1"].shape == (64, 48) and "encoder.1.ffn.W_1" not in state.params
    code, _, err = run_cli(capsys, "--steps", "4", "--out", run, "--resume", "--layers", "2")
    assert code == 2 and "--layers 2 (the run has 1)" in err
