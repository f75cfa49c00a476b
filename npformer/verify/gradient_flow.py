"""How large is each layer's gradient at initialisation, for post-LN and pre-LN?

Xiong et al. (2020, "On Layer Normalization in the Transformer Architecture")
show that at initialisation post-LN's gradients grow towards the output
layers, while pre-LN's are about the same in every layer; large gradients near
the output are why post-LN needs a small learning rate (the warmup) at first.
docs/derivations.md ("Pre-LN and post-LN") derives where the paths differ.

For one preset and seed, both placements get the same initial weights (pre-LN
adds the two final LayerNorms, gamma = 1, beta = 0). On each of a few
batches of the training corpus, without dropout:

    G_l = || (dL/dW for every weight matrix W of layer l) ||_2      one norm over the layer's matrices

and the figure is mean_batches G_l against l, per stack (encoder layers
1..N, decoder layers 1..N). Biases and LayerNorm parameters are left out,
as in the paper's figure, which shows weight matrices.
"""
from __future__ import annotations

import math

import numpy as np

from npformer.backend import get_backend
from npformer.model.config import TransformerConfig
from npformer.model.params import init_params
from npformer.model.transformer import loss_and_grads

STACKS = ("encoder", "decoder")


def layer_weight_norms(grads: dict, cfg: TransformerConfig) -> dict:
    """{"encoder": [G_1, ..., G_N], "decoder": [...]}: the norm over each layer's weight matrices."""
    out = {}
    for stack in STACKS:
        norms = []
        for i in range(cfg.n_layers):
            prefix = f"{stack}.{i}."
            squares = [float((g.astype(np.float64) ** 2).sum()) for k, g in grads.items()
                       if k.startswith(prefix) and g.ndim == 2]
            norms.append(math.sqrt(sum(squares)))
        out[stack] = norms
    return out


def gradient_flow(cfg: TransformerConfig, batches, seed: int = 0, backend=None, dtype: str = "float32") -> dict:
    """Mean per-layer weight-gradient norms at initialisation over ``batches``
    (a list of Batch), for post-LN and pre-LN: {"post": {"encoder": [...], "decoder": [...],
    "loss": mean loss}, "pre": {...}}."""
    if not batches:
        raise ValueError("gradient flow: expected at least one batch")
    be = get_backend(backend)
    result = {}
    for norm in ("post", "pre"):
        c = cfg.replace(norm=norm)
        params = init_params(c, seed=seed, dtype=dtype, backend=be)
        sums = {stack: np.zeros(c.n_layers) for stack in STACKS}
        losses = []
        for b in batches:
            loss, grads, _ = loss_and_grads(params, c, be.asarray(b.src), be.asarray(b.tgt_in), be.asarray(b.tgt_out))
            grads = {k: be.to_host(g) for k, g in grads.items()}
            for stack, norms in layer_weight_norms(grads, c).items():
                sums[stack] += norms
            losses.append(float(be.to_host(loss)))  # one read per batch: this is a report, not a hot loop
        result[norm] = {stack: (sums[stack] / len(batches)).tolist() for stack in STACKS}
        result[norm]["loss"] = float(np.mean(losses))
    return result
