"""The paper's Transformer built from PyTorch primitives, for timing comparisons only.

The same architecture as npformer (Vaswani et al. 2017, base model, Figure 1):
  * one shared vocabulary V and ONE embedding matrix E (V, d_model), tied three ways:
    source embedding, target embedding and the pre-softmax projection
    (logits = h @ E^T, no bias); lookups are scaled by sqrt(d_model)            (§3.4)
  * sinusoidal positional encoding added after the scaling, then dropout          (§3.5)
  * post-LN sublayers, LayerNorm(x + Dropout(Sublayer(x))), nn.LayerNorm eps 1e-5  (§3.1, §5.4)
  * multi-head attention with separate W_q, W_k, W_v, W_o (biases), h heads,
    d_k = d_model / h, softmax(Q K^T / sqrt(d_k)) V, boolean masks, NO dropout on
    the attention weights                                                         (§3.2)
  * FFN(x) = Linear(relu(Linear(x))), no inner dropout                            (§3.3)
  * label-smoothed (0.1) cross-entropy over non-pad targets (pad id 0)            (§5.4)
  * Adam(betas=(0.9, 0.98), eps=1e-9)                                             (§5.3)

We do not use nn.Transformer / nn.TransformerEncoderLayer: their FFN has an inner
dropout and they drop attention weights, which the paper does not.

torch is OPTIONAL for the project: it is imported only inside the functions that build
or run a model. ``PRESETS``, :func:`make_batch`, :func:`forward_flops` and
:func:`train_flops` need NumPy only (npformer's own benchmark reuses them).

Run: ``python benchmarks/torch_reference.py --preset small [--threads 2] [--json]``.
"""
import argparse
import functools
import math
import os
import sys

from npformer.special_tokens import BOS_ID, EOS_ID, PAD_ID

# Same names and sizes as npformer's presets. N = encoder layers = decoder layers.
PRESETS = {
    "tiny": dict(N=2, d_model=64, h=4, d_ff=256, P_drop=0.1),
    "small": dict(N=3, d_model=256, h=4, d_ff=1024, P_drop=0.1),
    "base": dict(N=6, d_model=512, h=8, d_ff=2048, P_drop=0.1),   # the paper's base model
}

# Benchmark shapes: B sentences, source length S, target length T, vocabulary V.
DEFAULT_SHAPES = dict(B=8, S=64, T=64, V=8192)


def _config(preset):
    """A preset name or a dict with N, d_model, h, d_ff (P_drop optional)."""
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
        return dict(PRESETS[preset])
    cfg = dict(preset)
    missing = {"N", "d_model", "h", "d_ff"} - set(cfg)
    if missing:
        raise ValueError(f"config lacks {sorted(missing)}")
    cfg.setdefault("P_drop", 0.1)
    return cfg


# ----------------------------------------------------------------------------- data

def make_batch(B=8, S=64, T=64, V=8192, seed=0, n_padded=2, pad_len=None):
    """A random batch ``(src, tgt_in, tgt_out)`` of int64 NumPy arrays, pad id 0.

    src (B, S): tokens in [3, V). tgt_in (B, T) starts with BOS (1) and is tgt_out
    (B, T) shifted right by one (teacher forcing). The last ``n_padded`` sentences
    have only ``pad_len`` real tokens (default 3/4 of the length, e.g. 48 of 64) in
    source and target; the rest is padding (0)."""
    import numpy as np

    if V < 4:
        raise ValueError("make_batch: need V >= 4 (pad, bos, eos and one word)")
    rng = np.random.default_rng(seed)
    src = rng.integers(3, V, size=(B, S), dtype=np.int64)           # (B, S)
    words = rng.integers(3, V, size=(B, T + 1), dtype=np.int64)     # (B, T+1)
    words[:, 0] = BOS_ID
    tgt_in = words[:, :-1].copy()                                    # (B, T)
    tgt_out = words[:, 1:].copy()                                    # (B, T)
    for b in range(max(0, B - n_padded), B):
        ls = pad_len if pad_len is not None else (3 * S) // 4
        lt = pad_len if pad_len is not None else (3 * T) // 4
        src[b, ls:] = PAD_ID
        tgt_out[b, lt - 1] = EOS_ID
        tgt_out[b, lt:] = PAD_ID
        tgt_in[b, lt:] = PAD_ID
    return src, tgt_in, tgt_out


def batch_tokens(src, tgt_out):
    """Non-pad token counts of a batch: ``{"src": .., "tgt": .., "total": ..}``."""
    n_src, n_tgt = int((src != PAD_ID).sum()), int((tgt_out != PAD_ID).sum())
    return {"src": n_src, "tgt": n_tgt, "total": n_src + n_tgt}


# ----------------------------------------------------------------------------- FLOPs

def forward_flops(preset, B, S, T, V, breakdown=False):
    """Matmul FLOPs of one forward pass, 2*m*n*k per (m, k) @ (k, n) product.

    With d = d_model, f = d_ff, N layers per stack, counting every position (padding
    included, as the dense arrays are computed anyway):
      encoder, per layer:   proj   4 * 2*B*S*d*d            (W_q, W_k, W_v, W_o)
                            attn   2 * 2*B*S*S*d            (Q K^T and P V, all heads)
                            ffn    2 * 2*B*S*d*f
      decoder, per layer:   self   4 * 2*B*T*d*d  +  2 * 2*B*T*T*d
                            cross  2 * 2*B*T*d*d  (W_q, W_o on the target)
                                 + 2 * 2*B*S*d*d  (W_k, W_v on the encoder memory)
                                 + 2 * 2*B*T*S*d  (Q K^T and P V)
                            ffn    2 * 2*B*T*d*f
      output projection:    2*B*T*d*V                       (logits = h @ E^T)
    Elementwise work (softmax, LayerNorm, dropout, residuals, embedding lookups, the
    loss) is ignored. Returns an int, or a dict of parts (with "total") if
    ``breakdown``."""
    c = _config(preset)
    N, d, f = c["N"], c["d_model"], c["d_ff"]
    parts = {
        "encoder_proj": N * 4 * 2 * B * S * d * d,
        "encoder_attn": N * 2 * 2 * B * S * S * d,
        "encoder_ffn": N * 2 * 2 * B * S * d * f,
        "decoder_self_proj": N * 4 * 2 * B * T * d * d,
        "decoder_self_attn": N * 2 * 2 * B * T * T * d,
        "decoder_cross_proj": N * (2 * 2 * B * T * d * d + 2 * 2 * B * S * d * d),
        "decoder_cross_attn": N * 2 * 2 * B * T * S * d,
        "decoder_ffn": N * 2 * 2 * B * T * d * f,
        "output_proj": 2 * B * T * d * V,
    }
    parts["total"] = sum(parts.values())
    return parts if breakdown else parts["total"]


def train_flops(preset, B=8, S=64, T=64, V=8192):
    """Model FLOPs of one training step = 3 x :func:`forward_flops` (see its docstring).

    The usual convention: the backward pass costs two matmuls per forward matmul (one
    for the input gradient, one for the weight gradient), so a step is 3x forward."""
    return 3 * forward_flops(preset, B, S, T, V)


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

    class EncoderLayer(nn.Module):
        """x = LN(x + Dropout(SelfAttn(x))); x = LN(x + Dropout(FFN(x)))."""

        def __init__(self, d_model, h, d_ff, P_drop, sdpa):
            super().__init__()
            self.self_attn = MultiHeadAttention(d_model, h, sdpa)
            self.ffn = FeedForward(d_model, d_ff)
            self.ln1, self.ln2 = nn.LayerNorm(d_model, eps=1e-5), nn.LayerNorm(d_model, eps=1e-5)
            self.drop = nn.Dropout(P_drop)

        def forward(self, x, src_mask):
            x = self.ln1(x + self.drop(self.self_attn(x, x, src_mask)))
            return self.ln2(x + self.drop(self.ffn(x)))

    class DecoderLayer(nn.Module):
        """Masked self-attention, cross-attention on the memory, FFN; each post-LN."""

        def __init__(self, d_model, h, d_ff, P_drop, sdpa):
            super().__init__()
            self.self_attn = MultiHeadAttention(d_model, h, sdpa)
            self.cross_attn = MultiHeadAttention(d_model, h, sdpa)
            self.ffn = FeedForward(d_model, d_ff)
            self.ln1, self.ln2, self.ln3 = (nn.LayerNorm(d_model, eps=1e-5) for _ in range(3))
            self.drop = nn.Dropout(P_drop)

        def forward(self, y, memory, tgt_mask, src_mask):
            y = self.ln1(y + self.drop(self.self_attn(y, y, tgt_mask)))
            y = self.ln2(y + self.drop(self.cross_attn(y, memory, src_mask)))
            return self.ln3(y + self.drop(self.ffn(y)))

    class Transformer(nn.Module):
        """Encoder-decoder with one embedding E tied three ways. forward -> logits."""

        def __init__(self, vocab_size, N, d_model, h, d_ff, P_drop, sdpa=False, max_len=1024):
            super().__init__()
            self.d_model, self.vocab_size = d_model, vocab_size
            self.E = nn.Parameter(torch.empty(vocab_size, d_model))     # (V, d_model)
            self.encoder = nn.ModuleList(
                EncoderLayer(d_model, h, d_ff, P_drop, sdpa) for _ in range(N))
            self.decoder = nn.ModuleList(
                DecoderLayer(d_model, h, d_ff, P_drop, sdpa) for _ in range(N))
            self.drop = nn.Dropout(P_drop)
            self.register_buffer("pe", positional_encoding(max_len, d_model), persistent=False)

        def embed(self, tokens):
            """E[tokens] * sqrt(d_model) + PE, then dropout. §3.4, §3.5."""
            L = tokens.shape[1]
            if L > self.pe.shape[0]:
                self.pe = positional_encoding(L, self.d_model).to(self.pe.device)
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

    def positional_encoding(max_len, d_model):
        """PE(pos, 2i) = sin(pos / 10000^(2i/d_model)), PE(pos, 2i+1) = cos(same)."""
        pos = torch.arange(max_len, dtype=torch.float32)[:, None]       # (L, 1)
        two_i = torch.arange(0, d_model, 2, dtype=torch.float32)        # (d/2,)
        angle = pos / torch.pow(10000.0, two_i / d_model)               # (L, d/2)
        pe = torch.zeros(max_len, d_model)                               # (L, d)
        pe[:, 0::2] = torch.sin(angle)
        pe[:, 1::2] = torch.cos(angle[:, : d_model // 2])
        return pe

    return Transformer, positional_encoding


def build(preset, vocab_size, seed=0, sdpa=False, dropout=None):
    """A float32 CPU model for ``preset`` (name or config dict), seeded.

    ``sdpa=True`` uses torch's fused scaled_dot_product_attention instead of explicit
    matmuls + softmax; ``dropout`` overrides the preset's P_drop. Init: E ~ N(0,
    d_model^-1/2) (so E[tok] * sqrt(d_model) has unit scale), Xavier-uniform linear
    weights, zero biases."""
    import torch
    from torch import nn

    cfg = _config(preset)
    if dropout is not None:
        cfg["P_drop"] = dropout
    Transformer, _ = _torch_classes()
    torch.manual_seed(seed)
    model = Transformer(vocab_size, cfg["N"], cfg["d_model"], cfg["h"], cfg["d_ff"],
                        cfg["P_drop"], sdpa=sdpa)
    with torch.no_grad():
        nn.init.normal_(model.E, std=cfg["d_model"] ** -0.5)
        for m in model.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
    return model.float()


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

    if __package__:
        from benchmarks import common
    else:  # run as a script: python benchmarks/torch_reference.py
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
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
        "benchmark": "torch_reference", "framework": f"torch {torch.__version__}",
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
        print(f"torch reference, preset {args.preset} {_config(args.preset)}, "
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
