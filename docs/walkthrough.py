# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Backpropagation through a Transformer, by hand
#
# This walkthrough is for someone who knows the chain rule but has never taken a
# Transformer apart. It runs top to bottom on a CPU in under a minute:
#
#     python docs/walkthrough.py                 # pictures go to runs/walkthrough/
#     python docs/walkthrough.py --out docs/img  # remakes the docs' pictures
#
# and, because it is written in jupytext's "percent" format, it also opens as a
# notebook (`jupytext --to notebook docs/walkthrough.py`).
#
# 1. One attention head, forward, on the 4-token sentence "the cat sat <pad>".
# 2. The same head, backward, step by step, checked two ways.
# 3. A real multi-head attention layer and a whole encoder layer, with shapes and
#    gradient checks.
# 4. Planted bugs, and how a gradient check catches them.
# 5. Training a tiny Transformer to reverse sequences.
# 6. Looking at what it learned: its cross-attention map.
#
# Every formula used here is derived in [derivations.md](derivations.md). The
# notation follows the code: `dX` always means dL/dX, the gradient of the final
# scalar loss L with respect to the array X, and has X's shape.

# %%
import argparse
import os
import sys
import time
from pathlib import Path

# Our matrices are tiny: starting BLAS threads costs more than it saves (and on a
# busy machine it can make every matmul much slower). This must happen before NumPy
# is first imported; it does nothing if you already set these variables.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


def _repo_root():
    """The folder holding npformer/, so the script runs from a clone without installing."""
    here = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
    for folder in (here, *here.parents):
        if (folder / "npformer" / "__init__.py").is_file():
            return folder
    return None


ROOT = _repo_root()
if ROOT is not None and str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from npformer import ops  # noqa: E402
from npformer.verify.gradcheck import check_gradients  # noqa: E402

# Pictures go to --out DIR, by default runs/walkthrough/ (which git ignores). As a
# notebook, the kernel's own arguments are ignored and the default applies.
_parser = argparse.ArgumentParser(description="Backpropagation through a Transformer, by hand.")
_parser.add_argument("--out", default=os.path.join("runs", "walkthrough"),
                     help="folder for the pictures (default runs/walkthrough; docs/img remakes the docs')")
OUT = Path(_parser.parse_known_args()[0].out)
np.set_printoptions(precision=3, suppress=True, linewidth=110)
T_START = time.perf_counter()


def show(title, M, rows, cols, width=7):
    """Print matrix M as a grid with row and column labels (-inf shown as such)."""
    print(title)
    print(" " * 8 + "".join(f"{c:>{width}}" for c in cols))
    for r, row in zip(rows, M):
        cells = ("-inf" if np.isneginf(v) else f"{v + 0.0:.2f}" for v in row)  # + 0.0: no "-0.00"
        print(f"{r:>8}" + "".join(f"{c:>{width}}" for c in cells))
    print()


def report(result):
    """One line for a GradCheckResult: pass/FAIL, the worst relative error, the worst input; then
    what the check reads in each wrong gradient's error."""
    worst = max(result.errors, key=result.errors.get) if result.errors else "-"
    verdict = "passed" if result.passed else "FAILED"
    print(f"gradient check {result.name!r}: {verdict}, max relative error {result.max_rel_error:.1e} "
          f"(worst: {worst}){'; ' + '; '.join(result.problems) if result.problems else ''}")
    for finding in result.findings:
        print(finding.indented())


# %% [markdown]
# ## 1. One attention head, forward
#
# Our sentence has three words and one padding token, which stands in for the
# empty slots a short sentence gets when it is batched with longer ones. Each
# token id picks a row of the embedding matrix `E` (scaled by sqrt(d_model), paper
# §3.4); the positional encoding then adds a fixed pattern that tells position 0
# from position 1 (§3.5). Everything is tiny: `d_model = 4` and a single head with
# `d_k = 4`, and everything is float64 so that we can check gradients to 1e-7.

# %%
vocab = ["<pad>", "the", "cat", "sat"]
words = ["the", "cat", "sat", "<pad>"]
ids = np.array([[vocab.index(w) for w in words]])  # (B=1, T=4) token ids: [[1 2 3 0]]
T, d_model, d_k = 4, 4, 4

rng = np.random.default_rng(0)
E = rng.normal(0.0, d_model ** -0.5, (len(vocab), d_model))  # (vocab size, d_model) embedding matrix
x, _ = ops.embedding_forward(ids, E, scale=d_model ** 0.5)  # (1, T, d_model)
x, _ = ops.positional_forward(x, ops.sinusoidal_table(16, d_model, np, "float64"))
x = x[0]  # (T, d_model): one sentence, one row per token
print("token ids:", ids[0], " x = sqrt(d_model) E[ids] + PE, shape", x.shape)
print(x, "\n")

# %% [markdown]
# Attention (paper §3.2.1, Eq. 1) gives every token three roles, each a linear map
# of its vector x: a **query** q ("what am I looking for?"), a **key** k ("what do
# I contain?") and a **value** v ("what do I hand over if chosen?"):
#
#     Q = x W_q,   K = x W_k,   V = x W_v          each (T, d_k)
#
# The score of query i against key j is their dot product, divided by sqrt(d_k):
#
#     S = Q K^T / sqrt(d_k)                        (T, T): row = query, column = key
#
# Why divide? A dot product of d_k random unit-variance numbers has variance d_k;
# dividing by sqrt(d_k) brings it back to about 1, so the softmax below does not
# saturate (where its gradient would vanish) as d_k grows.

# %%
W_q, W_k, W_v = (rng.normal(0.0, d_model ** -0.5, (d_model, d_k)) for _ in range(3))
Q, K, V = x @ W_q, x @ W_k, x @ W_v  # each (T, d_k)
scale = 1.0 / np.sqrt(d_k)  # the code's name for 1/sqrt(d_k)
S = (Q @ K.T) * scale  # (T, T)
show("scores S = Q K^T / sqrt(d_k)   (row: query, column: key)", S, words, words)

# %% [markdown]
# The `<pad>` token is not a word, so no query may attend to it. The mask is True
# where attending is allowed; masked scores become -inf, and exp(-inf) = 0. Note
# that only the *key* column is masked: the `<pad>` query row still computes an
# output, which is harmless because the loss ignores padded positions.

# %%
mask = ids[0] != 0  # (T,) True for real tokens: which keys may be attended to
S_masked = np.where(mask[None, :], S, -np.inf)  # (T, T)
show("masked scores (the <pad> column is -inf)", S_masked, words, words)

# %% [markdown]
# A softmax along each row turns scores into weights that are positive and sum
# to one; token i's output is then the weighted average of the value vectors:
#
#     P = softmax(S_masked) row by row,   out = P V    (T, d_k)

# %%
P = np.exp(S_masked - S_masked.max(axis=1, keepdims=True))  # subtracting the row max avoids overflow
P /= P.sum(axis=1, keepdims=True)  # (T, T)
out = P @ V  # (T, d_k)
show("attention weights P (each row sums to 1; the <pad> column is exactly 0)", P, words, words)
print("row sums:", P.sum(axis=1))
print("out = P V, shape", out.shape, "\n")

# %% [markdown]
# npformer's `attention_forward` does the same for a whole batch of sentences and
# heads at once, on arrays of shape (B, h, T, d_k). We add the two leading axes
# (B = 1, h = 1) and compare.

# %%
as4d = lambda a: np.ascontiguousarray(a[None, None])  # (T, d) -> (1, 1, T, d)  # noqa: E731
mask4d = mask[None, None, None, :]  # (1, 1, 1, T): broadcasts over heads and queries
out_npf, cache = ops.attention_forward(as4d(Q), as4d(K), as4d(V), mask4d)
print("npformer attention_forward: max |P - cache.P|  =", np.abs(P - cache.P[0, 0]).max())
print("                            max |out - out_npf| =", np.abs(out - out_npf[0, 0]).max(), "\n")

# %% [markdown]
# ## 2. The same head, backward
#
# Backpropagation answers: how much does the loss L change when we nudge each
# entry of Q, K and V (and then of x and of the weights)? It starts from the
# gradient with respect to the head's output, `dout = dL/dout`, which in a real
# network the layers above hand down. Here we simply make one up: a random
# array, i.e. we pretend L = sum(out * dout). (Random, not all ones: with
# ones, some wrong gradients sum to the right answer and go unnoticed.)
#
# We walk the forward equations backwards, one line at a time. Each forward line
# `y = f(a, b)` becomes "da, db from dy" via the chain rule,
# `da_i = sum_j dy_j * d y_j / d a_i`.

# %%
dout = np.random.default_rng(1).standard_normal((T, d_k))  # (T, d_k) = dL/dout

# %% [markdown]
# **Step 1: `out = P V`.** A matrix product: `out[i, d] = sum_j P[i, j] V[j, d]`.
# Differentiating by `P[i, j]` leaves `V[j, d]`; by `V[j, d]` leaves `P[i, j]`. Summing
# over the outputs each entry touches gives two matrix products:
#
#     dP = dout V^T     (T, T)          dV = P^T dout     (T, d_k)

# %%
dP = dout @ V.T  # (T, T)
dV = P.T @ dout  # (T, d_k)
show("dP = dout V^T", dP, words, words)

# %% [markdown]
# **Step 2: the softmax.** Each row p = softmax(s) has the Jacobian
# `dp_i/ds_j = p_i (delta_ij - p_j)`. Multiplying by it without ever building it
# (derivations.md §3.2) gives, row by row,
#
#     dS = P * (dP - sum_j(dP * P))
#
# Two things to see in the result: the `<pad>` column is exactly zero (because P
# is zero there: a masked key gets no gradient), and every row sums to zero
# (softmax ignores adding the same number to a whole row of scores). Strictly,
# this is the gradient of the *masked* scores; since it is zero wherever the
# mask replaced a score, it is also the gradient of S itself.

# %%
dS = P * (dP - (dP * P).sum(axis=1, keepdims=True))  # (T, T)
show("dS = P * (dP - rowsum(dP * P))", dS, words, words)
print(f"largest |row sum| of dS: {np.abs(dS.sum(axis=1)).max():.0e} (zero up to rounding)\n")

# %% [markdown]
# **Step 3: `S = Q K^T * scale`.** Another matrix product, with the constant
# `scale = 1/sqrt(d_k)` along for the ride:
#
#     dQ = dS K * scale     (T, d_k)          dK = dS^T Q * scale     (T, d_k)
#
# The `<pad>` row of `dK` and of `dV` is zero: as a key and as a value, the
# padding token receives no gradient at all.

# %%
dQ = dS @ K * scale  # (T, d_k)
dK = dS.T @ Q * scale  # (T, d_k)
print("dK (row 3 is <pad>):\n", dK)
print("dV (row 3 is <pad>):\n", dV, "\n")

# %% [markdown]
# **Step 4: the projections `Q = x W_q`, `K = x W_k`, `V = x W_v`.** Each is a
# linear map: `dW = x^T dQ` and `dx = dQ W_q^T`. But x was used *three* times,
# so by the multivariable chain rule its gradient is the sum of three paths:
#
#     dx = dQ W_q^T + dK W_k^T + dV W_v^T

# %%
dW_q, dW_k, dW_v = x.T @ dQ, x.T @ dK, x.T @ dV  # each (d_model, d_k)
dx = dQ @ W_q.T + dK @ W_k.T + dV @ W_v.T  # (T, d_model)
print("dx =\n", dx, "\n")

# %% [markdown]
# **Check 1: against npformer's `attention_backward`.** It must return the same
# dQ, dK, dV as our hand computation, up to rounding.

# %%
dQ_npf, dK_npf, dV_npf = ops.attention_backward(as4d(dout), cache)
for name, mine, theirs in (("dQ", dQ, dQ_npf), ("dK", dK, dK_npf), ("dV", dV, dV_npf)):
    print(f"hand {name} vs attention_backward: max difference {np.abs(mine - theirs[0, 0]).max():.1e}")
print()

# %% [markdown]
# **Check 2: against finite differences.** Agreement with npformer only shows
# that we made the same mistakes, if any. The real test is numerical:
# nudge one input entry by +-h, rerun the forward, and see how L = sum(out * dout)
# moves:
#
#     dL/da ~ (L(a + h) - L(a - h)) / (2 h)
#
# `check_gradients(forward, backward, inputs)` does this for every entry of every
# float input, in float64 with h = 1e-6, and reports the worst relative error
# (1e-8 or smaller for a correct backward, of order 0.1 to 1 for a wrong one).

# %%
result = check_gradients(ops.attention_forward, ops.attention_backward,
                         dict(Q=as4d(Q), K=as4d(K), V=as4d(V), mask=mask4d), "attention, one head")
report(result)
print("  per input:", {k: f"{v:.1e}" for k, v in result.errors.items()}, "\n")

# %% [markdown]
# The checker works for any function that follows npformer's contract:
# `forward(**inputs) -> (y, cache)` and `backward(dy, cache) -> one gradient per
# float input, in order`. So we can check our whole hand-written head, x and
# weights included, by packaging steps 1-4 as such a pair. (The mask is boolean:
# it passes straight through and gets no gradient.)

# %%
def head_forward(x, W_q, W_k, W_v, mask):
    """One attention head on one sentence: x (T, d_model) -> out (T, d_k)."""
    Q, K, V = x @ W_q, x @ W_k, x @ W_v
    S = np.where(mask[None, :], Q @ K.T / np.sqrt(Q.shape[-1]), -np.inf)
    P = np.exp(S - S.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    return P @ V, (x, W_q, W_k, W_v, Q, K, V, P)


def head_backward(dout, cache):
    """Steps 1-4 above. Returns (dx, dW_q, dW_k, dW_v)."""
    x, W_q, W_k, W_v, Q, K, V, P = cache
    dP, dV = dout @ V.T, P.T @ dout
    dS = P * (dP - (dP * P).sum(axis=1, keepdims=True))
    scale = 1.0 / np.sqrt(Q.shape[-1])
    dQ, dK = dS @ K * scale, dS.T @ Q * scale
    dx = dQ @ W_q.T + dK @ W_k.T + dV @ W_v.T
    return dx, x.T @ dQ, x.T @ dK, x.T @ dV


report(check_gradients(head_forward, head_backward,
                       dict(x=x.copy(), W_q=W_q, W_k=W_k, W_v=W_v, mask=mask), "hand-written head"))
print()

# %% [markdown]
# ## 3. Multi-head attention and a whole encoder layer
#
# A real layer runs h heads side by side (paper §3.2.2). npformer does not loop
# over heads: the h projections sit side by side in one (d_model, d_model)
# matrix, and a reshape plus a transpose splits the result into heads,
#
#     (B, T, d_model) -> (B, T, h, d_k) -> (B, h, T, d_k)
#
# After attention, the inverse transpose and reshape merge the heads again, and
# an output projection W_o mixes them. In the backward, a permutation's gradient
# is the inverse permutation, so split and merge simply swap roles.
#
# Self-attention fuses the three projections into one matmul against
# [W_q | W_k | W_v], of shape (d_model, 3 d_model). Here: a batch of B = 2
# sentences of T = 5 tokens, the second one ending in two `<pad>` tokens.

# %%
from npformer.model.masks import padding_mask  # noqa: E402

B, T, d_model, h = 2, 5, 8, 2
rng = np.random.default_rng(2)
ids = np.array([[5, 6, 7, 8, 9],
                [5, 6, 7, 0, 0]])  # (B, T); 0 is <pad>
mask = padding_mask(ids)  # (B, 1, 1, T): key t of sentence b is a real token
x = rng.standard_normal((B, T, d_model))  # (B, T, d_model)
p = {name: (rng.standard_normal((d_model, d_model)) / np.sqrt(d_model) if name.startswith("W")
            else 0.1 * rng.standard_normal(d_model))
     for name in ops.multihead.PARAM_NAMES}  # W_q, b_q, W_k, b_k, W_v, b_v, W_o, b_o
y, mh_cache = ops.self_attention_forward(x, p, h, mask)
print("x                        ", x.shape, "         (B, T, d_model)")
print("fused [W_q | W_k | W_v]  ", mh_cache.proj_in.linear.W.shape, "            (d_model, 3 d_model)")
print("Q, K, V after the split  ", mh_cache.attn.Q.shape, "   (B, h, T, d_k), d_k = d_model / h =", d_model // h)
print("attention weights P      ", mh_cache.attn.P.shape, "   (B, h, T, T)")
print("output y                 ", y.shape, "         (B, T, d_model)\n")
show("sentence 2, head 0: weights P (the two <pad> keys get 0)", mh_cache.attn.P[1, 0],
     [f"q{t}" for t in range(T)], [f"k{t}" for t in range(T)])

result = check_gradients(ops.self_attention_forward, ops.self_attention_backward,
                         dict(x=x, p=p, h=h, mask=mask), "multi-head self-attention")
report(result)
print("  per input:", {k: f"{v:.0e}" for k, v in result.errors.items()}, "\n")

# %% [markdown]
# One of those errors is not like the others: `p.b_k`, the key bias. Its exact
# gradient is zero (it adds `q . b_k` to every score in a row, and softmax ignores
# a shift of the whole row), so there is nothing but rounding noise to compare.
#
# An **encoder layer** (Figure 1, left) wraps two sublayers, self-attention and a
# position-wise feed-forward net, each as `LayerNorm(x + Dropout(Sublayer(x)))`
# ("Add & Norm"). Its parameters are a flat dict. We perturb the initial values
# so that LayerNorm's gamma is not 1 and the biases are not 0: a check at the
# initial values could miss bugs that only matter when they differ (section 4
# shows one). Dropout is on; every forward call draws its masks from a fresh
# generator with the same seed, so the function being differentiated is fixed.

# %%
from npformer.model.config import TransformerConfig  # noqa: E402
from npformer.model.encoder import encoder_layer_backward, encoder_layer_forward  # noqa: E402
from npformer.model.params import init_params  # noqa: E402
from npformer.model.sublayer import subdict  # noqa: E402

cfg_small = TransformerConfig(vocab_size=13, d_model=d_model, h=h, d_ff=16, n_layers=1, p_drop=0.1, max_len=16)
params = init_params(cfg_small, seed=0, dtype="float64", backend="numpy")
params = {k: v + 0.3 * rng.standard_normal(v.shape) for k, v in params.items()}  # gamma != 1, biases != 0
enc_p = subdict(params, "encoder.0.")  # the layer's own parameters, prefix removed
print("encoder layer parameters:")
for name, a in enc_p.items():
    print(f"  {name:<18} {a.shape}")


def enc_forward(x, p):
    return encoder_layer_forward(x, p, cfg_small.h, mask, cfg_small.p_drop, rng=np.random.default_rng(3))


y, enc_cache = enc_forward(x, enc_p)
print("\nshapes through the layer:")
print("  input x                     ", x.shape)
print("  self-attention weights P    ", enc_cache.self_attn.weights.shape)
print("  FFN hidden layer (ReLU)     ", enc_cache.ffn.relu.positive.shape, "  (B, T, d_ff)")
print("  output                      ", y.shape, "\n")
result = check_gradients(enc_forward, encoder_layer_backward, dict(x=x, p=enc_p), "encoder layer")
report(result)
print(f"  ({len(result.errors)} tensors, every entry checked)\n")

# %% [markdown]
# ## 4. Planted bugs, and how the check catches them
#
# Here are three classic mistakes in hand-written backward passes; the first one
# really shipped in a published NumPy Transformer. Each is a few characters away
# from the correct code.
#
# **Bug 1: LayerNorm's backward without gamma.** LayerNorm computes
# `y = gamma * xhat + beta`, so the gradient reaching `xhat` is `g = dy * gamma`.
# Forgetting gamma gives a gradient that is right only when gamma = 1, which is
# exactly its initial value: a check run on freshly initialised parameters
# cannot see the bug.

# %%
def layernorm_backward_without_gamma(dy, cache):
    xhat, rstd, gamma = cache
    d = xhat.shape[-1]
    dbeta = dy.reshape(-1, d).sum(axis=0)
    dgamma = (dy * xhat).reshape(-1, d).sum(axis=0)
    g = dy  # BUG: should be dy * gamma
    dx = rstd * (g - g.mean(axis=-1, keepdims=True) - xhat * (g * xhat).mean(axis=-1, keepdims=True))
    return dx, dgamma, dbeta


ln_inputs = dict(x=rng.standard_normal((B, T, d_model)),
                 gamma=1.0 + 0.5 * rng.standard_normal(d_model),  # gamma != 1
                 beta=rng.standard_normal(d_model))
ln_ones = dict(ln_inputs, gamma=np.ones(d_model))  # gamma == 1: the bug is invisible

correct = check_gradients(ops.layernorm_forward, ops.layernorm_backward, ln_inputs, "layernorm (correct)")
buggy = check_gradients(ops.layernorm_forward, layernorm_backward_without_gamma, ln_inputs,
                        "layernorm without gamma, gamma != 1")
blind = check_gradients(ops.layernorm_forward, layernorm_backward_without_gamma, ln_ones,
                        "layernorm without gamma, gamma == 1")
for r in (correct, buggy, blind):
    report(r)
print(f"planted bug 'layernorm without gamma': {'caught' if not buggy.passed else 'MISSED'} "
      f"(error in dx: {buggy.errors['x']:.2f}); with gamma == 1 it would be "
      f"{'missed' if blind.passed else 'caught'}\n")

# %% [markdown]
# **Bug 2: attention's backward without the 1/sqrt(d_k).** The forward scales the
# scores, so `dQ` and `dK` must be scaled too. The check blames exactly those two.

# %%
def attention_backward_without_scale(dout, cache):
    Q, K, V, P, scale = cache
    dV = P.swapaxes(-1, -2) @ dout
    dP = dout @ V.swapaxes(-1, -2)
    dS = P * (dP - (dP * P).sum(axis=-1, keepdims=True))  # BUG: forgot dS *= scale
    return dS @ K, dS.swapaxes(-1, -2) @ Q, dV


att_inputs = dict(Q=rng.standard_normal((B, h, T, d_model // h)), K=rng.standard_normal((B, h, T, d_model // h)),
                  V=rng.standard_normal((B, h, T, d_model // h)), mask=mask)
buggy = check_gradients(ops.attention_forward, attention_backward_without_scale, att_inputs,
                        "attention without 1/sqrt(d_k)")
report(buggy)
print("  per input:", {k: f"{v:.2f}" for k, v in buggy.errors.items()})
report(check_gradients(ops.attention_forward, ops.attention_backward, att_inputs, "attention (correct)"))
print(f"planted bug 'attention without 1/sqrt(d_k)': {'caught' if not buggy.passed else 'MISSED'}\n")

# %% [markdown]
# **Bug 3: the embedding's backward as `dE[ids] += dy`.** Row v of dE must
# collect the gradient of *every* position holding token v. NumPy runs
# `dE[ids] += dy` as `dE[ids] = dE[ids] + dy`: when a token repeats, the writes
# to its row overwrite each other and only the last one survives. Our batch
# repeats token 5, 6 and 7 (both sentences start with them).

# %%
def embedding_backward_fancy_index(dy, cache):
    ids, V, scale = cache
    dE = np.zeros((V, dy.shape[-1]))
    dE[ids] += scale * dy  # BUG: repeated ids are not accumulated
    return dE


emb_inputs = dict(ids=ids, E=rng.standard_normal((13, d_model)), scale=float(np.sqrt(d_model)))
buggy = check_gradients(ops.embedding_forward, embedding_backward_fancy_index, emb_inputs,
                        "embedding with dE[ids] += dy")
report(buggy)
report(check_gradients(ops.embedding_forward, ops.embedding_backward, emb_inputs, "embedding (correct)"))
print(f"planted bug 'embedding without scatter-add': {'caught' if not buggy.passed else 'MISSED'}\n")

# %% [markdown]
# The lesson: a gradient check only catches what its inputs exercise. Use float64,
# a random upstream gradient, gamma != 1, repeated tokens, a batch larger than
# one and masks that really mask something. Training would not
# reliably reveal such bugs either: Adam is blind to a constant factor on a
# gradient (one off by 1/batch trains just as well), and a model with a slightly
# wrong gradient often still learns, only worse.
#
# ## 5. Training a tiny Transformer to reverse sequences
#
# Now the whole model: encoder, decoder, tied embeddings, label-smoothed loss,
# Adam and the warmup schedule, all with the backward passes above. The task is
# to read a random sequence of symbols and output it reversed. Ids 0-3 are
# `<pad>`, `<s>` (BOS), `</s>` (EOS) and `<unk>`; symbols are 4..V-1. A batch holds
#
#     src     = x                 what the encoder reads
#     tgt_in  = <s> reversed(x)   what the decoder reads: the correct previous outputs
#     tgt_out = reversed(x) </s>  what it must predict at each position
#
# all padded with 0 to the longest sequence in the batch. Feeding the decoder the
# correct previous tokens ("teacher forcing") lets one forward pass train every
# position at once; the look-ahead mask stops position t from peeking at t+1.

# %%
from npformer.decode.greedy import greedy_decode  # noqa: E402
from npformer.train import Schedule, init_state, noam_lr, train  # noqa: E402
from npformer.train.tasks import SequenceTask, evaluate_exact_match  # noqa: E402

task = SequenceTask("reverse", vocab_size=14, min_len=3, max_len=8)
example = task.batch(seed=0, step=1, batch_size=3)
print("a batch of 3:")
for name in ("src", "tgt_in", "tgt_out"):
    print(f"  {name:<8}", str(getattr(example, name)).replace("\n", "\n" + " " * 11))
print()

# %% [markdown]
# A small model: 2 encoder and 2 decoder layers, d_model = 32, 4 heads, with the
# paper's label smoothing 0.1 and dropout 0.1. The learning rate follows the
# paper's schedule, `lrate = d_model^-0.5 * min(step^-0.5, step * warmup^-1.5)`:
# it rises linearly for `warmup` steps, then decays like 1/sqrt(step). The paper
# warms up for 4000 steps; we train for only 600, so we warm up for 100.
#
# Each step of `train` calls `loss_and_grads` (the forward pass, the
# label-smoothed cross-entropy, and `transformer_backward`: every derivation in
# derivations.md, chained), then takes one Adam step.

# %%
cfg = TransformerConfig(vocab_size=task.vocab_size, d_model=32, h=4, d_ff=64, n_layers=2,
                        p_drop=0.1, eps_ls=0.1, max_len=32)
STEPS, WARMUP, BATCH = 600, 100, 64
print("learning rate at steps 1, 50, 100, 300, 600:",
      ", ".join(f"{noam_lr(s, cfg.d_model, WARMUP):.4f}" for s in (1, 50, 100, 300, 600)))

state = init_state(cfg, seed=0, backend="numpy")  # float32 parameters and Adam's moments
t0 = time.perf_counter()
train(state, cfg, task.batches(seed=0, batch_size=BATCH), steps=STEPS,
      schedule=Schedule("noam", WARMUP, d_model=cfg.d_model), log_every=50, progress=False)
train_seconds = time.perf_counter() - t0
print(f"trained {state.step} steps of {BATCH} sequences in {train_seconds:.1f} s\n")

# %% [markdown]
# The loss, averaged over each window of 50 steps. With label smoothing the
# target is not one-hot: it keeps `eps_ls / V` on every token. So even a perfect
# model cannot reach 0; the floor is the entropy of the smoothed target,
# `-sum_v q_v log q_v` (derivations.md §6).

# %%
eps_ls, n_vocab = cfg.eps_ls, cfg.vocab_size
q = np.full(n_vocab, eps_ls / n_vocab)  # the smoothed target: eps_ls / V on every token ...
q[0] += 1 - eps_ls  # ... plus 1 - eps_ls on the true one (which one does not change the entropy)
floor = float(-(q * np.log(q)).sum())
losses = [(r["step"], r["loss"]) for r in state.history if r["kind"] == "train"]
print(" step   loss")
for step, loss in losses:
    print(f"{step:5d}  {loss:5.3f}  " + "#" * int(round(20 * loss)))
print(f"floor  {floor:5.3f}  (label-smoothing entropy)")
print(f"loss fell from {losses[0][1]:.3f} to {losses[-1][1]:.3f}\n")

# %% [markdown]
# Loss is not the goal, though: can it actually reverse a sequence it has never
# seen? Greedy decoding feeds the model's own most probable token back in, one
# step at a time, until it emits `</s>`.

# %%
heldout = task.heldout(seed=0, n=200)
exact = evaluate_exact_match(state.params, cfg, heldout, greedy_decode)
print(f"held-out exact match: {exact:.1%} of {len(heldout[0])} sequences reversed perfectly\n")

from npformer.data.batching import pad_sequences  # noqa: E402

xs, ys = heldout[0][:5], heldout[1][:5]
src = pad_sequences(xs, cfg.pad_id)  # (5, S) int64, padded with 0
outputs = greedy_decode(state.params, cfg, src, max_len=cfg.max_len)  # at most max_len tokens each
for src, want, got in zip(xs, ys, outputs):
    print(f"input {str(src):<28} output {str(got):<28} {'ok' if got == want else 'WRONG, wanted ' + str(want)}")
print()

# %% [markdown]
# ## 6. What did it learn? The cross-attention map
#
# In the decoder's cross-attention, decoder position t (query) looks at the
# encoder's source positions (keys). To write the t-th output of a reversal,
# the model needs source token S-1-t, so the weights should light up along the
# **anti-diagonal**. The weights are in the forward cache: `transformer_forward`
# returns a cache whose `.decoder.layers[i].cross_attn.weights` is (B, h, T, S).

# %%
from npformer.model.transformer import transformer_forward  # noqa: E402

src_ids = max(heldout[0], key=lambda seq: (len(seq), len(set(seq))))  # long, few repeated tokens
S_len = len(src_ids)
src = np.array([src_ids])  # (1, S)
tgt_in = np.array([[cfg.bos_id] + src_ids[::-1]])  # (1, T): <s> + the reversed sequence
_, fwd_cache = transformer_forward(state.params, cfg, src, tgt_in)  # no rng: dropout off
P_cross = fwd_cache.decoder.layers[-1].cross_attn.weights[0]  # (h, T, S), last decoder layer
P_mean = P_cross.mean(axis=0)  # (T, S): average over the heads
rows = ["<s>"] + [str(t) for t in src_ids[::-1]]
show(f"last decoder layer, cross-attention averaged over {cfg.h} heads "
     "(row: decoder input, column: source token)", P_mean, rows, [str(t) for t in src_ids])
hits = sum(int(P_mean[t].argmax()) == S_len - 1 - t for t in range(S_len))
print(f"anti-diagonal: in {hits} of {S_len} output positions the strongest weight is on source token S-1-t\n")

# %% [markdown]
# Row `<s>` is where the model writes its first output, the last source token;
# row "a" is the decoder having just read token a, about to write the token that
# came before a in the source. The last row, which must produce `</s>`, has no
# source token to copy. Below, the same map for every head and layer, saved as a
# picture when matplotlib is installed.

# %%
try:
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt
except ImportError:
    plt = None
    print("matplotlib is not installed: no pictures (pip install matplotlib)")

if plt is not None:
    OUT.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(cfg.n_layers, cfg.h, figsize=(1.6 * cfg.h + 1, 1.6 * cfg.n_layers + 0.6),
                             squeeze=False)
    for i, layer in enumerate(fwd_cache.decoder.layers):
        for j in range(cfg.h):
            ax = axes[i, j]
            ax.imshow(layer.cross_attn.weights[0, j], cmap="viridis", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"layer {i}, head {j}", fontsize=7)
    fig.suptitle("cross-attention, reversal task (rows: decoder position, columns: source)", fontsize=8)
    fig.tight_layout()
    path = OUT / "cross_attention.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    print("saved", path)

    fig, ax = plt.subplots(figsize=(2.6, 2.6))  # the hand-computed head of section 1
    ax.imshow(P, cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(len(words)), words, fontsize=7)
    ax.set_yticks(range(len(words)), words, fontsize=7)
    ax.set_title("section 1: weights P", fontsize=8)
    fig.tight_layout()
    path = OUT / "one_head_weights.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    print("saved", path)

# %% [markdown]
# ## 7. Pre-LN beside post-LN: the gradient at initialisation
#
# The paper puts each LayerNorm after the residual add (post-LN). Most
# Transformers since 2020 put it before the sublayer instead,
# `x + Sublayer(LayerNorm(x))`, and end each stack with one more LayerNorm
# (pre-LN, `TransformerConfig(norm="pre")`). derivations.md §3.8 shows why this
# matters for training. In pre-LN the gradient of the loss reaches every layer
# along an identity path. In post-LN it crosses the backward of every
# LayerNorm above the layer. Below, the same initial weights in a 6-layer model,
# both ways: each layer's weight-gradient norm, averaged over 4 batches of the
# reversal task.

# %%
from npformer.verify.gradient_flow import gradient_flow  # noqa: E402

deep = cfg.replace(n_layers=6)
flow_batches = task.batches(seed=0, batch_size=BATCH)
flow = gradient_flow(deep, [flow_batches(t) for t in range(1, 5)], seed=0)
print("layer            " + "  ".join(f"{i:>5d}" for i in range(1, deep.n_layers + 1)))
for norm in ("post", "pre"):
    for stack in ("encoder", "decoder"):
        print(f"{norm}-LN {stack:<8} " + "  ".join(f"{g:5.3f}" for g in flow[norm][stack]))
growth = {norm: flow[norm]["decoder"][-1] / flow[norm]["decoder"][0] for norm in ("post", "pre")}
print(f"decoder, last layer / first layer: post-LN {growth['post']:.1f}x, pre-LN {growth['pre']:.1f}x\n")

# %% [markdown]
# Post-LN's decoder gradients grow layer by layer towards the output, while
# pre-LN's stay about level. This is the finding of Xiong et al. (2020):
# large gradients near the output at initialisation are why post-LN needs a
# warmup, small learning rates first.
#
# The same measurement on the `small` preset and the bundled corpus, made by
# `npformer gradient-flow --preset small --out docs/img/gradient_flow.png`:
#
# ![gradient norms at init, post-LN beside pre-LN](img/gradient_flow.png)
#
# Post-LN's gradients there grow towards the output in both stacks, to about
# twice pre-LN's in the last decoder layer. Pre-LN's are level or slightly
# falling with depth. The warmup ablation below trains `small` for 300 steps
# three ways (`npformer plot-runs`; the commands are in the README):
#
# ![loss of post-LN with and without warmup, and pre-LN without](img/warmup_ablation.png)
#
# Without the warmup post-LN stalls on a plateau and ends highest, while with a
# 100-step warmup it gets past it. Pre-LN needs no warmup and ends lowest
# (training loss after 200 steps: 6.78, 6.60, 6.50; one seed each).

# %% [markdown]
# ## Where to go next
#
# * [derivations.md](derivations.md) derives every backward pass in the model,
#   and where pre-LN's gradient paths differ from post-LN's (§3.8).
# * `npformer gradcheck` runs the gradient check of every op, every layer type
#   and the whole model.
# * The ops are short files in `npformer/ops/`: each forward sits next to its
#   backward, with the equations in the docstring.

# %%
print(f"walkthrough finished in {time.perf_counter() - T_START:.1f} s")
