"""Staged mode: each step graded on its own and in the learner's chain; the first wrong node is
named, and the nodes below it that are right on their own inherit its error."""
import types

import pytest

from npformer.exercise import check, files
from npformer.exercise.staged import GRAPHS, backward_order

LAYERNORM_KEY = '''
STAGED = True
def d_xhat(g, f): return g["y"] * f["gamma"]
def d_rstd(g, f): return (g["xhat"] * f["xc"]).sum(axis=-1, keepdims=True)
def d_var(g, f): return -0.5 * g["rstd"] * (f["var"] + f["eps"]) ** -1.5
def d_xc(g, f): return g["xhat"] * f["rstd"] + g["var"] * 2 * f["xc"] / f["xc"].shape[-1]
def d_mu(g, f): return -g["xc"].sum(axis=-1, keepdims=True)
def d_x(g, f): return g["xc"] + g["mu"] / f["x"].shape[-1]
def d_gamma(g, f): return (g["y"] * f["xhat"]).reshape(-1, f["gamma"].shape[0]).sum(axis=0)
def d_beta(g, f): return g["y"].reshape(-1, f["beta"].shape[0]).sum(axis=0)
'''

SOFTMAX_KEY = '''
STAGED = True
def d_s(g, f): return -(g["p"] * f["e"]).sum(axis=-1, keepdims=True) / f["s"] ** 2
def d_e(g, f): return g["p"] / f["s"] + g["s"]
def d_z(g, f): return g["e"] * f["e"]
'''

ATTENTION_KEY = '''
STAGED = True
def d_P(g, f): return g["out"] @ f["V"].swapaxes(-1, -2)
def d_Ss(g, f): return f["P"] * (g["P"] - (g["P"] * f["P"]).sum(axis=-1, keepdims=True))
def d_S(g, f): return g["Ss"] * f["scale"]
def d_Q(g, f): return g["S"] @ f["K"]
def d_K(g, f): return g["S"].swapaxes(-1, -2) @ f["Q"]
def d_V(g, f): return f["P"].swapaxes(-1, -2) @ g["out"]
'''

CROSS_ENTROPY_KEY = '''
import numpy as np
STAGED = True
def d_nll(g, f): return g["loss"] * f["valid"] / f["N"]
def d_logp(g, f): return -f["q"] * g["nll"][..., None]
def d_z(g, f): return g["logp"] - np.exp(f["logp"]) * g["logp"].sum(axis=-1, keepdims=True)
'''


def module(text):
    m = types.ModuleType("learner")
    exec(text, m.__dict__)
    return m


@pytest.mark.parametrize("exercise_id,key", [("layernorm", LAYERNORM_KEY), ("softmax", SOFTMAX_KEY),
                                             ("attention", ATTENTION_KEY), ("cross_entropy", CROSS_ENTROPY_KEY)])
@pytest.mark.parametrize("backend", ["numpy", "cupysim"])
def test_a_right_staged_answer_passes(exercise_id, key, backend):
    report = check(exercise_id, module(key), seed=5, quiet=True, backend=backend)
    assert report.passed and report.backend == backend, str(report)
    assert [r[2] for r in report.rows] == ["d" + n for n in backward_order(exercise_id)]


def test_the_first_wrong_node_is_named_and_the_later_ones_inherit():
    wrong = LAYERNORM_KEY.replace('return -0.5 * g["rstd"]', 'return 0.5 * g["rstd"]')
    report = check("layernorm", module(wrong), seed=5, quiet=True)
    assert not report.passed
    by_node = {f.gradient: f.tag for f in report.findings}
    assert by_node["dvar"] == "scale:-1"
    assert by_node["dxc"] == by_node["dx"] == "inherits:dvar"
    assert "dgamma" not in by_node and "drstd" not in by_node


def test_a_second_independent_bug_is_not_called_inherited():
    wrong = LAYERNORM_KEY.replace('return -0.5 * g["rstd"]', 'return 0.5 * g["rstd"]').replace(
        'return g["xc"] + g["mu"] / f["x"].shape[-1]', 'return g["xc"] + g["mu"]')
    by_node = {f.gradient: f.tag for f in check("layernorm", module(wrong), seed=5, quiet=True).findings}
    assert by_node["dvar"] == "scale:-1" and not by_node["dx"].startswith("inherits")


@pytest.mark.parametrize("exercise_id", list(GRAPHS))
def test_start_staged_writes_one_function_per_node(tmp_path, exercise_id):
    files.start(exercise_id, str(tmp_path), staged=True)
    m = files.load(exercise_id, str(tmp_path))
    assert m.STAGED and all(callable(getattr(m, f"d_{n}")) for n in backward_order(exercise_id))
    assert check(exercise_id, m, seed=1, quiet=True).verdict == "not started"


def test_the_label_smoothed_target_in_the_staged_text_is_the_one_drawn():
    # the step says q is 1-eps+eps/V at the target and eps/V elsewhere: check it on the q the draw builds
    import numpy as np

    from npformer.exercise.staged import draw
    _, steps, _ = GRAPHS["cross_entropy"]()
    text = next(s.expr for s in steps if s.name == "nll")
    assert "1-eps+eps/V at the target, eps/V elsewhere" in text
    f = draw("cross_entropy", np.random.default_rng(0))
    q, z = f["q"], f["z"]
    V, eps = z.shape[-1], 0.1
    at_target = np.isclose(q, 1 - eps + eps / V)
    assert (at_target.sum(axis=-1) == 1).all() and np.allclose(q[~at_target], eps / V)
    assert np.allclose(q.sum(axis=-1), 1.0)
