"""A learner's staged LayerNorm with a sign slip in d_var (docs/exercises.md, Staged mode)."""
STAGED = True


def d_xhat(g, f):
    return g["y"] * f["gamma"]


def d_rstd(g, f):
    return (g["xhat"] * f["xc"]).sum(axis=-1, keepdims=True)


def d_var(g, f):
    return 0.5 * (f["var"] + f["eps"]) ** -1.5 * g["rstd"]   # the sign of -0.5 slipped


def d_xc(g, f):
    n = f["xc"].shape[-1]
    return g["xhat"] * f["rstd"] + g["var"] * 2 * f["xc"] / n


def d_mu(g, f):
    return -g["xc"].sum(axis=-1, keepdims=True)


def d_x(g, f):
    return g["xc"] + g["mu"] / f["x"].shape[-1]


def d_gamma(g, f):
    return (g["y"] * f["xhat"]).reshape(-1, f["xhat"].shape[-1]).sum(axis=0)


def d_beta(g, f):
    return g["y"].reshape(-1, g["y"].shape[-1]).sum(axis=0)
