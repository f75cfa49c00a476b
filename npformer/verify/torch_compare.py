"""A second, independent check of every gradient: the same model in stock PyTorch.

Finite differences (gradcheck.py) test npformer's backward against npformer's
own forward. Here both the forward and the backward come from elsewhere:
PyTorch's ``nn.TransformerEncoder``/``nn.TransformerDecoder`` of stock
``nn.TransformerEncoderLayer``/``nn.TransformerDecoderLayer`` (post-LN, or
pre-LN with ``norm_first=True`` and a final ``nn.LayerNorm`` per stack; none
for post-LN), differentiated by autograd. The glue around them is the paper's
§3.4-3.5: one matrix E for the source and target lookups (times sqrt(d_model))
and the pre-softmax linear, plus the sinusoidal encoding, computed here in torch.

npformer's weights are copied in, everything runs in float64 without dropout
on one padded batch, and each gradient is compared by name:

    nn.MultiheadAttention   in_proj_weight = [W_q^T; W_k^T; W_v^T]   (PyTorch's Linear is x A^T + b,
                            in_proj_bias   = [b_q; b_k; b_v]          ours is x W + b, so A = W^T)
                            out_proj       = W_o^T, b_o
    linear1, linear2        W_1^T, b_1 and W_2^T, b_2
    norm1, norm2, norm3     ln1, ln2, ln3 (gamma = weight, beta = bias)

    max_rel_diff = max_i |g_npformer_i - g_torch_i| / max_i |g_torch_i|

Zero by the math: the key bias b_k. It adds q . b_k to every score of a query
row, a constant the softmax removes, so dL/db_k = 0 exactly; both sides give
rounding noise around 0, which is compared in absolute terms against the
model's largest gradient instead.

torch is an optional extra (``pip install npformer[torch]``); it is imported
only inside the functions below.
"""
from __future__ import annotations

from npformer.errors import UserError
import math
from typing import NamedTuple

import numpy as np

from npformer.backend import get_backend
from npformer.verify.model_cases import perturbed_params
from npformer.model.config import TransformerConfig
from npformer.model.transformer import loss_and_grads, transformer_forward
from npformer.ops.layernorm import LAYERNORM_EPS

TOLERANCE = 1e-10
ZERO_BY_MATH = ("b_k",)  # a shift shared by all keys of a query: softmax cancels it


def import_torch():
    try:
        import torch
    except ImportError:
        raise UserError("compare-torch needs PyTorch: pip install 'npformer[torch]' "
                           "(or pip install torch)") from None
    return torch


class Row(NamedTuple):
    norm: str
    name: str             # npformer's parameter name
    torch_name: str       # where autograd's gradient came from
    max_abs_diff: float
    max_rel_diff: float   # relative to max |g_torch|; nan for the zero-by-math ones
    zero_by_math: bool
    passed: bool

    def as_dict(self) -> dict:
        return self._asdict()


def build_torch_model(cfg: TransformerConfig):
    """The model in stock PyTorch modules, float64, no dropout: a module with
    ``forward(src, tgt_in) -> logits`` and attributes E, encoder, decoder."""
    torch = import_torch()
    nn = torch.nn
    pre = cfg.norm == "pre"
    kw = dict(d_model=cfg.d_model, nhead=cfg.h, dim_feedforward=cfg.d_ff, dropout=0.0, activation="relu",
              layer_norm_eps=LAYERNORM_EPS, batch_first=True, norm_first=pre, dtype=torch.float64)

    def final_norm():
        return nn.LayerNorm(cfg.d_model, eps=LAYERNORM_EPS, dtype=torch.float64) if pre else None

    class Transformer(nn.Module):
        def __init__(self):
            super().__init__()
            self.E = nn.Parameter(torch.zeros(cfg.vocab_size, cfg.d_model, dtype=torch.float64))
            self.encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(**kw), cfg.n_layers,
                                                 norm=final_norm(), enable_nested_tensor=False)
            self.decoder = nn.TransformerDecoder(nn.TransformerDecoderLayer(**kw), cfg.n_layers, norm=final_norm())
            pos = torch.arange(cfg.max_len, dtype=torch.float64)[:, None]  # (max_len, 1)
            angle = pos / 10000.0 ** (torch.arange(0, cfg.d_model, 2, dtype=torch.float64) / cfg.d_model)
            pe = torch.zeros(cfg.max_len, cfg.d_model, dtype=torch.float64)  # (max_len, d_model)
            pe[:, 0::2], pe[:, 1::2] = torch.sin(angle), torch.cos(angle)
            self.register_buffer("pe", pe, persistent=False)

        def embed(self, ids):
            return nn.functional.embedding(ids, self.E) * math.sqrt(cfg.d_model) + self.pe[:ids.shape[1]]

        def forward(self, src, tgt_in):
            T = tgt_in.shape[1]
            src_pad, tgt_pad = src == cfg.pad_id, tgt_in == cfg.pad_id  # True = ignore (PyTorch's sense)
            future = torch.ones(T, T, dtype=torch.bool).triu(1)  # (T, T) True = may not attend
            memory = self.encoder(self.embed(src), src_key_padding_mask=src_pad)  # (B, S, d_model)
            H = self.decoder(self.embed(tgt_in), memory, tgt_mask=future, tgt_key_padding_mask=tgt_pad,
                             memory_key_padding_mask=src_pad)  # (B, T, d_model)
            return H @ self.E.T  # (B, T, V)

    return Transformer()


def _correspondence(cfg: TransformerConfig) -> list:
    """(npformer name, torch parameter name, how to read it: "T", "q"/"k"/"v" or "") per parameter."""
    out = [("embed", "E", "")]

    def attn(ours, theirs):
        for part in "qkv":
            out.append((f"{ours}.W_{part}", f"{theirs}.in_proj_weight", part + "T"))
            out.append((f"{ours}.b_{part}", f"{theirs}.in_proj_bias", part))
        out.append((f"{ours}.W_o", f"{theirs}.out_proj.weight", "T"))
        out.append((f"{ours}.b_o", f"{theirs}.out_proj.bias", ""))

    def ffn_and_norms(ours, theirs, n_norms):
        for j in (1, 2):
            out.append((f"{ours}.ffn.W_{j}", f"{theirs}.linear{j}.weight", "T"))
            out.append((f"{ours}.ffn.b_{j}", f"{theirs}.linear{j}.bias", ""))
        for j in range(1, n_norms + 1):
            out.append((f"{ours}.ln{j}.gamma", f"{theirs}.norm{j}.weight", ""))
            out.append((f"{ours}.ln{j}.beta", f"{theirs}.norm{j}.bias", ""))

    for i in range(cfg.n_layers):
        attn(f"encoder.{i}.self_attn", f"encoder.layers.{i}.self_attn")
        ffn_and_norms(f"encoder.{i}", f"encoder.layers.{i}", 2)
    for i in range(cfg.n_layers):
        attn(f"decoder.{i}.self_attn", f"decoder.layers.{i}.self_attn")
        attn(f"decoder.{i}.cross_attn", f"decoder.layers.{i}.multihead_attn")
        ffn_and_norms(f"decoder.{i}", f"decoder.layers.{i}", 3)
    if cfg.norm == "pre":
        for stack in ("encoder", "decoder"):
            out.append((f"{stack}.norm.gamma", f"{stack}.norm.weight", ""))
            out.append((f"{stack}.norm.beta", f"{stack}.norm.bias", ""))
    return out


def _read(a, how: str, d: int):
    """npformer's layout of the torch array ``a`` (NumPy): a slice of in_proj, transposed if "T" in how."""
    part = how.rstrip("T")
    if part:
        a = a["qkv".index(part) * d:("qkv".index(part) + 1) * d]
    return a.T if how.endswith("T") else a


def copy_weights(model, params: dict, cfg: TransformerConfig) -> None:
    """Write npformer's ``params`` (NumPy, float64) into the torch ``model``."""
    torch = import_torch()
    theirs = dict(model.named_parameters())
    with torch.no_grad():
        for ours, name, how in _correspondence(cfg):
            target = theirs[name]
            view = _read(target, how, cfg.d_model)  # a view into the torch parameter
            view.copy_(torch.from_numpy(np.asarray(params[ours], dtype=np.float64)))
    if set(p for _, p, _ in _correspondence(cfg)) != set(theirs):
        raise RuntimeError(f"compare-torch: unmapped torch parameters "
                           f"{sorted(set(theirs) - {p for _, p, _ in _correspondence(cfg)})}")


def padded_batch(cfg: TransformerConfig, seed: int = 0, B: int = 3, S: int = 7, T: int = 6):
    """(src, tgt_in, tgt_out) int64, with padding at the end of all but the first sentence."""
    rng = np.random.default_rng(seed)
    src = rng.integers(3, cfg.vocab_size, (B, S))
    tgt = rng.integers(3, cfg.vocab_size, (B, T + 1))
    tgt[:, 0] = cfg.bos_id
    for b in range(1, B):
        src[b, S - 2 * b:] = cfg.pad_id
        tgt[b, T + 1 - 2 * b:] = cfg.pad_id
    return src, tgt[:, :-1].copy(), tgt[:, 1:].copy()


def compare(cfg: TransformerConfig, seed: int = 0) -> dict:
    """Loss, logits and every parameter's gradient of npformer and of PyTorch on one batch.

    Returns {"norm", "loss_npformer", "loss_torch", "loss_rel_diff", "logits_max_rel_diff",
    "max_rel_grad_diff", "passed", "rows": [Row, ...]}.
    """
    torch = import_torch()
    cfg = cfg.replace(p_drop=0.0)
    if not cfg.tie_embeddings:
        raise ValueError("compare-torch: builds the paper's tied embeddings; got tie_embeddings=False")
    params = perturbed_params(cfg, get_backend("numpy"), seed)  # gamma != 1, biases != 0: every term matters
    src, tgt_in, tgt_out = padded_batch(cfg, seed)
    logits, _ = transformer_forward(params, cfg, src, tgt_in)
    loss, grads, _ = loss_and_grads(params, cfg, src, tgt_in, tgt_out)

    model = build_torch_model(cfg)
    copy_weights(model, params, cfg)
    model.train()  # no dropout (p = 0); train mode keeps PyTorch off its inference fast path
    t_logits = model(torch.from_numpy(src), torch.from_numpy(tgt_in))
    t_loss = torch.nn.functional.cross_entropy(t_logits.reshape(-1, t_logits.shape[-1]),
                                               torch.from_numpy(tgt_out).reshape(-1),
                                               ignore_index=cfg.pad_id, label_smoothing=cfg.eps_ls)
    t_loss.backward()
    t_loss = t_loss.item()
    theirs = {name: p.grad.numpy() for name, p in model.named_parameters()}

    scale = max(float(np.abs(g).max()) for g in theirs.values())
    rows = []
    for ours, name, how in _correspondence(cfg):
        g, t = grads[ours], _read(theirs[name], how, cfg.d_model)
        abs_diff = float(np.abs(g - t).max())
        zero = ours.rsplit(".", 1)[-1] in ZERO_BY_MATH
        if zero:  # both sides only rounding noise: judged against the model's largest gradient
            rel, ok = math.nan, max(abs_diff, float(np.abs(g).max()), float(np.abs(t).max())) <= TOLERANCE * scale
        else:
            rel = abs_diff / float(np.abs(t).max())
            ok = rel <= TOLERANCE
        rows.append(Row(cfg.norm, ours, name + (f"[{how[0]}]" if how.rstrip("T") else ""), abs_diff, rel, zero, ok))
    logits_t = t_logits.detach().numpy()
    max_rel = max(r.max_rel_diff for r in rows if not r.zero_by_math)
    result = {
        "norm": cfg.norm, "loss_npformer": float(loss), "loss_torch": float(t_loss),
        "loss_rel_diff": abs(float(loss) - float(t_loss)) / abs(float(t_loss)),
        "logits_max_rel_diff": float(np.abs(logits - logits_t).max() / np.abs(logits_t).max()),
        "max_rel_grad_diff": max_rel, "max_abs_zero_by_math": max(r.max_abs_diff for r in rows if r.zero_by_math),
        "torch_version": torch.__version__, "rows": rows,
    }
    result["passed"] = (all(r.passed for r in rows) and result["loss_rel_diff"] <= TOLERANCE
                        and result["logits_max_rel_diff"] <= TOLERANCE)
    return result
