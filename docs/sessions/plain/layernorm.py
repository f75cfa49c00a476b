"""A learner's LayerNorm backward that forgets the variance term (docs/exercises.md, A session)."""
def layernorm_backward(dy, cache):
    xhat, rstd, gamma = cache
    d = xhat.shape[-1]
    g = dy * gamma
    dx = (g - g.mean(axis=-1, keepdims=True)) * rstd
    return dx, (dy * xhat).reshape(-1, d).sum(axis=0), dy.reshape(-1, d).sum(axis=0)
