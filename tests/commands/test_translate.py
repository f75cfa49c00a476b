"""End to end through the CLI, in fresh processes: train on a TSV, translate,
evaluate, plot; and the demo on the bundled corpus with a tiny budget."""
import gzip
import json
import os

import pytest

from npformer.backend import backend_of
from npformer.data.corpus import DEFAULT_CORPUS


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, run_npformer):
    """A tiny model trained for a few steps on 400 pairs of a user TSV (not the default corpus)."""
    d = tmp_path_factory.mktemp("run")
    with gzip.open(DEFAULT_CORPUS, "rt", encoding="utf-8") as f:
        lines = [next(f) for _ in range(400)]
    tsv = d / "corpus.tsv"
    tsv.write_text("".join(lines), encoding="utf-8")
    out = run_npformer("train", "--data", str(tsv), "--preset", "tiny", "--merges", "200", "--steps", "6",
                   "--eval-every", "3", "--out", str(d / "run"), "--json", "--no-progress")
    assert out.returncode == 0, out.stderr
    result = last_json(out.stdout)
    assert result["task"] == "translate" and result["steps"] == 6
    assert result["checkpoint"] == str(d / "run" / "last.npz")
    assert result["dev_bleu"] is not None and result["val_loss"] > 0
    return d


def test_translate_after_a_fresh_start_from_arguments_and_stdin(run_dir, run_npformer):
    ckpt = str(run_dir / "run" / "last.npz")
    out = run_npformer("translate", "--checkpoint", ckpt, "--beam", "2", "In the beginning.", "God said.")
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.strip("\n").split("\n")) == 2
    out = run_npformer("translate", "--checkpoint", ckpt, "--json", stdin="The earth was void.\nLight.\n")
    assert out.returncode == 0, out.stderr
    rows = last_json(out.stdout)["translations"]
    assert [r["source"] for r in rows] == ["The earth was void.", "Light."]
    assert all(isinstance(r["translation"], str) for r in rows)


def test_translations_are_the_same_with_worker_threads(run_dir):
    """Batches decoded on several threads come back in order, each as decoded alone."""
    from npformer.runtime.workers import Workers, blas_threads_controllable
    from npformer.translation import Translator, translate
    if not blas_threads_controllable():
        pytest.skip("threadpoolctl is not installed")
    model = Translator.from_checkpoint(str(run_dir / "run" / "last.npz"))
    sources = [line.split("\t")[0] for line in (run_dir / "corpus.tsv").read_text("utf-8").splitlines()[:40]]
    workers = Workers(2)
    try:
        assert translate(model, sources, beam_size=2, batch_size=6, workers=workers) == \
            translate(model, sources, beam_size=2, batch_size=6)
    finally:
        workers.close()


def test_translate_length_rule_bounds_every_output(run_dir, monkeypatch):
    """Each sentence's decoder gets floor(a * its source tokens) + b as its limit, and the
    outputs keep to it; bad rules are refused by name."""
    import npformer.translation as translation
    model = translation.Translator.from_checkpoint(str(run_dir / "run" / "last.npz"))
    sources = [line.split("\t")[0] for line in (run_dir / "corpus.tsv").read_text("utf-8").splitlines()[:12]]
    assert translation.output_length_rule([10, 3, 0], 1.2, 5, 14) == [14, 8, 5]
    assert translation.output_length_rule([4], 0.0, 0, 14) == [1]
    seen = {}

    def spy(real):
        def decode(params, cfg, src, max_len=None, **kw):
            out = real(params, cfg, src, max_len=max_len, **kw)
            for row, limit, o in zip(backend_of(src).to_host(src), max_len, out):
                seen[tuple(int(t) for t in row if t != cfg.pad_id)] = (limit, len(o))
            return out
        return decode
    monkeypatch.setattr(translation, "greedy_decode", spy(translation.greedy_decode))
    monkeypatch.setattr(translation, "beam_search", spy(translation.beam_search))
    for beam in (1, 3):
        for a, b in ((0.5, 0), (1.2, 5)):
            seen.clear()
            translation.translate(model, sources, beam_size=beam, max_len_a=a, max_len_b=b)
            assert len(seen) == len(set(sources))
            for ids, (limit, n_out) in seen.items():
                assert limit == max(1, min(int(a * len(ids)) + b, model.cfg.max_len)) and n_out <= limit
    for bad in (dict(max_len_a=-1.0), dict(max_len_a=float("nan")), dict(max_len_b=-2), dict(max_len_b=1.5)):
        with pytest.raises(ValueError, match="max_len_a, max_len_b"):
            translation.translate(model, sources[:1], **bad)


@pytest.mark.parametrize("command", ["translate", "evaluate", "demo"])
def test_decoding_defaults_are_loop_free_and_the_paper_is_one_flag_away(command):
    """Every decoding command starts from translation.DECODING (the n-gram ban on);
    --paper-decoding starts from the paper's §6.1 settings; an explicit option wins over both."""
    from npformer.cli import build_parser
    from npformer.commands.options import decoding_settings
    from npformer.translation import DECODING, PAPER_DECODING
    base = [command] + (["--checkpoint", "x.npz"] if command != "demo" else [])
    parse = build_parser().parse_args
    assert decoding_settings(parse(base)) == DECODING and DECODING["no_repeat_ngram"] == 4
    assert decoding_settings(parse(base + ["--paper-decoding"])) == PAPER_DECODING == dict(
        beam_size=4, alpha=0.6, max_len_a=1.0, max_len_b=50, no_repeat_ngram=0)
    assert decoding_settings(parse(base + ["--paper-decoding", "--beam", "2", "--no-repeat-ngram", "3"])) == \
        {**PAPER_DECODING, "beam_size": 2, "no_repeat_ngram": 3}
    assert decoding_settings(parse(base + ["--alpha", "0"])) == {**DECODING, "alpha": 0.0}


def test_default_translations_repeat_no_run_of_4_tokens_where_the_papers_do(run_dir):
    """A 6-step model loops; decoded by default no output repeats a 4-token run."""
    from npformer.data.batching import pad_sequences
    from npformer.decode.beam import beam_search
    from npformer.translation import PAPER_DECODING, Translator

    model = Translator.from_checkpoint(str(run_dir / "run" / "last.npz"))
    sources = [line.split("\t")[0] for line in (run_dir / "corpus.tsv").read_text("utf-8").splitlines()[:8]]
    src = [model.tokenizer.encode(s) for s in sources]

    def repeats(ids):
        grams = [tuple(ids[i:i + 4]) for i in range(len(ids) - 3)]
        return len(grams) != len(set(grams))

    def decoded(**kw):
        batch = pad_sequences(src, model.cfg.pad_id)
        return beam_search(model.params, model.cfg, batch, beam_size=4, max_len=40, **kw)
    assert any(repeats(o) for o in decoded(alpha=PAPER_DECODING["alpha"])), "the paper's decoding should loop here"
    assert not any(repeats(o) for o in decoded(alpha=1.0, no_repeat_ngram=4))


def test_evaluate_reports_sacrebleu_bleu_and_chrf_on_another_corpus(run_dir, run_npformer):
    pytest.importorskip("sacrebleu")
    out = run_npformer("evaluate", "--checkpoint", str(run_dir / "run" / "last.npz"),
                   "--data", str(run_dir / "corpus.tsv"), "--beam", "1", "--json")
    assert out.returncode == 0, out.stderr
    result = last_json(out.stdout)
    assert {"bleu", "chrf", "bleu_signature"} <= set(result)
    assert result["n_sentences"] == 20  # 5% of 400 pairs: the small-corpus test split
    assert "nrefs:1" in result["bleu_signature"]


def test_resume_continues_a_translation_run(run_dir, run_npformer):
    out = run_npformer("train", "--out", str(run_dir / "run"), "--resume", "--steps", "8", "--json", "--no-progress")
    assert out.returncode == 0, out.stderr
    assert last_json(out.stdout)["steps"] == 8


def test_plot_writes_pngs(run_dir, run_npformer):
    pytest.importorskip("matplotlib")
    out = run_npformer("plot", str(run_dir / "run"), "--sentence", "God created the earth.", "--json")
    assert out.returncode == 0, out.stderr
    files = last_json(out.stdout)["files"]
    names = sorted(os.path.basename(f) for f in files)
    assert names == ["attention_cross.png", "attention_decoder_self.png", "attention_encoder.png",
                     "curves.png", "positional.png"]
    for f in files:
        with open(f, "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"


def test_translate_with_a_missing_checkpoint_is_one_line_exit_2(tmp_path, run_npformer):
    out = run_npformer("translate", "--checkpoint", str(tmp_path / "nope.npz"), "hello")
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "nope.npz" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("backend, beam", [("numpy", "1"), ("cupysim", "2")])
def test_demo_runs_within_a_tiny_budget(tmp_path, run_npformer, backend, beam):
    """The main job end to end: on NumPy, and on cupysim, the GPU code paths under CuPy's rules."""
    pytest.importorskip("sacrebleu")
    out = run_npformer("demo", "--minutes", "0.6", "--eval-minutes", "0.25", "--eval-sentences", "4", "--beam", beam,
                       "--show", "1", "--out", str(tmp_path / "demo"), "--json", "--no-progress",
                       "--backend", backend)
    assert out.returncode == 0, out.stderr
    result = last_json(out.stdout)
    assert {"bleu", "chrf", "steps", "minutes", "checkpoint", "workers", "tokens_per_s"} <= set(result)
    assert result["steps"] >= 1 and result["test_sentences"] == 4 and result["workers"] >= 1
    assert os.path.exists(result["checkpoint"])


def test_translate_prints_one_line_per_sentence_whatever_the_model_emits(monkeypatch, capsys):
    """A young model's output may hold line breaks (\\n, \\v, \\f, U+2028): each sentence
    still gets exactly one line of stdout."""
    import npformer.translation as translation
    from npformer.cli import main
    monkeypatch.setattr(translation.Translator, "from_checkpoint", classmethod(lambda cls, *a, **k: None))
    monkeypatch.setattr(translation, "translate", lambda model, sentences, **kw: ["a\nb\x0bc", "d\u2028e\x0cf"])
    assert main(["translate", "--checkpoint", "x.npz", "--workers", "1", "one", "two"]) == 0
    assert capsys.readouterr().out.splitlines() == ["a b c", "d e f"]
