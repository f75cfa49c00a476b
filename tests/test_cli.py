"""A user's mistake on the command line: exit code 2, one line on stderr that names
the option or file, nothing on stdout, never a traceback, and no training started.
(Resume and task-setting errors: tests/commands/test_train.py; gradcheck's
--dtype: tests/commands/test_gradcheck.py.)
"""
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
