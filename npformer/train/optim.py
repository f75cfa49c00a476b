"""Adam (Kingma & Ba, 2015) and gradient-norm clipping. Paper §5.3.

"We used the Adam optimizer with beta1 = 0.9, beta2 = 0.98 and epsilon = 1e-9."

For every parameter theta with gradient g, at step t = 1, 2, ...:
    m_t     = beta1 m_{t-1} + (1 - beta1) g            first moment (running mean of g)
    v_t     = beta2 v_{t-1} + (1 - beta2) g^2          second moment (running mean of g^2)
    m_hat   = m_t / (1 - beta1^t)                      bias correction: m_0 = v_0 = 0 pull
    v_hat   = v_t / (1 - beta2^t)                      the early averages towards zero
    theta  <- theta - lr_t m_hat / (sqrt(v_hat) + eps)

Parameters, gradients and the moments m, v are flat dicts with the same keys.
The update is in place and written once against the array namespace of the
parameters (NumPy or CuPy). Every scalar is a Python float, so float32 training
stays float32: NumPy 2 and CuPy keep an array's dtype when it meets a Python
scalar, whereas a NumPy float64 scalar would upcast the whole update.
"""
from __future__ import annotations

import math

from npformer.backend import backend_of
from npformer.workers import as_workers


# Elements per block of the update: 4 arrays x 64K float32 = 1 MiB, about the
# size of a core's L2 cache, so the update's passes over a block hit the cache
# instead of memory (the values are the same either way).
ADAM_BLOCK = 1 << 16


def blocks(*arrays):
    """Equal consecutive pieces (views) of same-shaped ``arrays``, ``ADAM_BLOCK``
    elements each, so that several passes over a piece stay in the CPU cache.
    On a GPU, or for arrays that are not C-contiguous (whose flat view would be a
    copy, and an in-place update of it would be lost), the arrays are one piece."""
    first = arrays[0]
    if (backend_of(*arrays).name != "numpy" or first.size <= ADAM_BLOCK
            or not all(a.flags.c_contiguous for a in arrays)):
        yield arrays
        return
    flat = [a.reshape(-1) for a in arrays]  # views: contiguous
    for start in range(0, first.size, ADAM_BLOCK):
        yield tuple(f[start:start + ADAM_BLOCK] for f in flat)


class Adam:
    """Adam over a flat parameter dict; the learning rate is given at each step."""

    def __init__(self, params: dict, beta1: float = 0.9, beta2: float = 0.98, eps: float = 1e-9):
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)
        self.t = 0  # steps taken so far
        self.m = {k: backend_of(p).xp.zeros_like(p) for k, p in params.items()}
        self.v = {k: backend_of(p).xp.zeros_like(p) for k, p in params.items()}

    def update(self, params: dict, grads: dict, lr: float, workers=None) -> None:
        """One Adam step: change every ``params[k]`` in place using ``grads[k]``.

        ``workers`` (npformer/workers.py) share the parameters out between CPU
        threads; each parameter's update is the same either way."""
        if set(grads) != set(params) or set(params) != set(self.m):
            missing = sorted(set(params) ^ set(grads) | set(params) ^ set(self.m))
            raise ValueError(f"adam: params, grads and optimizer state must have the same keys; "
                             f"differing keys: {missing[:5]}")
        for k, theta in params.items():
            g = grads[k]
            if g.dtype != theta.dtype or g.shape != theta.shape:
                raise TypeError(f"adam: gradient {k!r} is {g.dtype} {g.shape}, "
                                f"parameter is {theta.dtype} {theta.shape}")
        self.t += 1
        lr = float(lr)

        def update_keys(keys):
            for k in keys:
                # Block by block, so that the dozen passes of the update over a block
                # run in the CPU cache rather than going out to memory a dozen times.
                for theta, g, m, v in blocks(params[k], grads[k], self.m[k], self.v[k]):
                    self._update_one(theta, g, m, v, lr)
        as_workers(workers).each_group(update_keys, params)

    def _update_one(self, theta, g, m, v, lr: float) -> None:
        b1, b2 = self.beta1, self.beta2
        correction1 = 1.0 - b1 ** self.t  # Python floats: no dtype promotion
        correction2 = 1.0 - b2 ** self.t
        xp = backend_of(theta, g).xp
        # One scratch buffer per parameter serves every temporary: the update is
        # memory-bound, so fewer passes and allocations are what make it fast.
        tmp = xp.multiply(g, g)
        tmp *= 1.0 - b2
        v *= b2
        v += tmp  # v_t = beta2 v + (1 - beta2) g^2
        xp.multiply(g, 1.0 - b1, out=tmp)
        m *= b1
        m += tmp  # m_t = beta1 m + (1 - beta1) g
        # lr m_hat / (sqrt(v_hat) + eps) with the bias corrections folded into two
        # scalars (multiply top and bottom by sqrt(c2)):
        #   = (lr sqrt(c2) / c1) m / (sqrt(v) + eps sqrt(c2))
        root_c2 = math.sqrt(correction2)
        xp.sqrt(v, out=tmp)
        tmp += self.eps * root_c2
        xp.divide(m, tmp, out=tmp)
        tmp *= lr * root_c2 / correction1
        theta -= tmp

    def state_dict(self) -> dict:
        """``{"t", "beta1", "beta2", "eps", "m": {k: array}, "v": {k: array}}`` (arrays not copied)."""
        return {"t": self.t, "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps,
                "m": dict(self.m), "v": dict(self.v)}

    def load_state_dict(self, state: dict) -> None:
        """Restore a ``state_dict``; moments are copied onto the backend and dtype
        of the current ones, and must have the same keys and shapes."""
        for name in ("m", "v"):
            mine, theirs = getattr(self, name), state[name]
            if set(mine) != set(theirs):
                differ = sorted(set(mine) ^ set(theirs))
                raise ValueError(f"adam: state {name!r} keys differ from the parameters': {differ[:5]}")
            for k, a in mine.items():
                if tuple(theirs[k].shape) != a.shape:
                    raise ValueError(f"adam: state {name}[{k!r}] has shape {tuple(theirs[k].shape)}, "
                                     f"expected {a.shape}")
                mine[k] = backend_of(a).asarray(theirs[k], dtype=a.dtype).copy()
        self.t = int(state["t"])
        self.beta1, self.beta2, self.eps = (float(state[k]) for k in ("beta1", "beta2", "eps"))


def global_norm(grads: dict, workers=None) -> float:
    """||g||_2 over every gradient at once: sqrt(sum_k sum_i g_ki^2).

    Each block of ``ADAM_BLOCK`` elements (see ``blocks``) is one dot product g . g in the
    gradients' dtype (no temporary array, unlike squaring first); the
    blocks' sums are added in float64, so float32 gradients can only overflow
    it where one block's sum of squares exceeds float32's range (elements of
    about 1e17), and then the norm is inf: a diverged step. One host transfer
    per group of parameters (one group unless ``workers`` split the sum between
    CPU threads).
    """
    def sum_squares(keys):
        total = 0.0
        for k in keys:
            xp = backend_of(grads[k]).xp
            for (g,) in blocks(grads[k]):
                total = total + xp.vdot(g, g).astype(xp.float64)  # vdot flattens
        return float(total)
    if not grads:
        raise ValueError("global_norm: no gradients given")
    return math.sqrt(sum(as_workers(workers).each_group(sum_squares, grads)))


def clip_grad_norm(grads: dict, max_norm: float, workers=None) -> float:
    """Scale all gradients in place so that their global norm is at most ``max_norm``:
        g <- g * min(1, max_norm / ||g||)
    Returns ||g|| before clipping (possibly inf or nan: then nothing is scaled)."""
    if not max_norm > 0:
        raise ValueError(f"clip_grad_norm: max_norm must be positive, got {max_norm}")
    norm = global_norm(grads, workers)
    if math.isfinite(norm) and norm > max_norm:
        scale = float(max_norm) / norm

        def scale_keys(keys):
            for k in keys:
                grads[k] *= scale
        as_workers(workers).each_group(scale_keys, grads)
    return norm
