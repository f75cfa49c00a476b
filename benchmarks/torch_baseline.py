"""npformer's architecture built from PyTorch primitives: the SPEED BASELINE.

``train_step.py`` times npformer's training step against this model's. (The
correctness comparison of npformer's gradients with stock PyTorch layers is a
different thing: ``npformer compare-torch``, inside the package.)

The same architecture as npformer (Vaswani et al. 2017, Figure 1), with the
shapes of npformer's own presets (``npformer.model.config.PRESETS``, read
through benchmarks/workload.py: one table for both frameworks):
  * one shared vocabulary V and ONE embedding matrix E (V, d_model), tied three ways:
    source embedding, target embedding and the pre-softmax projection
    (logits = h @ E^T, no bias); lookups are scaled by sqrt(d_model)            (§3.4)
  * sinusoidal positional encoding (computed in float64, then cast, as
    npformer's table) added after the scaling, then dropout                     (§3.5)
  * post-LN sublayers, LayerNorm(x + Dropout(Sublayer(x))), with npformer's
    LayerNorm eps (``npformer.ops.layernorm.LAYERNORM_EPS``, 1e-5; both put it
    inside the square root of the biased variance)                             (§3.1, §5.4)
  * multi-head attention with separate W_q, W_k, W_v, W_o (biases), h heads,
    d_k = d_model / h, softmax(Q K^T / sqrt(d_k)) V, boolean masks, NO dropout on
    the attention weights                                                         (§3.2)
  * FFN(x) = Linear(relu(Linear(x))), no inner dropout                            (§3.3)
  * label-smoothed (0.1) cross-entropy over non-pad targets (pad id 0)            (§5.4)
  * Adam(betas=(0.9, 0.98), eps=1e-9)                                             (§5.3)

We do not use nn.Transformer / nn.TransformerEncoderLayer: their FFN has an inner
dropout and they drop attention weights, which the paper does not (and npformer
does not), so with dropout on they would time a different computation.

:func:`load_npformer_params` copies npformer's parameters (a dict of arrays,
npformer/model/params.py) into this model, so that both frameworks can start
from the same weights; the modules carry npformer's names:

    npformer                         this model
    embed (V, d)                     E (V, d)
    {stack}.{i}.{attn}.W_q (d, d)    {stack}.{i}.{attn}.W_q.weight = W_q^T   (nn.Linear is x A^T + b,
    {stack}.{i}.{attn}.b_q (d,)      {stack}.{i}.{attn}.W_q.bias              npformer's x W + b)
    ... W_k, W_v, W_o likewise; attn = self_attn, and cross_attn in the decoder
    {stack}.{i}.ffn.W_1 (d, d_ff)    {stack}.{i}.ffn.W_1.weight = W_1^T, b_1 = .bias; W_2 likewise
    {stack}.{i}.ln{j}.gamma, beta    {stack}.{i}.ln{j}.weight, .bias   (j = 1, 2; 1, 2, 3 in the decoder)

tests/benchmarks/test_torch_baseline.py checks that the two compute the same
function: the same parameter count, and in float64 without dropout the same
loss to 1e-10.

torch is OPTIONAL for the project: it is imported only inside the functions that build
or run a model.

Run: ``python benchmarks/torch_baseline.py --preset small [--threads 2] [--json]``.
"""
import argparse
import contextlib
import functools
import math
import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:  # run as a script: python benchmarks/torch_baseline.py
    sys.path.insert(0, _ROOT)

from benchmarks.workload import (  # noqa: E402
    DEFAULT_SHAPES, batch_tokens, make_batch, model_dims, train_flops)
from npformer.model.config import PRESETS  # noqa: E402
from npformer.ops.layernorm import LAYERNORM_EPS  # noqa: E402
from npformer.special_tokens import PAD_ID  # noqa: E402

_DTYPES = ("float32", "float64")


def _config(preset):
    """npformer's dims of a preset name, config dict or TransformerConfig (workload.model_dims)."""
    return model_dims(preset)


def _torch_dtype(dtype):
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise ValueError(f"dtype: expected one of {_DTYPES}, got {dtype!r}")
    return getattr(torch, dtype)


# ----------------------------------------------------------------------------- model

@functools.lru_cache(maxsize=None)
def _torch_classes():
    """Define the nn.Modules on first use, so that importing this file needs no torch."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class MultiHeadAttention(nn.Module):
        """softmax(Q K^T / sqrt(d_k)) V over h heads, then W_o. §3.2.2."""

        def __init__(self, d_model, h, sdpa=False):
            super().__init__()
            assert d_model % h == 0, "d_model must be divisible by h"
            self.h, self.d_k, self.sdpa = h, d_model // h, sdpa
            self.W_q = nn.Linear(d_model, d_model)
            self.W_k = nn.Linear(d_model, d_model)
            self.W_v = nn.Linear(d_model, d_model)
            self.W_o = nn.Linear(d_model, d_model)

        def _heads(self, x):
            B, L, _ = x.shape
            return x.view(B, L, self.h, self.d_k).transpose(1, 2)     # (B, h, L, d_k)

        def forward(self, x_q, x_kv, mask):
            """x_q (B, Lq, d), x_kv (B, Lk, d), mask bool broadcastable to
            (B, h, Lq, Lk), True = may attend."""
            B, Lq, d = x_q.shape
            q = self._heads(self.W_q(x_q))                             # (B, h, Lq, d_k)
            k = self._heads(self.W_k(x_kv))                            # (B, h, Lk, d_k)
            v = self._heads(self.W_v(x_kv))                            # (B, h, Lk, d_k)
            if self.sdpa:
                o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, h, Lq, d_k)
            else:
                scores = q @ k.transpose(-2, -1) / math.sqrt(self.d_k)  # (B, h, Lq, Lk)
                scores = scores.masked_fill(~mask, float("-inf"))
                o = torch.softmax(scores, dim=-1) @ v                  # (B, h, Lq, d_k)
            o = o.transpose(1, 2).reshape(B, Lq, d)                     # (B, Lq, d)
            return self.W_o(o)

    class FeedForward(nn.Module):
        """FFN(x) = max(0, x W_1 + b_1) W_2 + b_2, no inner dropout. §3.3."""

        def __init__(self, d_model, d_ff):
            super().__init__()
            self.W_1 = nn.Linear(d_model, d_ff)
            self.W_2 = nn.Linear(d_ff, d_model)

        def forward(self, x):
            return self.W_2(torch.relu(self.W_1(x)))

    def layer_norm(d_model):
        return nn.LayerNorm(d_model, eps=LAYERNORM_EPS)   # npformer's eps: the same function

    class EncoderLayer(nn.Module):
        """x = LN(x + Dropout(SelfAttn(x))); x = LN(x + Dropout(FFN(x)))."""

        def __init__(self, d_model, h, d_ff, p_drop, sdpa):
            super().__init__()
            self.self_attn = MultiHeadAttention(d_model, h, sdpa)
            self.ffn = FeedForward(d_model, d_ff)
            self.ln1, self.ln2 = layer_norm(d_model), layer_norm(d_model)
            self.drop = nn.Dropout(p_drop)

        def forward(self, x, src_mask):
            x = self.ln1(x + self.drop(self.self_attn(x, x, src_mask)))
            return self.ln2(x + self.drop(self.ffn(x)))

    class DecoderLayer(nn.Module):
        """Masked self-attention, cross-attention on the memory, FFN; each post-LN."""

        def __init__(self, d_model, h, d_ff, p_drop, sdpa):
            super().__init__()
            self.self_attn = MultiHeadAttention(d_model, h, sdpa)
            self.cross_attn = MultiHeadAttention(d_model, h, sdpa)
            self.ffn = FeedForward(d_model, d_ff)
            self.ln1, self.ln2, self.ln3 = (layer_norm(d_model) for _ in range(3))
            self.drop = nn.Dropout(p_drop)

        def forward(self, y, memory, tgt_mask, src_mask):
            y = self.ln1(y + self.drop(self.self_attn(y, y, tgt_mask)))
            y = self.ln2(y + self.drop(self.cross_attn(y, memory, src_mask)))
            return self.ln3(y + self.drop(self.ffn(y)))

    class Transformer(nn.Module):
        """Encoder-decoder with one embedding E tied three ways. forward -> logits."""

        def __init__(self, vocab_size, N, d_model, h, d_ff, p_drop, sdpa=False, max_len=1024,
                     dtype=torch.float32):
            super().__init__()
            self.d_model, self.vocab_size = d_model, vocab_size
            self.E = nn.Parameter(torch.empty(vocab_size, d_model))     # (V, d_model)
            self.encoder = nn.ModuleList(
                EncoderLayer(d_model, h, d_ff, p_drop, sdpa) for _ in range(N))
            self.decoder = nn.ModuleList(
                DecoderLayer(d_model, h, d_ff, p_drop, sdpa) for _ in range(N))
            self.drop = nn.Dropout(p_drop)
            self.to(dtype)
            self.register_buffer("pe", positional_encoding(max_len, d_model, dtype), persistent=False)

        def embed(self, tokens):
            """E[tokens] * sqrt(d_model) + PE, then dropout. §3.4, §3.5."""
            L = tokens.shape[1]
            if L > self.pe.shape[0]:
                self.pe = positional_encoding(L, self.d_model, self.pe.dtype).to(self.pe.device)
            x = F.embedding(tokens, self.E) * math.sqrt(self.d_model)  # (B, L, d)
            return self.drop(x + self.pe[:L])

        def forward(self, src, tgt_in):
            """src (B, S), tgt_in (B, T) int64 -> logits (B, T, V)."""
            T = tgt_in.shape[1]
            src_mask = (src != PAD_ID)[:, None, None, :]                # (B, 1, 1, S)
            causal = torch.ones(T, T, dtype=torch.bool, device=src.device).tril()  # (T, T)
            tgt_mask = causal & (tgt_in != PAD_ID)[:, None, None, :]    # (B, 1, T, T)
            x = self.embed(src)                                          # (B, S, d)
            for layer in self.encoder:
                x = layer(x, src_mask)
            y = self.embed(tgt_in)                                       # (B, T, d)
            for layer in self.decoder:
                y = layer(y, x, tgt_mask, src_mask)
            return F.linear(y, self.E)                                   # (B, T, V)

    def positional_encoding(max_len, d_model, dtype=torch.float32):
        """PE(pos, 2i) = sin(pos / 10000^(2i/d_model)), PE(pos, 2i+1) = cos(same),
        computed in float64 and then cast, as npformer's ``sinusoidal_table``."""
        pos = torch.arange(max_len, dtype=torch.float64)[:, None]       # (L, 1)
        two_i = torch.arange(0, d_model, 2, dtype=torch.float64)        # (d/2,)
        angle = pos / 10000.0 ** (two_i / d_model)                      # (L, d/2)
        pe = torch.zeros(max_len, d_model, dtype=torch.float64)         # (L, d)
        pe[:, 0::2] = torch.sin(angle)
        pe[:, 1::2] = torch.cos(angle[:, : d_model // 2])
        return pe.to(dtype)

    return Transformer, positional_encoding


def build(preset, vocab_size, seed=0, sdpa=False, dropout=None, dtype="float32"):
    """A CPU model for ``preset`` (a name of npformer's presets, a config dict with
    npformer's keys or a TransformerConfig), seeded, in ``dtype`` (float32 or float64).

    ``sdpa=True`` uses torch's fused scaled_dot_product_attention instead of explicit
    matmuls + softmax; ``dropout`` overrides the preset's p_drop. Init: E ~ N(0,
    d_model^-1) (so E[tok] * sqrt(d_model) has unit scale), Xavier-uniform linear
    weights, zero biases: the same distributions as npformer's, not the same draws
    (:func:`load_npformer_params` copies npformer's)."""
    import torch
    from torch import nn

    cfg = _config(preset)
    if dropout is not None:
        cfg["p_drop"] = dropout
    Transformer, _ = _torch_classes()
    torch.manual_seed(seed)
    model = Transformer(vocab_size, cfg["n_layers"], cfg["d_model"], cfg["h"], cfg["d_ff"],
                        cfg["p_drop"], sdpa=sdpa, dtype=_torch_dtype(dtype))
    with torch.no_grad():
        nn.init.normal_(model.E, std=cfg["d_model"] ** -0.5)
        for m in model.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
    return model


def npformer_correspondence(n_layers):
    """``[(npformer key, this model's parameter name, transposed?)]`` for a post-LN,
    tied-embedding model of ``n_layers`` per stack (see the module docstring)."""
    out = [("embed", "E", False)]

    def linear(ours_w, ours_b, theirs):
        out.append((ours_w, f"{theirs}.weight", True))     # nn.Linear holds W^T
        out.append((ours_b, f"{theirs}.bias", False))

    def attn(prefix):
        for p in "qkvo":
            linear(f"{prefix}.W_{p}", f"{prefix}.b_{p}", f"{prefix}.W_{p}")

    def ffn(prefix):
        for j in (1, 2):
            linear(f"{prefix}.ffn.W_{j}", f"{prefix}.ffn.b_{j}", f"{prefix}.ffn.W_{j}")

    def ln(prefix):
        out.append((f"{prefix}.gamma", f"{prefix}.weight", False))
        out.append((f"{prefix}.beta", f"{prefix}.bias", False))

    for i in range(n_layers):
        attn(f"encoder.{i}.self_attn")
        ln(f"encoder.{i}.ln1")
        ffn(f"encoder.{i}")
        ln(f"encoder.{i}.ln2")
    for i in range(n_layers):
        attn(f"decoder.{i}.self_attn")
        ln(f"decoder.{i}.ln1")
        attn(f"decoder.{i}.cross_attn")
        ln(f"decoder.{i}.ln2")
        ffn(f"decoder.{i}")
        ln(f"decoder.{i}.ln3")
    return out


def load_npformer_params(model, params, cfg):
    """Copy npformer's ``params`` (a dict of NumPy or CuPy arrays, keys as in
    npformer/model/params.py) into ``model`` in place, in the model's dtype and on its
    device; returns ``model``.

    ``cfg``: the npformer config they belong to (a TransformerConfig, preset name or
    dict). The baseline is post-LN with tied embeddings; any other config, a missing
    or unexpected key, or a shape that does not fit is a ValueError naming it."""
    import torch
    from npformer.backend import backend_of

    get = cfg.get if isinstance(cfg, dict) else functools.partial(getattr, cfg)
    if get("norm", "post") != "post":
        raise ValueError("load_npformer_params: the baseline is post-LN; got norm="
                         f"{get('norm', 'post')!r}")
    if not get("tie_embeddings", True):
        raise ValueError("load_npformer_params: the baseline ties its embeddings; got tie_embeddings=False")
    n_layers = model_dims(cfg)["n_layers"]
    if len(model.encoder) != n_layers or len(model.decoder) != n_layers:
        raise ValueError(f"load_npformer_params: the model has {len(model.encoder)} encoder and "
                         f"{len(model.decoder)} decoder layers, the config n_layers={n_layers}")
    pairs = npformer_correspondence(n_layers)
    ours = {k for k, _, _ in pairs}
    missing, unexpected = sorted(ours - set(params)), sorted(set(params) - ours)
    if missing or unexpected:
        raise ValueError(f"load_npformer_params: keys do not match a post-LN tied model of "
                         f"n_layers={n_layers}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    theirs = dict(model.named_parameters())
    unmapped = sorted(set(theirs) - {name for _, name, _ in pairs})
    if unmapped:
        raise RuntimeError(f"load_npformer_params: model parameters without a source {unmapped[:5]}")
    with torch.no_grad():
        for key, name, transposed in pairs:
            a = params[key]
            a = torch.from_numpy(backend_of(a).to_host(a))
            if transposed:
                a = a.T
            target = theirs[name]
            if tuple(a.shape) != tuple(target.shape):
                raise ValueError(f"load_npformer_params: params[{key!r}] has shape {tuple(params[key].shape)}; "
                                 f"{name} needs {tuple(target.shape)}" + (" transposed" if transposed else ""))
            target.copy_(a.to(dtype=target.dtype, device=target.device))
    return model


@contextlib.contextmanager
def no_dropout(model):
    """Within the block every nn.Dropout of ``model`` has p = 0 (restored after)."""
    from torch import nn

    drops = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    saved = [m.p for m in drops]
    for m in drops:
        m.p = 0.0
    try:
        yield model
    finally:
        for m, p in zip(drops, saved):
            m.p = p


def count_params(model):
    """Number of distinct trainable parameters (the tied E counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def make_optimizer(model, lr=1e-4):
    """Adam with the paper's betas=(0.9, 0.98), eps=1e-9; a fixed lr for timing."""
    import torch

    return torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.98), eps=1e-9)


def loss_fn(logits, tgt_out, eps_ls=0.1):
    """Label-smoothed cross-entropy, mean over non-pad targets (pad id 0)."""
    import torch.nn.functional as F

    V = logits.shape[-1]
    return F.cross_entropy(logits.view(-1, V), tgt_out.view(-1), ignore_index=PAD_ID,
                           label_smoothing=eps_ls)


def train_step_fn(model, optimizer):
    """A callable ``step(src, tgt_in, tgt_out) -> loss`` (float): zero_grad, forward,
    loss, backward, optimizer.step. Accepts int64 NumPy arrays or tensors."""
    import torch

    def as_tensor(a):
        return a if isinstance(a, torch.Tensor) else torch.from_numpy(a)

    def step(src, tgt_in, tgt_out):
        model.train()
        optimizer.zero_grad(set_to_none=True)
        logits = model(as_tensor(src), as_tensor(tgt_in))               # (B, T, V)
        loss = loss_fn(logits, as_tensor(tgt_out))
        loss.backward()
        optimizer.step()
        return float(loss.item())

    return step


def check_loss_decreases(step, batch, n_steps=5):
    """Validate before timing: run ``n_steps`` on one batch; the loss must be finite
    everywhere and lower at the end than at the start. Returns the losses."""
    losses = [step(*batch) for _ in range(n_steps)]
    if not all(math.isfinite(x) for x in losses):
        raise RuntimeError(f"non-finite loss: {losses}")
    if not losses[-1] < losses[0]:
        raise RuntimeError(f"loss did not decrease over {n_steps} steps: {losses}")
    return losses


# ----------------------------------------------------------------------------- main

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="small", choices=sorted(PRESETS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", "-B", type=int, default=DEFAULT_SHAPES["B"])
    ap.add_argument("--src-len", "-S", type=int, default=DEFAULT_SHAPES["S"])
    ap.add_argument("--tgt-len", "-T", type=int, default=DEFAULT_SHAPES["T"])
    ap.add_argument("--vocab", "-V", type=int, default=DEFAULT_SHAPES["V"])
    ap.add_argument("--n-padded", type=int, default=2, help="sentences padded to 3/4 length")
    ap.add_argument("--attention", choices=["explicit", "sdpa", "both"], default="both")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--check-steps", type=int, default=5)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-peak", action="store_true", help="skip the torch GEMM peak")
    ap.add_argument("--json", action="store_true", help="print one JSON object last")
    args = ap.parse_args(argv)

    from benchmarks import common

    common.set_threads(args.threads)   # env first, before torch/NumPy load their pools
    import torch
    common.set_threads(args.threads)   # now torch.set_num_threads too

    B, S, T, V = args.batch, args.src_len, args.tgt_len, args.vocab
    batch = make_batch(B, S, T, V, seed=args.seed, n_padded=args.n_padded)
    toks = batch_tokens(batch[0], batch[2])
    flops = train_flops(args.preset, B, S, T, V)
    variants = ["explicit", "sdpa"] if args.attention == "both" else [args.attention]

    rows = []
    for variant in variants:
        model = build(args.preset, V, seed=args.seed, sdpa=(variant == "sdpa"))
        step = train_step_fn(model, make_optimizer(model, lr=args.lr))
        losses = check_loss_decreases(step, batch, args.check_steps)
        with common.OtherLoad() as load:
            med, times = common.median_time(lambda step=step: step(*batch), warmup=args.warmup,
                                            repeats=args.repeats)
        rows.append({
            "attention": variant, "step_s": med, "step_min_s": min(times),
            "step_times_s": times, "other_load_cores": load.other_cores,
            "tokens_per_s": toks["total"] / med, "tgt_tokens_per_s": toks["tgt"] / med,
            "gflops": flops / med / 1e9, "params": count_params(model),
            "loss_first": losses[0], "loss_last": losses[-1],
        })
        del model, step

    result = {
        "benchmark": "torch_baseline", "framework": f"torch {torch.__version__}",
        "device": "cpu", "dtype": "float32", "preset": args.preset,
        "config": _config(args.preset), "threads": torch.get_num_threads(),
        "shapes": {"B": B, "S": S, "T": T, "V": V, "n_padded": args.n_padded},
        "tokens": toks, "train_flops": flops,
        "timing": {"warmup": args.warmup, "repeats": args.repeats, "stat": "median"},
        "results": rows,
    }
    if not args.no_peak:
        result["torch_matmul_peak_gflops_f32"] = common.matmul_peak_gflops(
            "float32", n=2048, repeats=5, xp=torch)
    result["peak_rss_mib"] = common.peak_rss_mib()
    result["machine"] = common.machine_info()

    if not args.json:
        print(f"torch baseline, preset {args.preset} {_config(args.preset)}, "
              f"B={B} S={S} T={T} V={V}, float32 cpu, {result['threads']} threads")
        print(f"params {rows[0]['params']:,}, train step {flops / 1e9:.2f} GFLOP, "
              f"tokens/step {toks['total']} (src {toks['src']}, tgt {toks['tgt']})")
        if "torch_matmul_peak_gflops_f32" in result:
            print(f"torch float32 GEMM peak (n=2048): "
                  f"{result['torch_matmul_peak_gflops_f32']:.1f} GFLOP/s")
        print(f"peak RSS {result['peak_rss_mib']:.0f} MiB")
        busy = [r["other_load_cores"] for r in rows if r["other_load_cores"] is not None]
        if busy and max(busy) > 0.2:
            print(f"WARNING: other processes kept {max(busy):.2f} cores busy while timing; "
                  f"the numbers are noisy (compare step_min_s)")
    common.emit(result, args.json, table_rows=rows,
                columns=["attention", "step_s", "step_min_s", "tokens_per_s", "tgt_tokens_per_s",
                         "gflops", "loss_first", "loss_last", "other_load_cores"])
    return result


if __name__ == "__main__":
    main()
