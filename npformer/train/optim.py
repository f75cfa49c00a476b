"""Adam (Kingma & Ba, 2015) and gradient-norm clipping. Paper §5.3.

"We used the Adam optimizer with beta1 = 0.9, beta2 = 0.98 and epsilon = 1e-9."

For every parameter theta with gradient g, at step t = 1, 2, ...:
    m_t     = beta1 m_{t-1} + (1 - beta1) g            first moment (running mean of g)
    v_t     = beta2 v_{t-1} + (1 - beta2) g^2          second moment (running mean of g^2)
    m_hat   = m_t / (1 - beta1^t)                      bias correction: m_0 = v_0 = 0 pull
    v_hat   = v_t / (1 - beta2^t)                      the early averages towards zero
    theta  <- theta - lr_t m_hat / (sqrt(v_hat) + eps)

Parameters, gradients and the moments m, v are flat dicts with the same keys.
The update is in place and keeps the parameters' dtype: on the host every
scalar is a Python float, which NumPy 2 casts to the array's dtype (a NumPy
float64 scalar would upcast the whole update); the fused device kernel gets
scalars of the parameters' dtype, since ``cupy.fuse`` types a Python float
as float64.

Gradient clipping by the global norm scales g by s = min(1, max_norm / ||g||)
before the update. Adam takes s as ``grad_scale`` and folds it into its
constants, (1 - beta1) s and (1 - beta2) s^2, so clipping costs no pass of its own.

Two forms of the one update:
  * on the host (NumPy), ``Adam._update_one`` is the readable reference: a
    dozen whole-array passes per parameter, run block by block in the CPU cache;
  * on a device (CuPy), the parameters and moments live in one flat buffer each
    (``FlatDict``, flat.py) and ``adam_body`` applies the same equations to every
    element in one fused kernel (``cupy.fuse``). Hundreds of small per-array
    kernels would otherwise leave the GPU waiting on launches. The kernel pairs
    the two buffers element by element, so the gradients' buffer must be laid
    out as the parameters' (``FlatDict(grads, layout=params)``); ``update``
    refuses any other layout before it changes anything. The gradient norm
    there is one dot product over the flat gradient.
Tests check that both forms give the same update.
"""
from __future__ import annotations

import math

from npformer.backend import backend_of
from npformer.runtime.flat import FlatDict
from npformer.runtime.workers import as_workers


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
    if (backend_of(*arrays).on_device or first.size <= ADAM_BLOCK
            or not all(a.flags.c_contiguous for a in arrays)):
        yield arrays
        return
    flat = [a.reshape(-1) for a in arrays]  # views: contiguous
    for start in range(0, first.size, ADAM_BLOCK):
        yield tuple(f[start:start + ADAM_BLOCK] for f in flat)


def adam_body(xp):
    """The Adam update of one element, for ``cupy.fuse`` (one kernel over every element):
    the same equations as ``Adam._update_one``, with c1 = (1 - beta1) s, c2 = (1 - beta2) s^2,
    step = lr sqrt(C2) / C1 and eps_hat = eps sqrt(C2) (C1, C2 the bias corrections)."""
    def body(theta, g, m, v, b1, c1, b2, c2, step, eps_hat):
        m *= b1
        m += c1 * g  # m_t = beta1 m + (1 - beta1) s g
        v *= b2
        v += c2 * (g * g)  # v_t = beta2 v + (1 - beta2) (s g)^2
        theta -= step * (m / (xp.sqrt(v) + eps_hat))  # the host's order of operations
    return body


class Adam:
    """Adam over a flat parameter dict; the learning rate is given at each step.

    On a device backend the parameters must be a ``FlatDict`` (``init_state``
    and ``load_state`` make them one), so that one kernel updates them all."""

    def __init__(self, params: dict, beta1: float = 0.9, beta2: float = 0.98, eps: float = 1e-9):
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)
        self.t = 0  # steps taken so far
        be = backend_of(*params.values())
        self.fused = be.on_device
        if self.fused:
            if not isinstance(params, FlatDict):
                raise TypeError("adam: on a device backend the parameters must be a FlatDict "
                                "(npformer.runtime.flat), so that one kernel can update them all")
            self.m, self.v = FlatDict(params), FlatDict(params)
            self.m.flat.fill(0)
            self.v.flat.fill(0)
            self._params_flat = params.flat
            self._kernel = be.fuse(adam_body(be.xp))
        else:
            self.m = {k: be.xp.zeros_like(p) for k, p in params.items()}
            self.v = {k: be.xp.zeros_like(p) for k, p in params.items()}

    def update(self, params: dict, grads: dict, lr: float, workers=None, grad_scale: float = 1.0) -> None:
        """One Adam step: change every ``params[k]`` in place using ``grad_scale * grads[k]``.

        ``workers`` (npformer/runtime/workers.py) share the parameters out between CPU
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
        if self.fused:
            if getattr(params, "flat", None) is not self._params_flat:
                raise ValueError("adam: the parameters are not the FlatDict this optimizer was built "
                                 "with; build the optimizer after the parameters are final")
            if not isinstance(grads, FlatDict):
                grads = FlatDict(grads, layout=params)  # whatever the dict's order
            # element i of grads.flat must be the gradient of element i of params.flat
            params.require_same_layout(grads, "adam: the gradients")
        self.t += 1
        lr, s = float(lr), float(grad_scale)
        b1, b2 = self.beta1, self.beta2
        c1, c2 = (1.0 - b1) * s, (1.0 - b2) * s * s
        # lr m_hat / (sqrt(v_hat) + eps) with the bias corrections folded into two
        # scalars (multiply top and bottom by sqrt(C2)):
        #   = (lr sqrt(C2) / C1) m / (sqrt(v) + eps sqrt(C2))
        root_c2 = math.sqrt(1.0 - b2 ** self.t)  # Python floats: no dtype promotion
        step, eps_hat = lr * root_c2 / (1.0 - b1 ** self.t), self.eps * root_c2
        if self.fused:
            # Scalars of the parameters' dtype: cupy.fuse types a Python float as float64,
            # which would run a float32 update in float64.
            scalars = (params.flat.dtype.type(x) for x in (b1, c1, b2, c2, step, eps_hat))
            self._kernel(params.flat, grads.flat, self.m.flat, self.v.flat, *scalars)
            return

        def update_keys(keys):
            for k in keys:
                # Block by block, so that the dozen passes of the update over a block
                # run in the CPU cache rather than going out to memory a dozen times.
                for theta, g, m, v in blocks(params[k], grads[k], self.m[k], self.v[k]):
                    self._update_one(theta, g, m, v, b1, c1, b2, c2, step, eps_hat)
        as_workers(workers).each_group(update_keys, params)

    @staticmethod
    def _update_one(theta, g, m, v, b1, c1, b2, c2, step, eps_hat) -> None:
        xp = backend_of(theta, g).xp
        # One scratch buffer per parameter serves every temporary: the update is
        # memory-bound, so fewer passes and allocations are what make it fast.
        tmp = xp.multiply(g, g)
        tmp *= c2
        v *= b2
        v += tmp  # v_t = beta2 v + (1 - beta2) (s g)^2
        xp.multiply(g, c1, out=tmp)
        m *= b1
        m += tmp  # m_t = beta1 m + (1 - beta1) s g
        xp.sqrt(v, out=tmp)
        tmp += eps_hat
        xp.divide(m, tmp, out=tmp)
        tmp *= step
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


def squared_norm(grads: dict, workers=None):
    """||g||^2 = sum_k sum_i g_ki^2 over every gradient, as a 0-d float64 array on the
    gradients' device: nothing is read back to the host, so a caller can fetch it
    together with the loss in one read.

    On the host each block of ``ADAM_BLOCK`` elements (see ``blocks``) is one dot
    product g . g in the gradients' dtype (no temporary array); the blocks' sums
    are added in float64, so float32 gradients can only overflow it where one
    block's sum of squares exceeds float32's range (elements of about 1e17), and
    then the norm is inf: a diverged step. On a device it is one dot product
    over the flat gradient buffer. ``workers`` split the sum between CPU threads.
    """
    if not grads:
        raise ValueError("squared_norm: no gradients given")
    be = backend_of(*grads.values())
    xp = be.xp
    if be.on_device:
        g = grads.flat if isinstance(grads, FlatDict) else FlatDict(grads).flat  # a sum: any order will do
        return xp.vdot(g, g).astype(xp.float64)

    def sum_squares(keys):
        total = xp.zeros((), dtype=xp.float64)
        for k in keys:
            for (g,) in blocks(grads[k]):
                total += xp.vdot(g, g)  # vdot flattens
        return total
    return sum(as_workers(workers).each_group(sum_squares, grads))


def global_norm(grads: dict, workers=None) -> float:
    """||g||_2 over every gradient at once, as a host float (one read on a device)."""
    return math.sqrt(float(squared_norm(grads, workers)))


def clip_scale(norm: float, max_norm: float | None) -> float:
    """s = min(1, max_norm / ||g||): the factor that clips the gradients' global norm
    to ``max_norm`` (1 when ``max_norm`` is None, or the norm is not finite: a
    diverged step is stopped, not rescued)."""
    if max_norm is None:
        return 1.0
    if not max_norm > 0:
        raise ValueError(f"clip: max_norm must be positive, got {max_norm}")
    return float(max_norm) / norm if math.isfinite(norm) and norm > max_norm else 1.0


def clip_grad_norm(grads: dict, max_norm: float, workers=None) -> float:
    """Scale all gradients in place so that their global norm is at most ``max_norm``:
        g <- g * min(1, max_norm / ||g||)
    Returns ||g|| before clipping (possibly inf or nan: then nothing is scaled).
    (The training loop passes the factor to ``Adam.update`` instead.)"""
    norm = global_norm(grads, workers)
    scale = clip_scale(norm, max_norm)
    if scale != 1.0:
        def scale_keys(keys):
            for k in keys:
                grads[k] *= scale
        as_workers(workers).each_group(scale_keys, grads)
    return norm
