"""Softmax cross-entropy with label smoothing, fused and stable. Paper §5.4.

Forward, for each target position n with logits z_n (V,) and true token y_n:
    log p_nv = z_nv - lse_n,      lse_n = m_n + log sum_v exp(z_nv - m_n),  m_n = max_v z_nv
    q_nv     = (1 - eps_ls) [v = y_n] + eps_ls / V       the smoothed target (sums to 1)
    loss_n   = -sum_v q_nv log p_nv = lse_n - (1 - eps_ls) z_{n,y_n} - (eps_ls / V) sum_v z_nv
    loss     = (1 / N) sum_{n not pad} loss_n,        N = number of non-pad targets
Padding positions (y_n = pad_id) contribute nothing and are not counted in N.
log p is never formed. p_nv underflows to exactly 0 once z_nv is more than
about 745 below m_n in float64 (about 104 in float32), and log(0) = -inf would
make loss_n infinite; the code computes, all relative to the row max,
    loss_n = log s_n - (1 - eps_ls) (z_{n,y_n} - m_n) - (eps_ls / V) sum_v (z_nv - m_n)
with s_n = sum_v exp(z_nv - m_n) between 1 and V: no log of 0, no exp of a large number.
eps_ls = 0 gives the plain negative log-likelihood. Like PyTorch's
``label_smoothing``, the eps_ls / V mass goes to every vocabulary entry.

Backward: since sum_v q_nv = 1,
    d loss_n / d z_nv = softmax(z_n)_v - q_nv
    dz_nv = dloss * [y_n not pad] * (p_nv - q_nv) / N
Fusing softmax and the loss gives this simple form and avoids log(0): never
differentiate through log(softmax) separately. The forward's softmax is
ops/softmax.py's ``softmax_terms``, which also gives each row's max m and
shifted sum s, so lse_n - m_n = log s_n is never formed from two large numbers.

Shapes: logits (..., V), targets (...) int  (e.g. (B, T, V) and (B, T)).

Nothing here reads a value back to the host, so on a GPU the loss stays queued
with the rest of the step: N and the loss are 0-d device arrays. The checks
that need values (ids in [0, V), at least one target) run only where the
targets already live on the host; a caller on a GPU checks its batch on the
host before sending it (model/transformer.py, ``validate_batch``).
"""
from typing import NamedTuple

from npformer import ops  # the ops it uses, read at call time (npformer/ops/__init__.py)
from npformer.backend import backend_of


class CrossEntropyCache(NamedTuple):
    p: object         # (..., V) softmax of the logits
    targets: object   # (...) int
    valid: object     # (...) bool: target is not pad
    n_tokens: object  # N, a 0-d integer array
    eps_ls: float


def cross_entropy_forward(logits, targets, pad_id=0, eps_ls=0.1):
    """Mean label-smoothed cross-entropy over non-pad targets. Returns ``(loss, cache)``,
    loss a 0-d array in the logits' dtype."""
    be = backend_of(logits, targets)
    xp = be.xp
    V = logits.shape[-1]
    if targets.shape != logits.shape[:-1]:
        raise ValueError(f"cross-entropy: targets shape {targets.shape} does not match logits "
                         f"shape {logits.shape} without its last (vocabulary) axis")
    if targets.dtype.kind not in "iu":
        raise TypeError(f"cross-entropy: targets must be integer token ids, got {targets.dtype}")
    valid = targets != pad_id  # (...)
    n_tokens = valid.sum()  # ()  N
    if not be.on_device:
        if int(n_tokens) == 0:
            raise ValueError("cross-entropy: every target is padding; expected at least one non-pad token")
        lo, hi = int(targets.min()), int(targets.max())  # a negative id would silently index from the end
        if lo < 0 or hi >= V:
            raise ValueError(f"cross-entropy: targets must be in [0, {V}) (V = logits.shape[-1]), "
                             f"got values in [{lo}, {hi}]")
    eps_ls = float(eps_ls)
    p, m, s = ops.softmax_terms(logits)  # (..., V), (..., 1), (..., 1); p is reused by the backward
    m = m[..., 0]
    # everything relative to the row max m: lse - m = log s, so no two large
    # numbers are ever subtracted (float32 logits of 1e4 keep full precision)
    zm_true = xp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0] - m  # (...)  z_y - m
    loss_n = xp.log(s[..., 0]) - (1.0 - eps_ls) * zm_true  # (...)
    if eps_ls:
        # sum_v (z_v - m) = sum_v z_v - V m: the sum in float64, where V m and the sum
        # of V logits near m cancel exactly enough, then back to the logits' dtype
        zm_sum = (logits.sum(axis=-1, dtype=xp.float64) - V * m.astype(xp.float64)).astype(logits.dtype)
        loss_n = loss_n - (eps_ls / V) * zm_sum
    loss = (loss_n * valid).sum() / n_tokens.astype(logits.dtype)  # ()
    return loss, CrossEntropyCache(p, targets, valid, n_tokens, eps_ls)


def cross_entropy_backward(dloss, cache: CrossEntropyCache):
    """Returns ``dlogits`` (..., V) = dloss * valid * (softmax - q) / N.

    ``dloss`` is a number or a 0-d array. q is (1 - eps_ls) at the target and
    eps_ls / V everywhere, so dz = w p - w eps_ls / V, then minus (1 - eps_ls) w
    at each row's one target entry (a scatter with no repeats: one target per row).
    """
    p, targets, valid, n_tokens, eps_ls = cache
    xp = backend_of(p).xp
    V = p.shape[-1]
    w = (valid * (dloss / n_tokens)).astype(p.dtype)[..., None]  # (..., 1)
    dz = p * w  # (..., V)
    if eps_ls:
        dz -= w * (eps_ls / V)
    rows = dz.reshape(-1, V)  # (N_all, V) view
    rows[xp.arange(rows.shape[0]), targets.reshape(-1)] -= (1.0 - eps_ls) * w.reshape(-1)
    return dz
