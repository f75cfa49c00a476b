"""best.npz is the best by dev BLEU, measured on a fixed dev sample sized to 5% of the
run's time; ``evaluate`` and ``translate`` given the run directory take it and say so."""
import gzip
import json
from types import SimpleNamespace

import pytest

from npformer.cli import main
from npformer.data.corpus import DEFAULT_CORPUS
from npformer.run import DEV_BLEU_MIN, DevEvaluation
from npformer.train.state import load_state


@pytest.fixture
def corpus(tmp_path):
    with gzip.open(DEFAULT_CORPUS, "rt", encoding="utf-8") as f:
        lines = [next(f) for _ in range(400)]
    tsv = tmp_path / "corpus.tsv"
    tsv.write_text("".join(lines), encoding="utf-8")
    return tsv


def test_best_npz_is_chosen_by_dev_bleu_where_the_dev_loss_disagrees(corpus, tmp_path, monkeypatch, capsys):
    """The evaluations are scripted: the dev loss falls at every one, dev BLEU peaks at
    step 4. best.npz is step 4's; both figures stay in the history; evaluate and
    translate given the run directory use best.npz and name it."""
    pytest.importorskip("sacrebleu")
    scripted = {2: (4.0, 3.0), 4: (3.5, 11.0), 6: (3.0, 7.0), 8: (2.5, 6.0)}  # step: (dev loss, dev BLEU)
    in_order = iter(sorted(scripted.items()))

    def evaluation(self, params, seconds=None):
        _, (loss, bleu) = next(in_order)
        return {"val_loss": loss, "dev_bleu": bleu, "dev_chrf": 2 * bleu, "bleu_sentences": 60}

    monkeypatch.setattr(DevEvaluation, "__call__", evaluation)
    out = tmp_path / "run"
    code = main(["train", "--data", str(corpus), "--preset", "tiny", "--merges", "200", "--steps", "8",
                 "--eval-every", "2", "--workers", "1", "--out", str(out), "--no-progress", "--json"])
    text = capsys.readouterr()
    assert code == 0, text.err
    result = json.loads(text.out.splitlines()[-1])
    assert result["best"] == {"by": "dev_bleu", "step": 4, "value": 11.0, "checkpoint": str(out / "best.npz")}
    assert result["dev_bleu"] == 6.0 and result["val_loss"] == 2.5 and result["dev_bleu_sentences"] == 60
    assert 0 <= result["eval_share"] <= 1
    best, ck = load_state(out / "best.npz")
    assert ck.step == 4
    _, last = load_state(out / "last.npz")
    evals = [(r["step"], r["val_loss"], r["dev_bleu"]) for r in last.history if r["kind"] == "eval"]
    assert evals == [(s, loss, bleu) for s, (loss, bleu) in sorted(scripted.items())]  # loss and BLEU both kept

    assert main(["translate", "--checkpoint", str(out), "--workers", "1", "--beam", "1", "In the beginning."]) == 0
    text = capsys.readouterr()
    assert text.err == f"npformer translate: using {out / 'best.npz'} (dev BLEU 11.0 at step 4)\n"
    assert len(text.out.splitlines()) == 1
    assert main(["evaluate", "--checkpoint", str(out), "--data", str(corpus), "--workers", "1", "--beam", "1",
                 "--limit", "2", "--json"]) == 0
    text = capsys.readouterr()
    assert json.loads(text.out.splitlines()[-1])["checkpoint"] == str(out / "best.npz")
    assert "using" in text.err and "best.npz (dev BLEU 11.0 at step 4)" in text.err
    # a file is taken as it is, without a word
    assert main(["translate", "--checkpoint", str(out / "last.npz"), "--workers", "1", "--beam", "1", "Light."]) == 0
    assert capsys.readouterr().err == ""


def fake_dev(n_pairs=500):
    pairs = [(f"source {i}", f"la frase {i} de prueba") for i in range(n_pairs)]
    ids = ([[5, 6, 7]] * n_pairs, [[5, 6, 7, 8]] * n_pairs)
    return SimpleNamespace(ids={"dev": ids}, splits={"dev": pairs}, tokenizer=None)


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.fixture
def timed(monkeypatch):
    """A DevEvaluation on a fake clock: the loss takes 1 s, each decoded sentence 0.125 s;
    ``decoded`` lists the sources decoded."""
    pytest.importorskip("sacrebleu")
    clock, decoded = Clock(), []

    def loss(*args):
        clock.now += 1.0
        return 2.0

    def decode(self, model, pairs):
        clock.now += 0.125 * len(pairs)
        decoded.extend(src for src, _ in pairs)
        return [tgt for _, tgt in pairs]
    monkeypatch.setattr("npformer.train.trainer.evaluate_loss", loss)
    monkeypatch.setattr(DevEvaluation, "decode", decode)

    def make(sentences=None, workers=1):
        ev = DevEvaluation(fake_dev(), SimpleNamespace(max_len=20), max_tokens=64, workers=workers,
                           sentences=sentences)
        ev.clock = clock
        return ev
    return make, decoded


def test_the_dev_sample_is_sized_at_the_first_evaluation_to_the_time_given_then_kept(timed):
    make, decoded = timed
    ev = make()
    # 90% of 10 s: 1 s of loss, the first 50 sentences (6.25 s), then 1.75 s more: 14 sentences
    metrics = ev({}, seconds=10.0)
    assert metrics["bleu_sentences"] == 64 and metrics["val_loss"] == 2.0 and metrics["dev_bleu"] == 100.0
    first = list(decoded)
    assert len(first) == 64 and len(set(first)) == 64
    decoded.clear()
    assert ev({}, seconds=1.0)["bleu_sentences"] == 64  # the same sentences every time, whatever the time
    assert decoded == first
    # the sample is a fixed shuffle of the dev split, not its first pairs, nor the run's seed's
    assert first != [f"source {i}" for i in range(64)]
    decoded.clear()
    make(sentences=64)({}, seconds=1000.0)
    assert decoded == first  # a resumed run's size: the same sample


def test_the_dev_sample_has_a_floor_and_a_ceiling(timed):
    make, decoded = timed
    assert make()({}, seconds=0.5)["bleu_sentences"] == DEV_BLEU_MIN  # BLEU of fewer pairs says little
    assert make()({}, seconds=1e6)["bleu_sentences"] == 500  # the whole dev split


def test_without_sacrebleu_the_dev_loss_alone_picks_best(monkeypatch):
    import npformer.translation as translation
    monkeypatch.setattr(translation, "scoring_available", lambda: False)
    monkeypatch.setattr("npformer.train.trainer.evaluate_loss", lambda *a: 2.0)
    ev = DevEvaluation(fake_dev(), SimpleNamespace(max_len=20), max_tokens=64)
    assert ev({}, seconds=10.0) == {"val_loss": 2.0}


def test_the_demo_evaluates_by_the_dev_loss_alone(timed, monkeypatch, tmp_path):
    """The demo scores its last model on the test set: its evaluations decode nothing, and
    start_run(dev_bleu=False) makes the dev loss the metric of best.npz."""
    make, decoded = timed
    ev = DevEvaluation(fake_dev(), SimpleNamespace(max_len=20), max_tokens=64, bleu=False)
    assert ev({}, seconds=10.0) == {"val_loss": 2.0} and decoded == []
    import npformer.commands.demo as demo
    seen = {}

    def start_run(*args, **kwargs):
        seen.update(kwargs)
        raise SystemExit(0)
    monkeypatch.setattr("npformer.run.start_run", start_run)
    from npformer.cli import build_parser
    from npformer.runtime.distributed.communicator import SingleProcess
    args = build_parser().parse_args(["demo", "--minutes", "5", "--out", str(tmp_path / "demo")])
    with pytest.raises(SystemExit):
        demo.demo_on(args, SingleProcess())
    assert seen["dev_bleu"] is False
