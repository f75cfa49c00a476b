"""Staged mode: the forward as named atomic steps, and a gradient to write for each.

``npformer exercise start ID --staged`` (softmax, layernorm, attention,
cross_entropy) writes a file where the forward is a list of steps such as
``xc = x - mu``, and the learner writes one function per node, ``d_xc(g, f)``,
returning dL/d(xc) from ``g`` (the gradients of the nodes computed later in the
forward, which the backward has already produced) and ``f`` (every forward value).

check computes the true gradient of every node numerically (perturb the node,
rerun the steps after it) and calls each ``d_`` function twice: on the true
upstream gradients (is this step right on its own?) and on the learner's own
chain (what the backward really produces). The first node of the backward that
is wrong on its own gets the diagnosis; a later node that is right on its own
but wrong in the chain "inherits the error from" it. That separates one bug
from the cascade of wrong values it leaves below it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from npformer.verify.diagnose import Finding, diagnose, rel_error
from npformer.verify.gradcheck import numerical_gradient


@dataclass(frozen=True)
class Step:
    name: str
    expr: str        # the step, as the file shows it
    fn: object       # f (dict of values) -> the node's value


def _softmax_graph():
    return ("z",), [
        Step("e", "e = exp(z - max(z))   (the max is a constant shift: it cancels in p)",
             lambda f: f["xp"].exp(f["z"] - f["z"].max(axis=-1, keepdims=True))),
        Step("s", "s = sum_k e_k         (..., 1)", lambda f: f["e"].sum(axis=-1, keepdims=True)),
        Step("p", "p = e / s", lambda f: f["e"] / f["s"]),
    ], "p"


def _layernorm_graph():
    return ("x", "gamma", "beta"), [
        Step("mu", "mu = mean(x)             (..., 1)", lambda f: f["x"].mean(axis=-1, keepdims=True)),
        Step("xc", "xc = x - mu", lambda f: f["x"] - f["mu"]),
        Step("var", "var = mean(xc * xc)      (..., 1)", lambda f: (f["xc"] * f["xc"]).mean(axis=-1, keepdims=True)),
        Step("rstd", "rstd = (var + eps) ** -0.5", lambda f: (f["var"] + f["eps"]) ** -0.5),
        Step("xhat", "xhat = xc * rstd", lambda f: f["xc"] * f["rstd"]),
        Step("y", "y = gamma * xhat + beta", lambda f: f["gamma"] * f["xhat"] + f["beta"]),
    ], "y"


def _attention_graph():
    return ("Q", "K", "V"), [
        Step("S", "S = Q @ K^T               (B, h, T_q, T_k)", lambda f: f["Q"] @ f["K"].swapaxes(-1, -2)),
        Step("Ss", "Ss = S * scale            scale = 1/sqrt(d_k)", lambda f: f["S"] * f["scale"]),
        Step("P", "P = softmax(Ss) over the keys",
             lambda f: (lambda e: e / e.sum(axis=-1, keepdims=True))(
                 f["xp"].exp(f["Ss"] - f["Ss"].max(axis=-1, keepdims=True)))),
        Step("out", "out = P @ V               (B, h, T_q, d_v)", lambda f: f["P"] @ f["V"]),
    ], "out"


def _cross_entropy_graph():
    return ("z",), [
        Step("logp", "logp = z - logsumexp(z)   log-softmax, (..., V)",
             lambda f: f["z"] - (lambda m: m + f["xp"].log(f["xp"].exp(f["z"] - m).sum(axis=-1, keepdims=True)))(
                 f["z"].max(axis=-1, keepdims=True))),
        Step("nll", "nll = -sum_v q_v logp_v   q: 1-eps+eps/V at the target, eps/V elsewhere; (...)",
             lambda f: -(f["q"] * f["logp"]).sum(axis=-1)),
        Step("loss", "loss = sum(nll * valid) / N   valid: the non-pad targets, N of them",
             lambda f: (f["nll"] * f["valid"]).sum() / f["N"]),
    ], "loss"


GRAPHS = {"softmax": _softmax_graph, "layernorm": _layernorm_graph, "attention": _attention_graph,
          "cross_entropy": _cross_entropy_graph}


def draw(exercise_id, rng):
    """Forward inputs and constants for one staged case (float64)."""
    B, T, d = int(rng.integers(2, 4)), int(rng.integers(2, 5)), int(rng.choice([3, 5]))  # sqrt(d) is not 2
    if exercise_id == "softmax":
        return {"z": rng.standard_normal((B, T, d)) * 2}
    if exercise_id == "layernorm":
        return {"x": rng.standard_normal((B, T, d)), "gamma": 1 + 0.5 * rng.standard_normal(d),
                "beta": 0.5 * rng.standard_normal(d), "eps": 1e-5}
    if exercise_id == "attention":
        S = int(rng.integers(2, 5))
        return {"Q": rng.standard_normal((B, 2, T, d)), "K": rng.standard_normal((B, 2, S, d)),
                "V": rng.standard_normal((B, 2, S, d)), "scale": 1 / d ** 0.5}
    V = d + 1
    targets = rng.integers(1, V, (B, T))
    targets[-1, -1] = 0
    eps = 0.1
    q = np.full((B, T, V), eps / V)
    np.put_along_axis(q, targets[..., None], 1 - eps + eps / V, axis=-1)
    valid = (targets != 0).astype(float)
    return {"z": rng.standard_normal((B, T, V)) * 2, "q": q, "valid": valid, "N": float(valid.sum())}


def forward(steps, f):
    f = dict(f)
    for s in steps:
        f[s.name] = s.fn(f)
    return f


def _numeric(steps, f, node, dy):
    """dL/d(node) for L = sum(out * dy): the node perturbed entry by entry, the steps after it rerun."""
    names = [s.name for s in steps]
    later = steps[names.index(node) + 1:] if node in names else steps
    _, g = numerical_gradient(lambda **v: (forward(later, v)[steps[-1].name], None), dict(f), node, dy)
    return g.reshape(np.shape(f[node]))


def backward_order(exercise_id):
    inputs, steps, _ = GRAPHS[exercise_id]()
    return [s.name for s in reversed(steps)][1:] + list(inputs)


def check_staged(exercise_id, module, seed, report, be=None) -> None:
    """The true node gradients on the host (NumPy, float64); the learner's functions get the
    forward values on the backend under test (NumPy, cupysim or CuPy)."""
    from npformer.backend import get_backend
    be = get_backend(be)
    inputs, steps, out = GRAPHS[exercise_id]()
    rng = np.random.default_rng(seed)
    drawn = draw(exercise_id, rng)
    f = forward(steps, {**drawn, "xp": np})
    dev = forward(steps, {**{k: be.asarray(v) if isinstance(v, np.ndarray) else v for k, v in drawn.items()},
                          "xp": be.xp})
    dy = np.asarray(rng.standard_normal(np.shape(f[out])) + 0.5)
    true = {out: dy}
    for name in backward_order(exercise_id):
        true[name] = _numeric(steps, f, name, dy)
    true_dev = {k: be.asarray(v) for k, v in true.items()}
    mine = {out: true_dev[out]}
    first = None
    for name in backward_order(exercise_id):
        fn = getattr(module, f"d_{name}", None)
        if fn is None:
            report.findings.append(Finding(f"d_{name}", "staged", "the file", f"d_{name}(g, f) is missing", "missing"))
            return
        try:
            alone_dev = fn(dict(true_dev), dict(dev))
            chained_dev = fn(dict(mine), dict(dev))
            alone, chained = np.asarray(be.to_host(alone_dev)), np.asarray(be.to_host(chained_dev))
        except NotImplementedError:
            report.verdict = "not started"
            report.findings.append(Finding(f"d_{name}", "staged", "the function body", "raises NotImplementedError",
                                           "not started"))
            return
        except Exception as e:  # noqa: BLE001 -- the learner's error is a finding
            report.findings.append(Finding(f"d_{name}", "staged", "a call", f"raised {type(e).__name__}: {e}",
                                           "exception"))
            return
        mine[name] = chained_dev
        err_alone = rel_error(alone, true[name]) if alone.shape == true[name].shape else float("inf")
        err_chain = rel_error(chained, true[name]) if chained.shape == true[name].shape else float("inf")
        report.rows.append(("staged", "on the true upstream / in your chain", f"d{name}",
                            max(err_alone, err_chain)))
        own = diagnose(f"d{name}", "staged, on the true upstream gradients", alone, true[name],
                       _context(exercise_id, name, f))
        if own is not None:
            if first is None:
                first = name
            report.findings.append(own)
        elif err_chain > 1e-7:
            report.findings.append(Finding(f"d{name}", "staged, in your chain", "every entry the error reaches",
                                           f"is right on its own but inherits the error from d{first}: fix d{first} "
                                           "first", f"inherits:d{first}", err_chain))


def _context(exercise_id: str, node: str, f: dict) -> dict:
    """What the detectors may recognise at one node: the sizes behind a scale, and for the scores of
    attention, the weight p that the softmax's missing -sum(dP * P) term leaves the error in."""
    if exercise_id == "attention":
        ctx = {"d_k": f["Q"].shape[-1]}
        if node == "Ss":
            ctx["weights"] = {"dSs": [("P", f["P"])]}
            ctx["weight_hints"] = {"P": "the softmax's -sum(dP * P) term (one number per query row) is missing "
                                        "or wrong"}
        return ctx
    if exercise_id == "cross_entropy":
        pads = f["valid"] == 0
        return {"n_valid": int(f["valid"].sum()), "n_all": int(f["valid"].size),
                "regions": {"dnll": [("the pad targets", pads)], "dlogp": [("the pad targets", pads[..., None])],
                            "dz": [("the pad targets", pads[..., None])]},
                "weights": {"dz": [("p", np.exp(f["logp"]))]},
                "weight_hints": {"p": "the softmax's part of log-softmax's backward, -p * sum(g) over the row, "
                                      "is missing or wrong"}}
    if exercise_id == "layernorm":
        return {"n_mean": f["x"].shape[-1], "weights": {"dxc": [("xc", f["xc"])], "dx": [("xhat", f["xhat"])]},
                "weight_hints": {"xc": "the path through the variance (var = mean(xc * xc)) is missing or wrong"}}
    return {}


def template(exercise_id: str) -> str:
    inputs, steps, out = GRAPHS[exercise_id]()
    users = {}
    for s in steps:
        for other in steps:
            if other is not s and f'f["{s.name}"]' in _source(other):
                users.setdefault(s.name, []).append(other.name)
    for name in inputs:
        users[name] = [s.name for s in steps if f'f["{name}"]' in _source(s)]
    lines = [f'"""Exercise {exercise_id}, staged: one gradient per step of the forward.', "",
             "The forward, step by step (f holds every value below, and the constants):", ""]
    lines += [f"    {s.expr}" for s in steps]
    lines += ["", "Write d_NODE(g, f) for each node, returning dL/dNODE. g holds the gradients of",
              f"the nodes later in the forward (g[\"{out}\"] is the upstream gradient); f the forward values.",
              "A node used by two later steps collects a term from each. `npformer exercise check "
              f"{exercise_id}` grades", "each step on its own and in your chain, and names the first wrong one.",
              '"""', "import numpy as np  # noqa: F401", "", "STAGED = True"]
    for name in backward_order(exercise_id):
        lines += ["", "", f"def d_{name}(g, f):",
                  f'    """dL/d{name}; {name} is used by: {", ".join(users.get(name, [])) or "-"}."""',
                  f'    raise NotImplementedError("write d_{name}")']
    return "\n".join(lines) + "\n"


def _source(step) -> str:
    import inspect
    try:
        return inspect.getsource(step.fn)
    except (OSError, TypeError):
        return ""
