"""A user's mistake on the command line: exit code 2, one line on stderr that names
the option or file, nothing on stdout, never a traceback, and no training started.
(Resume and task-setting errors: tests/commands/test_train.py; gradcheck's
--dtype: tests/commands/test_gradcheck.py.)

A bug is not a user's mistake: a ValueError planted in an op during ``train``
or ``translate`` leaves ``main`` as it is, and the command exits 1 with its
traceback. An OSError counts as the user's only on a path the user gave.
"""
import errno
import os
import subprocess
import sys

import pytest

from npformer import checkpoint
from npformer.cli import main
from npformer.data.bpe import BPETokenizer
from npformer.model.config import preset
from npformer.model.params import init_params

CFG = preset("tiny", vocab_size=12, d_model=16, d_ff=32, n_layers=1, h=2, max_len=32)
TASK = ["train", "--task", "copy", "--vocab-size", "10", "--min-len", "2", "--max-len", "5",
        "--batch-size", "4", "--no-progress"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    (d / "bad.tsv").write_text("a\tb\nc\td\nno tab here\n", encoding="utf-8")
    (d / "junk.npz").write_bytes(b"junk")
    (d / "dir.npz").mkdir()
    checkpoint.save(d / "no_tokenizer.npz", init_params(CFG), CFG)
    tok = BPETokenizer.learn(["the cat sat on the mat"] * 3, num_merges=5)  # not 12 tokens
    checkpoint.save(d / "other_vocab.npz", init_params(CFG), CFG, tokenizer=tok.to_dict())
    translator = CFG.replace(vocab_size=tok.vocab_size)  # an untrained model that can translate
    checkpoint.save(d / "translator.npz", init_params(translator), translator, tokenizer=tok.to_dict())
    (d / "pairs.tsv").write_text("the cat sat on the mat\tel gato se sento en la alfombra\n" * 30, encoding="utf-8")
    (d / "two.tsv").write_text("a\tb\nc\td\n", encoding="utf-8")
    return d


CASES = [
    # numbers out of range: refused while parsing, before any data is read
    (TASK + ["--steps", "0"], "argument --steps: expected an integer >= 1, got '0'"),
    (TASK + ["--steps", "-5"], "argument --steps: expected an integer >= 1, got '-5'"),
    (TASK + ["--steps", "1.5"], "argument --steps: expected an integer >= 1, got '1.5'"),
    (TASK + ["--minutes", "-1"], "argument --minutes: expected a finite number > 0, got '-1'"),
    (TASK + ["--minutes", "nan"], "argument --minutes: expected a finite number > 0, got 'nan'"),
    (TASK + ["--lr-factor", "nan"], "argument --lr-factor: expected a finite number > 0, got 'nan'"),
    (TASK + ["--lr-factor", "inf"], "argument --lr-factor: expected a finite number > 0, got 'inf'"),
    (TASK + ["--seed", "-1"], "argument --seed: expected an integer >= 0, got '-1'"),
    (TASK + ["--workers", "0"], "argument --workers: expected an integer >= 1, got '0'"),
    (TASK + ["--clip", "-1"], "argument --clip: expected a finite number >= 0, got '-1'"),
    (TASK + ["--eval-every", "-1"], "argument --eval-every: expected an integer >= 0, got '-1'"),
    (TASK + ["--warmup", "0"], "argument --warmup: expected an integer >= 1, got '0'"),
    (TASK + ["--p-drop", "1.5"], "config: p_drop must be in [0, 1), got 1.5"),
    (TASK + ["--preset", "huge"], "unknown preset 'huge'; expected one of base, big, small, tiny"),
    (TASK + ["--dtype", "float16"], "argument --dtype: invalid choice: 'float16'"),
    (TASK + ["--backend", "torch"], "argument --backend: invalid choice: 'torch'"),
    (["info", "--vocab-size", "0"], "argument --vocab-size: expected an integer >= 1, got '0'"),
    (["info", "--preset", "huge"], "unknown preset 'huge'"),
    (["translate", "--checkpoint", "{d}/no_tokenizer.npz", "--beam", "0", "hi"],
     "argument --beam: expected an integer >= 1, got '0'"),
    (["translate", "--checkpoint", "{d}/no_tokenizer.npz", "--max-len-a", "-0.5", "hi"],
     "argument --max-len-a: expected a finite number >= 0, got '-0.5'"),
    (["demo", "--max-len-b", "x"], "argument --max-len-b: expected an integer >= 0, got 'x'"),
    (["evaluate", "--checkpoint", "{d}/no_tokenizer.npz", "--limit", "-1"],
     "argument --limit: expected an integer >= 0, got '-1'"),
    # an option of the other use, two batch sizes, no budget: refused before any data is read
    (["train", "--vocab-size", "10", "--steps", "1"], "--vocab-size is for the synthetic tasks (--task)"),
    (["train", "--data", "{d}/bad.tsv", "--batch-size", "8", "--steps", "1"],
     "--batch-size is for the synthetic tasks (--task): translation batches by --max-tokens"),
    (["train", "--task", "copy", "--merges", "100"], "--merges is for translation"),
    (TASK + ["--max-tokens", "100"], "--batch-size and --max-tokens both size a batch; give one of them"),
    (["train", "--data", "{d}/bad.tsv"], "translation trains until --steps N or for --minutes M"),
    # files: missing, unreadable, malformed, or of another kind
    (["train", "--data", "{d}/missing.tsv", "--steps", "1", "--no-progress"], "corpus file not found: {d}/missing.tsv"),
    (["train", "--data", "{d}/bad.tsv", "--steps", "1", "--no-progress"],
     "{d}/bad.tsv line 3: expected 'source<TAB>target'"),
    (["train", "--data", "{d}", "--steps", "1", "--no-progress"], "{d}: is a directory"),
    (TASK + ["--steps", "1", "--out", "{d}/bad.tsv"], "--out: {d}/bad.tsv exists and is not a directory"),
    (TASK + ["--steps", "1", "--out", "{d}/bad.tsv/run"], "--out: cannot create {d}/bad.tsv/run (Not a directory)"),
    (["translate", "--checkpoint", "{d}/missing.npz", "hi"], "checkpoint {d}/missing.npz: no such file"),
    (["translate", "--checkpoint", "{d}/dir.npz", "hi"], "checkpoint {d}/dir.npz: is a directory"),
    (["translate", "--checkpoint", "{d}/junk.npz", "hi"], "checkpoint {d}/junk.npz: not an .npz archive"),
    (["translate", "--checkpoint", "{d}/no_tokenizer.npz", "hi"], "holds no tokenizer, so it cannot translate"),
    (["translate", "--checkpoint", "{d}/other_vocab.npz", "hi"], "but the model's vocabulary has 12"),
    (["evaluate", "--checkpoint", "{d}/missing.npz"], "checkpoint {d}/missing.npz: no such file"),
    (["plot", "{d}/no_run_here"], "run directory '{d}/no_run_here' does not exist"),
    # settings that make no model, task or schedule; data that leaves nothing to train on
    (TASK + ["--schedule", "linear", "--steps", "1"], "--schedule linear decays from a peak learning rate; give it "
                                                      "with --lr"),
    (TASK + ["--label-smoothing", "1", "--steps", "1"], "config: eps_ls must be in [0, 1), got 1.0"),
    (["train", "--data", "{d}/two.tsv", "--steps", "1", "--no-progress"],
     "{d}/two.tsv: 2 sentence pair(s); expected at least 3"),
    (["train", "--data", "{d}/pairs.tsv", "--max-len", "2", "--merges", "10", "--steps", "1", "--no-progress"],
     "training data: no sentence pair fits max_len=2 subword tokens (--max-len)"),
    (TASK + ["--steps", "1", "--resume", "--out", "{d}/no_run"], "--resume: {d}/no_run/last.npz does not exist"),
    (["info", "--vocab-size", "2"], "config: eos_id=2 is outside the vocabulary"),
    (["compare-torch", "--preset", "huge"], "argument --preset: unknown preset 'huge'"),
    (["translate", "--checkpoint", "{d}/translator.npz", " "], "no input: give sentences as arguments"),
    (["evaluate", "--checkpoint", "{d}/translator.npz", "--data", "{d}/missing.tsv"],
     "corpus file not found: {d}/missing.tsv"),
    (["evaluate", "--checkpoint", "{d}/translator.npz", "--data", "{d}/bad.tsv"],
     "{d}/bad.tsv line 3: expected 'source<TAB>target'"),
    (["gradient-flow", "--data", "{d}/missing.tsv"], "corpus file not found: {d}/missing.tsv"),
    (["average", "{d}/translator.npz", "{d}/junk.npz", "--out", "{d}/avg.npz"], "checkpoint {d}/junk.npz: not an"),
]


@pytest.mark.parametrize("argv,message", CASES, ids=[" ".join(a[-3:]) for a, _ in CASES])
def test_one_line_on_stderr_and_exit_code_2(argv, message, files, capsys):
    argv = [a.format(d=files) for a in argv]
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own errors
        code = e.code
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"npformer {argv[0]}: error: ") and message.format(d=files) in err, err


@pytest.mark.parametrize("env,message", [
    ({"NPFORMER_BACKEND": "jax"},
     "$NPFORMER_BACKEND='jax': unknown backend; expected one of numpy, cupy, cupysim (or give --backend)"),
    ({"PMI_RANK": "0", "PMI_SIZE": "1", "NPFORMER_COMM_TIMEOUT": "soon"},
     "$NPFORMER_COMM_TIMEOUT='soon': expected seconds (a positive number), 0 or none"),
])
def test_a_bad_environment_variable_is_one_line(env, message, files, monkeypatch, capsys):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["translate", "--checkpoint", f"{files}/translator.npz", "hi"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == f"npformer translate: error: {message}\n", err


# --- a bug is a bug ---------------------------------------------------------------
BUG = "operands could not be broadcast together with shapes (2,3) (3,2) [planted]"


def planted(*args, **kwargs):
    raise ValueError(BUG)


# (module, function, argv): an op the command runs, and the command
PLANTED = {
    "train": ("npformer.ops", "layernorm_backward", TASK + ["--steps", "3", "--workers", "1"]),
    "translate": ("npformer.decode.incremental", "attention_forward",
                  ["translate", "--checkpoint", "{d}/translator.npz", "--workers", "1", "the cat"]),
    "evaluate": ("npformer.decode.incremental", "attention_forward",
                 ["evaluate", "--checkpoint", "{d}/translator.npz", "--data", "{d}/pairs.tsv", "--workers", "1"]),
}


@pytest.mark.parametrize("command", sorted(PLANTED))
def test_a_value_error_in_an_op_is_a_bug_not_a_users_mistake(command, files, monkeypatch, capsys):
    """In process: main lets the planted error through, printing no one-line "error:"."""
    if command == "evaluate":
        pytest.importorskip("sacrebleu")
    module, name, argv = PLANTED[command]
    monkeypatch.setattr(f"{module}.{name}", planted)
    with pytest.raises(ValueError, match=r"\[planted\]"):
        main([a.format(d=files) for a in argv])
    assert "error:" not in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "translate"])
def test_a_planted_bug_exits_1_with_its_traceback(command, files, cli_env):
    """The command as a process: ``main`` with the op replaced, run as ``npformer`` runs it."""
    module, name, argv = PLANTED[command]
    code = (f"import sys, {module} as m\n"
            f"def planted(*a, **k):\n    raise ValueError({BUG!r})\n"
            f"m.{name} = planted\n"
            "from npformer.cli import main\n"
            f"sys.exit(main({[a.format(d=files) for a in argv]!r}))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli_env, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == "" and "Traceback (most recent call last)" in proc.stderr and "in planted" in proc.stderr
    assert proc.stderr.rstrip().splitlines()[-1] == f"ValueError: {BUG}", proc.stderr
    assert f"npformer {command}: error" not in proc.stderr


def test_debug_shows_a_users_mistake_with_its_traceback(files, monkeypatch):
    monkeypatch.setenv("NPFORMER_DEBUG", "1")
    from npformer.errors import UserError
    with pytest.raises(UserError, match="corpus file not found"):
        main(["train", "--data", f"{files}/missing.tsv", "--steps", "1", "--no-progress"])


def test_an_os_error_on_the_users_path_is_one_line(files, tmp_path, monkeypatch, capsys):
    """A full disk while saving a checkpoint in RUN_DIR: the user's (the save names its file)."""
    def full(f, **arrays):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint.np, "savez", full)
    assert main(TASK + ["--steps", "2", "--out", str(tmp_path / "run")]) == 2
    out, err = capsys.readouterr()
    assert err == (f"npformer train: error: {tmp_path / 'run' / 'best.npz'}: cannot write the checkpoint "
                   "(No space left on device)\n"), err


def test_an_os_error_on_a_file_the_program_chose_is_a_bug(files, tmp_path, monkeypatch, capsys):
    def lost(*args, **kwargs):
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), "/nonexistent/npformer/table.json")

    monkeypatch.setattr("npformer.ops.layernorm_backward", lost)
    with pytest.raises(FileNotFoundError):
        main(TASK + ["--steps", "2", "--out", str(tmp_path / "run"), "--workers", "1"])
    assert "error:" not in capsys.readouterr().err
