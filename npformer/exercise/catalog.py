"""The exercises: one per op or layer of the Transformer, in the order a learner takes them.

Ids are fixed (course material cites them). Each exercise names the reference
function(s) the learner rewrites, with the same names and signatures; the
derivations.md section that derives them; the exercises it builds on; where
check runs it again inside a bigger block; three hints, from the concept to
the section to read; and, per function, what the stub says to return.

Neither a hint nor the stub gives the answer: no code of the backward, no
equation of it, and no level-2 hint states the final formula (it gives the
structure: which paths, which shapes, which sums). The stub never copies the
reference's docstring, which is written for readers of npformer and may hold the
result. tests/exercise/test_stubs.py checks both against the reference.
"""
from __future__ import annotations

import importlib
import re
from dataclasses import dataclass

from npformer.exercise import cases as C, variants

DERIVATIONS = "docs/derivations.md"


@dataclass(frozen=True)
class Exercise:
    id: str
    title: str
    module: str              # where the reference lives
    functions: tuple         # the names the learner writes, as in the reference
    section: str             # the heading in docs/derivations.md
    prereqs: tuple = ()
    cases: object = None     # rng, backend -> [Case]
    composed: tuple = ()     # ids whose cases are run again with the learner's functions swapped in
    hints: tuple = ("", "", "")
    kind: str = "backward"   # "backward", "forward" (positional), "train"
    returns: tuple = ()      # per function, the stub's docstring: what to return (names, shapes, in order)

    def __post_init__(self):
        if len(self.returns) != len(self.functions):
            raise ValueError(f"exercise {self.id}: {len(self.functions)} function(s) but "
                             f"{len(self.returns)} returns text(s)")

    @property
    def anchor(self) -> str:
        """The GitHub anchor of the section heading."""
        return DERIVATIONS + "#" + slug(self.section)

    def references(self) -> dict:
        """name -> the reference function (imports the module)."""
        mod = importlib.import_module(self.module)
        return {name: getattr(mod, name) for name in self.functions}


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces to '-'."""
    s = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return s.replace(" ", "-")


_ALL = ("encoder_layer", "decoder_layer", "model")

EXERCISES = {e.id: e for e in [
    Exercise("linear", "Linear layer y = xW + b", "npformer.ops.linear", ("linear_backward",), "3.1 Linear",
             cases=C.linear_cases, composed=_ALL, hints=(
                 "y = xW + b touches each of x, W and b once: the chain rule gives one matrix product for x, "
                 "one for W, and a sum over every position for b, because b is added at each one.",
                 "Each gradient has its input's shape: flatten the leading axes to M = B*T rows, so that dx is "
                 "(M, d_in) before its reshape, dW (d_in, d_out) and db (d_out,). dx pairs dy with W; dW pairs "
                 "x with dy. Shapes do not settle the order or the transposes: when W is square, as every "
                 "attention projection is (d_model, d_model), a product missing its transpose has the right "
                 "shape too. Write the forward with indices, differentiate one entry, and test with "
                 "d_in != d_out.",
                 "Read docs/derivations.md §3.1 (Linear), then §0 (what a backward function computes)."),
             returns=("Return (dx, dW, db): dx (..., d_in) like x, dW (d_in, d_out) like W, db (d_out,) like b. "
                      "dy (..., d_out) is the gradient of y.",)),
    Exercise("relu", "ReLU", "npformer.ops.relu", ("relu_backward",), "ReLU",
             cases=C.relu_cases, composed=_ALL, hints=(
                 "ReLU is the identity where x > 0 and the constant 0 elsewhere, entry by entry: each output "
                 "entry depends on its own input entry only, with the slope of the piece it is on.",
                 "The cache holds where x > 0, a bool array; dx has dy's shape. At x = 0 the derivative is "
                 "undefined and the convention takes 0, which x > 0 already encodes. The check never "
                 "evaluates there: it keeps every input at least 1e-3 from 0, so that a central difference "
                 "never straddles the kink.",
                 "Read docs/derivations.md §3.6 (ReLU)."),
             returns=("Return dx, with x's shape. dy is the gradient of y, with x's shape too.",)),
    Exercise("residual", "Residual add z = x + s", "npformer.ops.residual", ("residual_backward",),
             "Residual add", cases=C.residual_cases, composed=_ALL, hints=(
                 "z = x + s: each entry of z depends on one entry of x and one entry of s, each with "
                 "coefficient 1. Write the derivative of z_i with respect to x_j, then to s_j.",
                 "Two gradients, one per operand, each with dz's shape. Both Jacobians are diagonal, so no "
                 "entry mixes with another and no axis is summed: what stands on their diagonals?",
                 "Read docs/derivations.md §3.5 (Residual add)."),
             returns=("Return (dx, ds), each with dz's shape. dz is the gradient of z = x + s.",)),
    Exercise("dropout", "Inverted dropout", "npformer.ops.dropout", ("dropout_backward",), "Dropout",
             cases=C.dropout_cases, composed=_ALL, hints=(
                 "For a fixed mask, dropout multiplies each entry by a constant: 0 where it dropped, 1/(1-p) "
                 "where it kept. Each output entry depends on its own input entry only.",
                 "The cache's scale is that constant, per entry: keep / (1-p), with the 1/(1-p) already "
                 "inside it, so no other factor of p belongs in dx (a second 1/(1-p) is the known mistake "
                 "rescaled_twice). scale is None when dropout is off (p = 0, or eval): the op is then the "
                 "identity. dx has dy's shape and dtype.",
                 "Read docs/derivations.md §2 (Dropout)."),
             returns=("Return dx, with x's shape and dtype. dy is the gradient of y, with x's shape too.",)),
    Exercise("softmax", "Softmax (masked)", "npformer.ops.softmax", ("softmax_backward",), "3.2 Softmax",
             cases=C.softmax_cases, composed=_ALL, hints=(
                 "Every output p_i depends on every input z_j through the shared normaliser, so dz_j collects "
                 "a term from every p_i. Differentiate p_i with respect to z_j (the quotient rule) for i = j "
                 "and for i != j, and write the two cases as one expression in p.",
                 "Never build the (n, n) Jacobian of a row: it is a diagonal matrix plus a rank-one one, so its "
                 "product with dp costs elementwise products and one sum over the last axis per row. Masked "
                 "entries have p = 0, and so does a fully masked row: check what your formula gives there.",
                 "Read docs/derivations.md §3.2 (Softmax)."),
             returns=("Return dz (..., n), with dp's shape. dp (..., n) is the gradient of p. out is None, or an "
                      "array shaped like dp (npformer passes dp itself) that dz may be written into and "
                      "returned; a new array is fine too. With out None, leave dp as it was.",)),
    Exercise("layernorm", "Layer normalisation", "npformer.ops.layernorm", ("layernorm_backward",), "LayerNorm",
             prereqs=("linear",), cases=C.layernorm_cases, composed=_ALL, hints=(
                 "x reaches the output three ways: directly, through the mean mu, and through the variance. "
                 "The gradient is the sum of the three paths; gamma scales what reaches xhat.",
                 "dgamma and dbeta sum over every position (they are shared by all). For dx, first carry dy "
                 "back to xhat, gamma included, before any mean over the features mixes them. Then the mean "
                 "path adds a term constant along each row and the variance path one proportional to xhat; "
                 "each needs one mean over d_model per row, and rstd scales the whole.",
                 "Read docs/derivations.md §3.5 (LayerNorm)."),
             returns=("Return (dx, dgamma, dbeta): dx (..., d_model) like x, dgamma and dbeta (d_model,) like "
                      "gamma and beta. dy (..., d_model) is the gradient of y.",)),
    Exercise("embedding", "Token embedding (a lookup)", "npformer.ops.embedding", ("embedding_backward",),
             "1. Input embedding", cases=C.embedding_cases, composed=("model",), hints=(
                 "A lookup copies row E[id], times the scale, to each position: y[b, t, k] is scale * "
                 "E[ids[b, t], k]. Ask which outputs one entry E[c, k] reaches, and sum over them.",
                 "dE has E's shape (V, d_model), zero in the rows of ids absent from the batch. The same id can "
                 "appear many times: its contributions must be added, not assigned (an indexed += on repeated "
                 "ids keeps only one of them; np.add.at, or the backend's scatter_add, adds them all). The "
                 "forward's scale (sqrt(d_model) in the paper) multiplies too.",
                 "Read docs/derivations.md §1 (Input embedding)."),
             returns=("Return dE (V, d_model), E's shape. dy (B, T, d_model) is the gradient of y; the ids get no "
                      "gradient.",)),
    Exercise("positional", "Sinusoidal positional encoding (forward only)", "npformer.ops.positional",
             ("sinusoidal_table",), "Positional encoding", cases=C.positional_cases, composed=("model",),
             kind="forward", hints=(
                 "PE(pos, 2i) = sin(pos / 10000^(2i/d_model)), PE(pos, 2i+1) = cos(the same angle). The table "
                 "is a fixed function of the position: it has no parameters, so there is nothing to learn and "
                 "no gradient to write. Its backward (x + PE -> x) passes dy through unchanged.",
                 "Build a (max_len, 1) column of positions and a (1, d_model/2) row of frequencies; their "
                 "product is every angle at once. Even columns take sin, odd columns cos. Return the dtype "
                 "asked for.",
                 "Read docs/derivations.md §2 (Positional encoding)."),
             returns=("Return the table PE (max_len, d_model), an xp array in the given dtype: PE[pos, 2i] is "
                      "sin(pos / 10000^(2i / d_model)) and PE[pos, 2i+1] the cos of the same angle. Compute it "
                      "in float64 and cast once, at the end.",)),
    Exercise("attention", "Scaled dot-product attention with a mask", "npformer.ops.attention",
             ("attention_backward",), "3.3 Scaled dot-product attention with a mask", prereqs=("softmax",),
             cases=C.attention_cases, composed=_ALL, hints=(
                 "Attention is a chain: two matmuls around a softmax, with a scale 1/sqrt(d_k) on the scores. "
                 "Walk it backwards: out = P V first, then the softmax, then S = Q K^T * scale.",
                 "dV and dP come from out = P V, one matrix product each (§3.1's pattern, per batch and "
                 "head); dS from the softmax backward (you wrote it, or import npformer.ops.softmax_backward); "
                 "the scale multiplies both dQ and dK. dP and dS are (B, h, T_q, T_k). Masked entries have "
                 "P = 0: check that no gradient leaks into them.",
                 "Read docs/derivations.md §3.3 (Scaled dot-product attention with a mask)."),
             returns=("Return (dQ, dK, dV): dQ (B, h, T_q, d_k), dK (B, h, T_k, d_k), dV (B, h, T_k, d_v), like "
                      "Q, K and V. dout (B, h, T_q, d_v) is the gradient of out.",)),
    Exercise("multihead", "Multi-head self- and cross-attention", "npformer.ops.multihead",
             ("self_attention_backward", "cross_attention_backward"),
             "3.4 Multi-head attention: split, merge, fused projections", prereqs=("linear", "attention"),
             cases=C.multihead_cases, composed=_ALL, hints=(
                 "Multi-head attention is projections, a split into heads, attention per head, a merge and "
                 "an output projection; the backward runs them in reverse. Splitting into heads is a reshape "
                 "and then a transpose: its backward is the inverse transpose, then the inverse reshape "
                 "(merge_heads undoes split_heads, and the other way round).",
                 "Self-attention's x feeds Q, K and V: its gradient is the sum of three. Cross-attention's "
                 "memory feeds only K and V. The cache holds the projections' caches (fused: one matmul for "
                 "several W's) and the attention cache; npformer.ops has split_heads/merge_heads and the "
                 "linear backwards to reuse.",
                 "Read docs/derivations.md §3.4 (Multi-head attention) and §4.2 (Cross-attention)."),
             returns=("Return (dx, grads): dx (B, T, d_model) like x; grads a dict keyed like p (W_q, b_q, W_k, "
                      "b_k, W_v, b_v, W_o, b_o), each W (d_model, d_model) and each b (d_model,). dy (B, T, "
                      "d_model) is the gradient of y.",
                      "Return (dx, dmemory, grads): dx (B, T_q, d_model) like x, dmemory (B, T_k, d_model) like "
                      "memory, grads as for self_attention_backward. dy (B, T_q, d_model) is the gradient of "
                      "y.")),
    Exercise("feedforward", "Position-wise feed-forward network", "npformer.ops.feedforward",
             ("feedforward_backward",), "Feed-forward network", prereqs=("linear", "relu"),
             cases=C.feedforward_cases, composed=_ALL, hints=(
                 "FFN(x) = max(0, x W_1 + b_1) W_2 + b_2: linear, ReLU, linear. Its backward is the three "
                 "backwards in reverse order.",
                 "Return dx and a dict of the gradients of W_1, b_1, W_2, b_2, keyed as p is. The caches of "
                 "the three steps are in the cache, in forward order: lin1, relu, lin2.",
                 "Read docs/derivations.md §3.6 (Feed-forward network)."),
             returns=("Return (dx, grads): dx (B, T, d_model) like x; grads keyed like p: W_1 (d_model, d_ff), "
                      "b_1 (d_ff,), W_2 (d_ff, d_model), b_2 (d_model,). dy (B, T, d_model) is the gradient of "
                      "y.",)),
    Exercise("cross_entropy", "Label-smoothed cross-entropy with padding", "npformer.ops.cross_entropy",
             ("cross_entropy_backward",), "6. Softmax and the loss: label-smoothed cross-entropy",
             prereqs=("softmax",), cases=C.cross_entropy_cases, composed=("model",), hints=(
                 "Softmax and cross-entropy together have a short gradient: write one position's loss as "
                 "-sum_c q_c log p_c, with log p_c = z_c - logsumexp(z), and differentiate it with respect to "
                 "z. The logsumexp's derivative is the softmax. q is the smoothed target: (1 - eps) on the "
                 "target plus eps/V on every entry, so it sums to 1.",
                 "The loss is a mean over the non-pad targets only: pad positions get no gradient, and the "
                 "divisor is N_valid (cache.n_tokens), not every position. dloss may be any number (or a 0-d "
                 "array): it scales everything.",
                 "Read docs/derivations.md §6 (Softmax and the loss)."),
             returns=("Return dlogits (..., V), the logits' shape and dtype; the targets get no gradient. dloss is "
                      "the gradient of the loss: a number or a 0-d array.",)),
    Exercise("sublayer", "Add & Norm, post-LN and pre-LN", "npformer.model.sublayer",
             ("add_norm_backward", "sublayer_in_backward", "sublayer_out_backward"),
             "3.5 Add & Norm: residual, dropout, LayerNorm", prereqs=("residual", "dropout", "layernorm"),
             cases=C.sublayer_cases, composed=_ALL, hints=(
                 "Post-LN: y = LN(x + Drop(s)), so the gradient goes through LayerNorm first and then splits. "
                 "Pre-LN: the LayerNorm moves to the sublayer's input and the residual path has none.",
                 "add_norm_backward returns (dx, ds, dgamma, dbeta); sublayer_out_backward returns (dx, ds, "
                 "params dict), with an empty dict for pre-LN; sublayer_in_backward returns (dx, params dict), "
                 "the identity for post-LN. Tell the two apart by the cache's type (None for the identity).",
                 "Read docs/derivations.md §3.5 and §3.8 (Pre-LN and post-LN)."),
             returns=("Return (dx, ds, dgamma, dbeta): dx and ds (..., d_model) like x and s, dgamma and dbeta "
                      "(d_model,). dy (..., d_model) is the gradient of y = LayerNorm(x + Dropout(s)).",
                      "Return (dx, grads): dx (..., d_model) like x; grads a dict with gamma and beta, each "
                      "(d_model,), for pre-LN, and empty for post-LN (cache None). du (..., d_model) is the "
                      "gradient of the sublayer's input u.",
                      "Return (dx, ds, grads): dx (..., d_model) along the residual path only (the caller adds "
                      "what comes back through the sublayer), ds (..., d_model) for the sublayer's output s, "
                      "grads a dict with gamma and beta, each (d_model,), for post-LN, and empty for pre-LN. "
                      "dy (..., d_model) is the gradient of the layer's output.")),
    Exercise("encoder_layer", "The encoder layer", "npformer.model.encoder", ("encoder_layer_backward",),
             "3.7 The encoder layer and the encoder stack", prereqs=("multihead", "feedforward", "sublayer"),
             cases=C.encoder_layer_cases, composed=("model",), hints=(
                 "An encoder layer is two sublayers in sequence: self-attention, then the feed-forward "
                 "network, each wrapped in Add & Norm. Backward runs them in reverse.",
                 "The layer's input reaches its output through the sublayer and through the residual path: "
                 "add the two gradients. Return dx and a dict keyed like p (prefixes ln1., self_attn., ln2., "
                 "ffn.).",
                 "Read docs/derivations.md §3.7 (The encoder layer)."),
             returns=("Return (dx, grads): dx (B, S, d_model) like x; grads keyed like p (ln1.*, self_attn.*, "
                      "ln2.*, ffn.*), each with its parameter's shape. dy (B, S, d_model) is the gradient of the "
                      "layer's output.",)),
    Exercise("decoder_layer", "The decoder layer", "npformer.model.decoder", ("decoder_layer_backward",),
             "4.3 The decoder layer and the stack: dmemory sums over layers",
             prereqs=("multihead", "feedforward", "sublayer"), cases=C.decoder_layer_cases,
             composed=("model",), hints=(
                 "A decoder layer has three sublayers: masked self-attention, cross-attention over the "
                 "encoder's memory, and the feed-forward network.",
                 "The memory is used only by cross-attention: its gradient comes from there. As in the "
                 "encoder layer, each sublayer's input also reaches the output through the residual path: "
                 "add the two gradients. Return (dy_in, dmemory, grads), grads keyed like p.",
                 "Read docs/derivations.md §4 (Decoder), §4.3 in particular."),
             returns=("Return (dy_in, dmemory, grads): dy_in (B, T, d_model) like the layer's input y; dmemory "
                      "(B, T_s, d_model) like memory, this layer's share of its gradient; grads keyed like p "
                      "(ln1.*, self_attn.*, ln2.*, cross_attn.*, ln3.*, ffn.*), each with its parameter's "
                      "shape. dy (B, T, d_model) is the gradient of the layer's output.",)),
    Exercise("model", "The whole backward pass, with the three-way tie", "npformer.model.transformer",
             ("transformer_backward",), "7. The three-way tie and the whole backward pass",
             prereqs=("embedding", "positional", "cross_entropy", "encoder_layer", "decoder_layer"),
             cases=C.model_cases, hints=(
                 "The output projection, the decoder, the encoder and both embeddings, in reverse. With "
                 "shared weights, one matrix is used three times: its gradient is the sum of three.",
                 "dlogits -> dH and dE_out through the output projection; decoder_backward gives dy and "
                 "dmemory; encoder_backward takes dmemory. The cache's keys say whether the three "
                 "embeddings are one tensor.",
                 "Read docs/derivations.md §5 and §7 (The three-way tie)."),
             returns=("Return grads, a dict keyed like params, each with its parameter's shape: the embedding "
                      "matrices that cache.keys names (one, embed, when the three uses are tied; src_embed, "
                      "tgt_embed and out_proj when not) and every encoder.* and decoder.* parameter. dlogits "
                      "(B, T, V) is the gradient of the logits.",)),
    Exercise("train", "Train with your own backward passes", "", (), "9. How to check a gradient yourself",
             prereqs=(), kind="train", hints=(
                 "Every op you have passed is swapped into a short training run of the tiny model; its "
                 "losses must match the reference run's, step for step, with the same seed.",
                 "If a step's loss drifts, an op that passed its check may still be wrong in float32 or on "
                 "shapes the check did not draw: re-run check for each passed op.",
                 "Read docs/derivations.md §8 (The optimizer) and §9 (How to check a gradient yourself).")),
]}

ORDER = tuple(EXERCISES)


def get(exercise_id: str) -> Exercise:
    if exercise_id not in EXERCISES:
        raise KeyError(f"unknown exercise {exercise_id!r}; expected one of {', '.join(ORDER)} "
                       f"(or a variant: {', '.join(VARIANT_IDS)})")
    return EXERCISES[exercise_id]


VARIANT_IDS = tuple(variants.VARIANTS)
