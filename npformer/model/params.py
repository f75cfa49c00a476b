"""Parameter initialisation and counting. Parameters are one flat dict:

    "embed"                          (V, d_model)  tied source/target/pre-softmax weights
    "encoder.{i}.self_attn.W_q" ...  multi-head attention weights and biases
    "encoder.{i}.ffn.W_1" ...        feed-forward weights and biases
    "encoder.{i}.ln1.gamma" ...      LayerNorm gain and bias
    "decoder.{i}.self_attn.*", "decoder.{i}.cross_attn.*", "decoder.{i}.ffn.*", "decoder.{i}.ln{1,2,3}.*"
    "encoder.norm.*", "decoder.norm.*"   only for pre-LN: the LayerNorm that ends each stack

Untied (``tie_embeddings=False``): "src_embed" (V, d_model), "tgt_embed" and
"out_proj" (V_tgt, d_model) instead of "embed". Gradients use the same keys.
``validate_params`` refuses a dict that does not fit the config, naming the key.

Initialisation (the paper does not state one): Xavier/Glorot uniform for the
weight matrices, zeros for biases and beta, ones for gamma, and N(0, d_model^-1)
for the embedding, so that sqrt(d_model) * E[id] has unit-variance entries.
Values are drawn on the host in float64 from a seeded NumPy generator and then
cast, so the same seed gives the same model on every backend and dtype.
"""
from __future__ import annotations

import numpy as np

from npformer.backend import backend_of, validate_dtype, get_backend
from npformer.model.config import TransformerConfig
from npformer.ops.feedforward import PARAM_NAMES as FFN_PARAMS
from npformer.ops.multihead import PARAM_NAMES as ATTN_PARAMS


def embedding_keys(cfg: TransformerConfig) -> dict:
    """Which parameter serves each of the three embedding uses (§3.4 tying)."""
    if cfg.tie_embeddings:
        return {"src": "embed", "tgt": "embed", "out": "embed"}
    return {"src": "src_embed", "tgt": "tgt_embed", "out": "out_proj"}


def params_backend(params: dict):
    """The backend all of ``params`` live on (an error if they are on two devices)."""
    if not params:
        raise ValueError("params: the parameter dict is empty")
    return backend_of(*params.values())


def param_shapes(cfg: TransformerConfig) -> dict:
    d, d_ff = cfg.d_model, cfg.d_ff
    shapes = {}
    if cfg.tie_embeddings:
        shapes["embed"] = (cfg.vocab_size, d)
    else:
        shapes.update(src_embed=(cfg.vocab_size, d), tgt_embed=(cfg.target_vocab, d),
                      out_proj=(cfg.target_vocab, d))

    def attn(prefix):
        for k in ATTN_PARAMS:
            shapes[prefix + k] = (d, d) if k[0] == "W" else (d,)

    def ffn(prefix):
        for k in FFN_PARAMS:
            shapes[prefix + k] = {"W_1": (d, d_ff), "b_1": (d_ff,), "W_2": (d_ff, d), "b_2": (d,)}[k]

    def ln(prefix):
        shapes[prefix + "gamma"] = (d,)
        shapes[prefix + "beta"] = (d,)

    for i in range(cfg.n_layers):
        attn(f"encoder.{i}.self_attn.")
        ln(f"encoder.{i}.ln1.")
        ffn(f"encoder.{i}.ffn.")
        ln(f"encoder.{i}.ln2.")
    if cfg.norm == "pre":
        ln("encoder.norm.")
    for i in range(cfg.n_layers):
        attn(f"decoder.{i}.self_attn.")
        ln(f"decoder.{i}.ln1.")
        attn(f"decoder.{i}.cross_attn.")
        ln(f"decoder.{i}.ln2.")
        ffn(f"decoder.{i}.ffn.")
        ln(f"decoder.{i}.ln3.")
    if cfg.norm == "pre":
        ln("decoder.norm.")
    return shapes


def validate_params(params, cfg: TransformerConfig) -> None:
    """``params`` must hold exactly the keys of ``param_shapes(cfg)``, each a float array of
    that shape, all of one dtype: a ValueError/TypeError that names the key otherwise."""
    if not isinstance(params, dict):
        raise TypeError(f"params: expected a dict of arrays, got {type(params).__name__}")
    shapes = param_shapes(cfg)
    missing, unexpected = sorted(set(shapes) - set(params)), sorted(set(params) - set(shapes))
    if missing or unexpected:
        found = [f"{what} {keys[:5]}" for what, keys in (("missing", missing), ("unexpected", unexpected)) if keys]
        raise ValueError(f"params: keys do not match the config (n_layers={cfg.n_layers}, "
                         f"tie_embeddings={cfg.tie_embeddings}, norm={cfg.norm!r}): {', '.join(found)}")
    dtypes = set()
    for name, shape in shapes.items():
        a = params[name]
        if getattr(a, "dtype", None) is None or a.dtype.kind != "f":
            raise TypeError(f"params[{name!r}]: expected a float array, got "
                            f"{getattr(a, 'dtype', type(a).__name__)}")
        if tuple(a.shape) != shape:
            raise ValueError(f"params[{name!r}]: shape {tuple(a.shape)}, the config needs {shape}")
        dtypes.add(str(a.dtype))
    if len(dtypes) > 1:
        raise TypeError(f"params: mixed dtypes {sorted(dtypes)}; expected one (float32 or float64)")


def init_params(cfg: TransformerConfig, seed: int = 0, dtype: str = "float32", backend=None) -> dict:
    dtype = validate_dtype(dtype)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected a non-negative integer, got {seed!r}")
    be = get_backend(backend)
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in param_shapes(cfg).items():
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "gamma":
            a = np.ones(shape)
        elif leaf.startswith("b_") or leaf == "beta":
            a = np.zeros(shape)
        elif len(shape) == 2 and name.split(".")[0] in ("embed", "src_embed", "tgt_embed", "out_proj"):
            a = rng.normal(0.0, cfg.d_model ** -0.5, shape)
        else:
            limit = np.sqrt(6.0 / (shape[0] + shape[1]))
            a = rng.uniform(-limit, limit, shape)
        params[name] = be.asarray(a, dtype=dtype)
    return params


def count_params(params_or_cfg) -> dict:
    """Parameter counts per component: embeddings, encoder, decoder, total."""
    shapes = (param_shapes(params_or_cfg) if isinstance(params_or_cfg, TransformerConfig)
              else {k: v.shape for k, v in params_or_cfg.items()})
    counts: dict = {}
    for name, shape in shapes.items():
        parts = name.split(".")
        group = parts[0] if parts[0] in ("encoder", "decoder") else "embeddings"
        sub = parts[0] if group == "embeddings" else "final_norm" if parts[1] == "norm" else parts[2]
        n = int(np.prod(shape))
        counts.setdefault(group, {}).setdefault(sub, 0)
        counts[group][sub] += n
    summary = {g: sum(d.values()) for g, d in counts.items()}
    summary["total"] = sum(summary.values())
    return {"per_component": counts, "summary": summary}
