"""The exercises: one per op or layer of the Transformer, in the order a learner takes them.

Ids are fixed (course material cites them). Each exercise names the reference
function(s) the learner rewrites, with the same names and signatures; the
derivations.md section that derives them; the exercises it builds on; where
check runs it again inside a bigger block; and three hints, from the concept to
the section to read. Hints never hold code.
"""
from __future__ import annotations

import importlib
import re
from dataclasses import dataclass

from npformer.exercise import cases as C

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
                 "y = xW + b touches each of x, W and b once: the chain rule gives one matmul per input, "
                 "and the bias gradient sums over every position, because b is added at each one.",
                 "Each gradient has its input's shape. x is (..., d_in): flatten the leading axes to M = B*T "
                 "rows, so that dW is (d_in, d_out) and db is (d_out,). Write the shapes next to each product "
                 "and the order of the operands follows.",
                 "Read docs/derivations.md §3.1 (Linear), then §0 (what a backward function computes).")),
    Exercise("relu", "ReLU", "npformer.ops.relu", ("relu_backward",), "ReLU",
             cases=C.relu_cases, composed=_ALL, hints=(
                 "ReLU is the identity where x > 0 and the constant 0 elsewhere: the gradient passes where "
                 "the input was positive and stops everywhere else.",
                 "The cache already holds where x > 0; the result has dy's shape. At exactly x = 0 the "
                 "derivative is undefined: the convention (and the check) takes 0.",
                 "Read docs/derivations.md §3.6 (ReLU).")),
    Exercise("residual", "Residual add z = x + s", "npformer.ops.residual", ("residual_backward",),
             "Residual add", cases=C.residual_cases, composed=_ALL, hints=(
                 "An addition copies its upstream gradient to both operands unchanged.",
                 "Two gradients, one per operand, each with dz's shape: no scale, no sum.",
                 "Read docs/derivations.md §3.5 (Residual add).")),
    Exercise("dropout", "Inverted dropout", "npformer.ops.dropout", ("dropout_backward",), "Dropout",
             cases=C.dropout_cases, composed=_ALL, hints=(
                 "Dropout multiplies each entry by a fixed number: 0 where it dropped, 1/(1-p) where it kept. "
                 "A fixed multiplier passes the gradient through scaled by the same number.",
                 "The cache holds the multiplier (keep / (1-p)), or None when dropout is off (p = 0 or eval): "
                 "then the op is the identity. Don't forget the 1/(1-p) scale of the kept entries.",
                 "Read docs/derivations.md §2 (Dropout).")),
    Exercise("softmax", "Softmax (masked)", "npformer.ops.softmax", ("softmax_backward",), "3.2 Softmax",
             cases=C.softmax_cases, composed=_ALL, hints=(
                 "Every output p_i depends on every input z_j through the shared normaliser, so dz_j collects "
                 "a term from every p_i: the Jacobian is diag(p) - p p^T.",
                 "Never build the (n, n) Jacobian: multiply it by dp in closed form, which needs one sum over "
                 "the last axis per row. Masked entries have p = 0, and so does a fully masked row: check what "
                 "your formula gives there.",
                 "Read docs/derivations.md §3.2 (Softmax).")),
    Exercise("layernorm", "Layer normalisation", "npformer.ops.layernorm", ("layernorm_backward",), "LayerNorm",
             prereqs=("linear",), cases=C.layernorm_cases, composed=_ALL, hints=(
                 "x reaches the output three ways: directly, through the mean mu, and through the variance. "
                 "The gradient is the sum of the three paths; gamma scales what reaches xhat.",
                 "dgamma and dbeta sum over every position (they are shared by all). For dx, start from "
                 "g = dy * gamma; the mean and the variance paths each subtract a per-row mean over d_model.",
                 "Read docs/derivations.md §3.5 (LayerNorm).")),
    Exercise("embedding", "Token embedding (a lookup)", "npformer.ops.embedding", ("embedding_backward",),
             "1. Input embedding", cases=C.embedding_cases, composed=("model",), hints=(
                 "A lookup copies row E[id] to each position: the gradient of E collects, in row id, the "
                 "upstream gradient of every position that looked it up.",
                 "The same id can appear many times: the rows must be added, not assigned (an assignment keeps "
                 "only the last). The forward also multiplies by a scale (sqrt(d_model) in the paper).",
                 "Read docs/derivations.md §1 (Input embedding).")),
    Exercise("positional", "Sinusoidal positional encoding (forward only)", "npformer.ops.positional",
             ("sinusoidal_table",), "Positional encoding", cases=C.positional_cases, composed=("model",),
             kind="forward", hints=(
                 "PE(pos, 2i) = sin(pos / 10000^(2i/d_model)), PE(pos, 2i+1) = cos(the same angle). The table "
                 "is a fixed function of the position: it has no parameters, so there is nothing to learn and "
                 "no gradient to write. Its backward (x + PE -> x) passes dy through unchanged.",
                 "Build a (max_len, 1) column of positions and a (1, d_model/2) row of frequencies; their "
                 "product is every angle at once. Even columns take sin, odd columns cos. Return the dtype "
                 "asked for.",
                 "Read docs/derivations.md §2 (Positional encoding).")),
    Exercise("attention", "Scaled dot-product attention with a mask", "npformer.ops.attention",
             ("attention_backward",), "3.3 Scaled dot-product attention with a mask", prereqs=("softmax",),
             cases=C.attention_cases, composed=_ALL, hints=(
                 "Attention is a chain: two matmuls around a softmax, with a scale 1/sqrt(d_k) on the scores. "
                 "Walk it backwards: out = P V first, then the softmax, then S = Q K^T * scale.",
                 "dV and dP come from out = P V; dS from the softmax backward (you wrote it, or import "
                 "npformer.ops.softmax_backward); the scale multiplies both dQ and dK. Masked entries have "
                 "P = 0: check that no gradient leaks into them.",
                 "Read docs/derivations.md §3.3 (Scaled dot-product attention with a mask).")),
    Exercise("multihead", "Multi-head self- and cross-attention", "npformer.ops.multihead",
             ("self_attention_backward", "cross_attention_backward"),
             "3.4 Multi-head attention: split, merge, fused projections", prereqs=("linear", "attention"),
             cases=C.multihead_cases, composed=_ALL, hints=(
                 "Multi-head attention is projections, a reshape into heads, attention per head, a merge and "
                 "an output projection. A reshape's backward is the inverse reshape.",
                 "Self-attention's x feeds Q, K and V: its gradient is the sum of three. Cross-attention's "
                 "memory feeds only K and V. The cache holds the projections' caches (fused: one matmul for "
                 "several W's) and the attention cache; npformer.ops has split_heads/merge_heads and the "
                 "linear backwards to reuse.",
                 "Read docs/derivations.md §3.4 (Multi-head attention) and §4.2 (Cross-attention).")),
    Exercise("feedforward", "Position-wise feed-forward network", "npformer.ops.feedforward",
             ("feedforward_backward",), "Feed-forward network", prereqs=("linear", "relu"),
             cases=C.feedforward_cases, composed=_ALL, hints=(
                 "FFN(x) = max(0, x W_1 + b_1) W_2 + b_2: linear, ReLU, linear. Its backward is the three "
                 "backwards in reverse order.",
                 "Return dx and a dict with dW_1, db_1, dW_2, db_2, keyed as p is. The caches of the three "
                 "steps are in the cache, in forward order.",
                 "Read docs/derivations.md §3.6 (Feed-forward network).")),
    Exercise("cross_entropy", "Label-smoothed cross-entropy with padding", "npformer.ops.cross_entropy",
             ("cross_entropy_backward",), "6. Softmax and the loss: label-smoothed cross-entropy",
             prereqs=("softmax",), cases=C.cross_entropy_cases, composed=("model",), hints=(
                 "Softmax followed by cross-entropy has the famous gradient p - q, where q is the target "
                 "distribution: 1 - eps at the target and eps/V everywhere (label smoothing).",
                 "The loss is a mean over the non-pad targets only: pad positions get no gradient, and the "
                 "divisor is N_valid (cache.n_tokens), not every position. dloss may be any number.",
                 "Read docs/derivations.md §6 (Softmax and the loss).")),
    Exercise("sublayer", "Add & Norm, post-LN and pre-LN", "npformer.model.sublayer",
             ("add_norm_backward", "sublayer_in_backward", "sublayer_out_backward"),
             "3.5 Add & Norm: residual, dropout, LayerNorm", prereqs=("residual", "dropout", "layernorm"),
             cases=C.sublayer_cases, composed=_ALL, hints=(
                 "Post-LN: y = LN(x + Drop(s)), so the gradient goes through LayerNorm first and then splits. "
                 "Pre-LN: the LayerNorm moves to the sublayer's input and the residual path has none.",
                 "add_norm_backward returns (dx, ds, dgamma, dbeta); sublayer_out_backward returns (dx, ds, "
                 "params dict), with an empty dict for pre-LN; sublayer_in_backward returns (dx, params dict), "
                 "the identity for post-LN. Tell the two apart by the cache's type (None for the identity).",
                 "Read docs/derivations.md §3.5 and §3.8 (Pre-LN and post-LN).")),
    Exercise("encoder_layer", "The encoder layer", "npformer.model.encoder", ("encoder_layer_backward",),
             "3.7 The encoder layer and the encoder stack", prereqs=("multihead", "feedforward", "sublayer"),
             cases=C.encoder_layer_cases, composed=("model",), hints=(
                 "An encoder layer is two sublayers in sequence: self-attention, then the feed-forward "
                 "network, each wrapped in Add & Norm. Backward runs them in reverse.",
                 "The layer's input reaches its output through the sublayer and through the residual path: "
                 "add the two gradients. Return dx and a dict keyed like p (prefixes ln1., self_attn., ln2., "
                 "ffn.).",
                 "Read docs/derivations.md §3.7 (The encoder layer).")),
    Exercise("decoder_layer", "The decoder layer", "npformer.model.decoder", ("decoder_layer_backward",),
             "4.3 The decoder layer and the stack: dmemory sums over layers",
             prereqs=("multihead", "feedforward", "sublayer"), cases=C.decoder_layer_cases,
             composed=("model",), hints=(
                 "A decoder layer has three sublayers: masked self-attention, cross-attention over the "
                 "encoder's memory, and the feed-forward network.",
                 "The memory is used only by cross-attention: its gradient comes from there. Return "
                 "(dy, dmemory, grads), grads keyed like p.",
                 "Read docs/derivations.md §4 (Decoder), §4.3 in particular.")),
    Exercise("model", "The whole backward pass, with the three-way tie", "npformer.model.transformer",
             ("transformer_backward",), "7. The three-way tie and the whole backward pass",
             prereqs=("embedding", "positional", "cross_entropy", "encoder_layer", "decoder_layer"),
             cases=C.model_cases, hints=(
                 "The output projection, the decoder, the encoder and both embeddings, in reverse. With "
                 "shared weights, one matrix is used three times: its gradient is the sum of three.",
                 "dlogits -> dH and dE_out through the output projection; decoder_backward gives dy and "
                 "dmemory; encoder_backward takes dmemory. The cache's keys say whether the three "
                 "embeddings are one tensor.",
                 "Read docs/derivations.md §5 and §7 (The three-way tie).")),
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


VARIANT_IDS = ("rmsnorm", "gelu", "softmax_temperature", "cross_entropy_ignore_index")
