"""A learner's attention backward that scales dQ but forgets the scale on dK (docs/exercises.md, A session)."""
def attention_backward(dout, cache):
    Q, K, V, P, scale = cache
    dV = P.swapaxes(-1, -2) @ dout
    dP = dout @ V.swapaxes(-1, -2)
    dS = P * (dP - (dP * P).sum(axis=-1, keepdims=True))
    return (dS * scale) @ K, dS.swapaxes(-1, -2) @ Q, dV
