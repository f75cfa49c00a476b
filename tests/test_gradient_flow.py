"""Per-layer gradient norms at initialisation (npformer/verify/gradient_flow.py) and their plots."""
import gzip
import json

import numpy as np
import pytest

from npformer.cli import main
from npformer.data.batching import make_batches
from npformer.data.corpus import DEFAULT_CORPUS
from npformer.verify.gradient_flow import gradient_flow, layer_weight_norms
from npformer.model.config import preset


def test_layer_weight_norms_use_each_layers_matrices_only():
    cfg = preset("tiny", vocab_size=10, n_layers=2)
    grads = {"embed": np.full((10, 64), 9.0),
             "encoder.0.ffn.W_1": np.full((2, 2), 1.0), "encoder.0.ffn.b_1": np.full(2, 5.0),
             "encoder.0.self_attn.W_q": np.full((1, 3), 2.0), "encoder.1.ffn.W_2": np.full((1, 1), 3.0),
             "decoder.0.ln1.gamma": np.full(4, 7.0), "decoder.1.cross_attn.W_o": np.full((1, 1), -4.0)}
    norms = layer_weight_norms(grads, cfg)
    assert norms == {"encoder": [pytest.approx(np.sqrt(4 + 12)), 3.0], "decoder": [0.0, 4.0]}


def test_gradient_flow_averages_over_batches_for_both_placements():
    cfg = preset("tiny", vocab_size=20, n_layers=2, max_len=16)
    rng = np.random.default_rng(0)
    pairs = [(rng.integers(4, 20, rng.integers(3, 9)).tolist(), rng.integers(4, 20, rng.integers(3, 9)).tolist())
             for _ in range(12)]
    batches = make_batches([s for s, _ in pairs], [t for _, t in pairs], max_tokens=40)
    assert len(batches) >= 3
    both = gradient_flow(cfg, batches[:2], seed=1)
    one = [gradient_flow(cfg, [b], seed=1) for b in batches[:2]]
    for norm in ("post", "pre"):
        for stack in ("encoder", "decoder"):
            values = both[norm][stack]
            assert len(values) == 2 and all(v > 0 for v in values)
            np.testing.assert_allclose(values, np.mean([o[norm][stack] for o in one], axis=0), rtol=1e-6)
    assert both["post"]["decoder"] != both["pre"]["decoder"]
    with pytest.raises(ValueError, match="at least one batch"):
        gradient_flow(cfg, [])


@pytest.fixture(scope="module")
def tsv(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "pairs.tsv"
    with gzip.open(DEFAULT_CORPUS, "rt", encoding="utf-8") as f:
        path.write_text("".join(next(f) for _ in range(300)), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("backend", ["numpy", "cupysim"])
def test_gradient_flow_command_on_the_tiny_preset(tsv, tmp_path, capsys, backend):
    pytest.importorskip("matplotlib")
    png = tmp_path / "flow.png"
    assert main(["gradient-flow", "--preset", "tiny", "--data", tsv, "--merges", "40", "--batches", "2",
                 "--max-tokens", "300", "--out", str(png), "--json", "--backend", backend]) == 0
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert result["batches"] == 2 and result["figure"] == str(png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for norm in ("post", "pre"):
        assert len(result[norm]["encoder"]) == len(result[norm]["decoder"]) == 2
        assert result[norm]["loss"] > 0


def test_plot_runs_puts_several_runs_in_one_figure(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    runs = []
    for norm in ("post", "pre"):
        run = str(tmp_path / norm)
        assert main(["train", "--task", "copy", "--vocab-size", "10", "--min-len", "2", "--max-len", "5",
                     "--batch-size", "8", "--steps", "20", "--eval-every", "0", "--no-progress",
                     "--norm", norm, "--out", run]) == 0
        runs.append(run)
    capsys.readouterr()
    png = tmp_path / "runs.png"
    assert main(["plot-runs", *runs, "--label", "post-LN", "--label", "pre-LN", "--out", str(png), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert set(result["final_train_loss"]) == {"post-LN", "pre-LN"} and png.stat().st_size > 1000
    assert main(["plot-runs", *runs, "--label", "only-one", "--out", str(png)]) == 2
    assert "one per run" in capsys.readouterr().err
    assert main(["plot-runs", str(tmp_path), "--out", str(png)]) == 2
    assert "no last.npz" in capsys.readouterr().err
