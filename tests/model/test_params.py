"""Parameter initialisation and validation (npformer/model/params.py): the documented scheme, seeds, key errors."""
import numpy as np
import pytest

from npformer.model.config import TransformerConfig
from npformer.model.params import init_params, param_shapes, validate_params

UNTIED = TransformerConfig(vocab_size=400, d_model=64, h=4, d_ff=128, n_layers=1, tie_embeddings=False,
                           tgt_vocab_size=300, max_len=16)


@pytest.mark.parametrize("cfg", [UNTIED, UNTIED.replace(tie_embeddings=True, tgt_vocab_size=None, norm="pre")],
                         ids=["untied", "tied pre-LN"])
def test_init_params_follows_the_documented_scheme(cfg):
    """gamma 1, biases and beta 0, embeddings N(0, 1/d_model), every weight matrix Xavier uniform
    U(-l, l) with l = sqrt(6 / (fan_in + fan_out)). A wrong scheme keeps every gradient right, so
    only a check of the values themselves sees it."""
    params = init_params(cfg, seed=3, dtype="float64")
    assert {k: v.shape for k, v in params.items()} == param_shapes(cfg)
    embeddings = {"embed", "src_embed", "tgt_embed", "out_proj"}
    for name, a in params.items():
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "gamma":
            assert (a == 1.0).all(), name
        elif leaf == "beta" or leaf.startswith("b_"):
            assert (a == 0.0).all(), name
        elif name in embeddings:
            assert abs(a.mean()) < 0.01 and a.std() == pytest.approx(cfg.d_model ** -0.5, rel=0.05), name
            assert np.abs(a).max() > 3 * cfg.d_model ** -0.5, name  # a normal's tails, not a bounded uniform
        else:
            limit = np.sqrt(6.0 / sum(a.shape))
            assert np.abs(a).max() <= limit and np.abs(a).max() > 0.95 * limit, name
            assert a.std() == pytest.approx(limit / np.sqrt(3.0), rel=0.1), name


def test_init_params_defaults_seeds_and_dtypes():
    cfg = UNTIED.replace(d_model=8, h=2, d_ff=8, vocab_size=12, tgt_vocab_size=10)
    default = init_params(cfg)
    seed0 = init_params(cfg, seed=0, dtype="float32")
    assert all(default[k].dtype == np.float32 and np.array_equal(default[k], seed0[k]) for k in seed0)
    other = init_params(cfg, seed=np.int64(1))
    assert not np.array_equal(other["src_embed"], seed0["src_embed"])
    for bad in (-1, True, 1.5, "0"):
        with pytest.raises(ValueError, match=f"seed: expected a non-negative integer, got {bad!r}"):
            init_params(cfg, seed=bad)


def test_validate_params_names_at_most_five_keys_of_each_kind():
    cfg = UNTIED.replace(d_model=8, h=2, d_ff=8, vocab_size=12, tgt_vocab_size=10)
    params = init_params(cfg.replace(n_layers=2), dtype="float64")
    extra = sorted(set(params) - set(param_shapes(cfg)))
    assert len(extra) > 5
    with pytest.raises(ValueError, match="keys do not match") as e:
        validate_params(params, cfg)
    assert f"unexpected {extra[:5]}" in str(e.value) and extra[5] not in str(e.value)
    del params["src_embed"]
    with pytest.raises(ValueError, match=r"missing \['src_embed'\], unexpected"):
        validate_params(params, cfg)


def test_count_params_per_component():
    """Each stack's count is split by sublayer (summed over its layers), embeddings by matrix."""
    from npformer.model.params import count_params
    d, f, n = 8, 12, 2
    cfg = TransformerConfig(vocab_size=11, d_model=d, h=2, d_ff=f, n_layers=n, tie_embeddings=False,
                            tgt_vocab_size=7, max_len=16)
    attn, ffn, ln = 4 * (d * d + d), d * f + f + f * d + d, 2 * d
    counts = count_params(cfg)
    assert counts["per_component"] == {
        "embeddings": {"src_embed": 11 * d, "tgt_embed": 7 * d, "out_proj": 7 * d},
        "encoder": {"self_attn": n * attn, "ln1": n * ln, "ffn": n * ffn, "ln2": n * ln},
        "decoder": {"self_attn": n * attn, "ln1": n * ln, "cross_attn": n * attn, "ln2": n * ln,
                    "ffn": n * ffn, "ln3": n * ln}}
    total = 25 * d + n * (attn + ffn + 2 * ln) + n * (2 * attn + ffn + 3 * ln)
    assert counts["summary"] == {"embeddings": 25 * d, "encoder": n * (attn + ffn + 2 * ln),
                                 "decoder": n * (2 * attn + ffn + 3 * ln), "total": total}
    assert count_params(init_params(cfg)) == counts  # from a params dict: the same
