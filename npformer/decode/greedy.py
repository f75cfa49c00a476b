"""Greedy decoding: at every step take the single most probable next token.

    y_0 = BOS
    y_t = argmax_v log p(v | y_<t, x)           t = 1, 2, ...
A sentence stops when it emits EOS (not part of its output) or reaches its
maximum output length (source length + 50 by default, §6.1; see shared.py).
The loop ends when every sentence has stopped. Sentences that stop leave the
batch (the decoder rows are gathered with ``reorder``), so the remaining ones
run on a smaller batch.

``use_cache=True`` computes each step with the key/value cache (incremental.py);
``use_cache=False`` runs transformer_forward over the whole prefix every step,
the reference the cache must reproduce. ``return_logits=True`` also returns,
per sentence, the model's raw logits at every step it took.
"""
from __future__ import annotations

import numpy as np

from npformer.decode.shared import validate_int, validate_src, make_decoder, next_log_probs, output_limits


def greedy_decode(params, cfg, src, max_len=None, use_cache=True, min_len=0, return_logits=False):
    """Greedy outputs for src (B, S): a list of B token-id lists, without BOS and EOS.

    max_len: most output tokens (default per sentence: its non-pad source length + 50).
    min_len: EOS is not allowed before this many tokens (0 = no minimum).
    return_logits: also return a list of B host arrays (n_steps_b, V), one row per step.
    """
    be, src_on_device = validate_src(params, cfg, src)
    limits = output_limits(cfg, src, max_len)  # (B,) host; from a host src, no read
    src = src_on_device
    min_len = validate_int(min_len, "min_len", 0)
    B = src.shape[0]
    decoder = make_decoder(params, cfg, src, int(limits.max()), use_cache)
    outputs = [[] for _ in range(B)]
    step_logits = [[] for _ in range(B)]
    active = np.arange(B)  # sentence of each decoder row
    tokens = np.full(B, cfg.bos_id, dtype=np.int64)  # (R,) next decoder input
    for t in range(int(limits.max())):
        logits = decoder.step(be.asarray(tokens))  # (R, V)
        best = be.to_host(next_log_probs(logits, cfg, t, min_len).argmax(axis=-1))  # (R,)
        if return_logits:
            host_logits = be.to_host(logits)
        keep = []
        for r, b in enumerate(active):
            if return_logits:
                step_logits[b].append(host_logits[r])
            if best[r] == cfg.eos_id:
                continue  # finished: EOS is not part of the output
            outputs[b].append(int(best[r]))
            if len(outputs[b]) < limits[b]:
                keep.append(r)
        if not keep:
            break
        if len(keep) < len(active):
            decoder.reorder(np.asarray(keep))
        active, tokens = active[keep], best[keep]
    if return_logits:
        return outputs, [np.stack(s) for s in step_logits]
    return outputs
