"""The seam: ops and blocks call each other through npformer.ops and npformer.model, read at
call time, and ``swapped`` replaces a function there, and nowhere else, until it exits."""
import ast
import importlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from npformer import model, ops
from npformer.model.params import init_params
from npformer.verify.model_cases import TINY

PACKAGE = Path(__file__).resolve().parents[2] / "npformer"
NAMESPACES = {"ops": ops, "model": model}


def counting(namespace, names, calls: Counter) -> dict:
    """name -> a function that counts its calls and runs the one the namespace holds now."""
    def wrap(name, real):
        def counted(*args, **kwargs):
            calls[name] += 1
            return real(*args, **kwargs)
        return counted
    return {name: wrap(name, getattr(namespace, name)) for name in names}


def defining_module_function(name):
    """The function ``name`` as the module that defines it holds it (never swapped)."""
    for namespace in NAMESPACES.values():
        if name in namespace.FUNCTIONS:
            fn = getattr(namespace, name)
            return getattr(importlib.import_module(fn.__module__), name)
    raise KeyError(name)


def test_a_learners_softmax_runs_inside_the_reference_attention_and_cross_entropy():
    rng = np.random.default_rng(0)
    Q, K, V = (rng.standard_normal((2, 2, 5, 4)) for _ in range(3))
    mask = np.tril(np.ones((5, 5), bool))[None, None]
    logits, targets = rng.standard_normal((2, 5, 7)), rng.integers(1, 7, (2, 5))
    want_out, want_cache = ops.attention_forward(Q, K, V, mask)
    want_grads = ops.attention_backward(np.ones_like(want_out), want_cache)
    want_loss = ops.cross_entropy_forward(logits, targets)[0]

    calls = Counter()
    with ops.swapped(counting(ops, ["softmax_forward", "softmax_backward", "softmax_terms"], calls)):
        out, cache = ops.attention_forward(Q, K, V, mask)
        grads = ops.attention_backward(np.ones_like(out), cache)
        loss = ops.cross_entropy_forward(logits, targets)[0]
    assert calls == {"softmax_forward": 1, "softmax_backward": 1, "softmax_terms": 1}  # the last: cross-entropy
    np.testing.assert_array_equal(out, want_out)
    for g, w in zip(grads, want_grads):
        np.testing.assert_array_equal(g, w)
    assert loss == want_loss


def test_a_wrong_softmax_swapped_in_changes_attention_and_nothing_after():
    rng = np.random.default_rng(1)
    Q, K, V = (rng.standard_normal((1, 1, 3, 2)) for _ in range(3))
    out, cache = ops.attention_forward(Q, K, V)
    right = ops.attention_backward(np.ones_like(out), cache)[0]
    with ops.swapped({"softmax_backward": lambda dp, c, out=None: dp * c.p}):  # the sum term forgotten
        wrong = ops.attention_backward(np.ones_like(out), cache)[0]
    assert not np.allclose(wrong, right)
    np.testing.assert_array_equal(ops.attention_backward(np.ones_like(out), cache)[0], right)


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_one_training_step_reads_every_block_through_the_model_namespace(norm):
    """encoder_backward reads encoder_layer_backward, loss_and_grads transformer_backward, ... from
    npformer.model: a block swapped there is the block that runs. The only plain calls are a
    block's own parts: sublayer_out_* is add_norm_* in post-LN."""
    cfg = TINY.replace(norm=norm, p_drop=0.1)
    params = init_params(cfg, seed=0, dtype="float64")
    src = np.random.default_rng(0).integers(3, cfg.vocab_size, (2, 5))
    calls = Counter()
    with model.swapped(counting(model, model.FUNCTIONS, calls)):
        model.loss_and_grads(params, cfg, src, src, src, np.random.default_rng(1))
    assert set(model.FUNCTIONS) - set(calls) == {"add_norm_forward", "add_norm_backward"}
    assert calls["encoder_layer_backward"] == calls["decoder_layer_backward"] == cfg.n_layers


def test_a_swapped_sinusoidal_table_is_the_one_the_model_adds():
    """The model caches its positional table per table function: nothing to clear."""
    from npformer.model.transformer import transformer_forward
    cfg = TINY.replace(p_drop=0.0)
    params = init_params(cfg, seed=0, dtype="float64")
    src = np.random.default_rng(2).integers(3, cfg.vocab_size, (2, 4))
    want = transformer_forward(params, cfg, src, src)[0]

    def zeros(max_len, d_model, xp, dtype="float32"):
        return xp.zeros((max_len, d_model), dtype=dtype)
    with ops.swapped({"sinusoidal_table": zeros}):
        got = transformer_forward(params, cfg, src, src)[0]
    assert not np.allclose(got, want)
    np.testing.assert_array_equal(transformer_forward(params, cfg, src, src)[0], want)


@pytest.mark.parametrize("which", sorted(NAMESPACES))
def test_after_the_context_every_function_is_the_reference_again_also_after_an_exception(which):
    namespace = NAMESPACES[which]
    before = {n: getattr(namespace, n) for n in namespace.FUNCTIONS}
    assert all(fn is defining_module_function(n) for n, fn in before.items())

    def broken(*args, **kwargs):
        raise AssertionError("never called")
    with pytest.raises(KeyError, match="boom"), namespace.swapped({n: broken for n in namespace.FUNCTIONS}):
        assert all(getattr(namespace, n) is broken for n in namespace.FUNCTIONS)
        raise KeyError("boom")
    assert {n: getattr(namespace, n) for n in namespace.FUNCTIONS} == before

    with namespace.swapped({namespace.FUNCTIONS[0]: broken}):   # nested: each exit restores its own
        with namespace.swapped({namespace.FUNCTIONS[0]: print}):
            assert getattr(namespace, namespace.FUNCTIONS[0]) is print
        assert getattr(namespace, namespace.FUNCTIONS[0]) is broken
    assert {n: getattr(namespace, n) for n in namespace.FUNCTIONS} == before


def test_swapping_an_unknown_name_or_not_a_function_is_refused_and_changes_nothing():
    before = ops.layernorm_backward
    with pytest.raises(ValueError, match=r"swapped: layernorm_bakward is not a function of npformer\.ops; "
                                         r"it swaps only .*layernorm_backward"):
        with ops.swapped({"layernorm_backward": print, "layernorm_bakward": print}):
            pass
    with pytest.raises(ValueError, match=r"split_heads is not a function of npformer\.ops"):
        ops.swapped({"split_heads": print}).__enter__()
    with pytest.raises(ValueError, match=r"layernorm_backward is not a function of npformer\.model"):
        model.swapped({"layernorm_backward": print}).__enter__()  # an op, swapped in the ops' namespace
    with pytest.raises(TypeError, match="layernorm_backward must be a function, got int"):
        ops.swapped({"layernorm_backward": 3}).__enter__()
    assert ops.layernorm_backward is before


def plain_calls(path: Path) -> set:
    """(the function called, the def it is called from) for each call by a bare name in ``path``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.FunctionDef):
            found |= {(sub.func.id, node.name) for sub in ast.walk(node)
                      if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name)}
    return found


SEAM = set(ops.FUNCTIONS) | set(model.FUNCTIONS)
# a block's own parts, called directly: the sublayer exercise swaps the three sublayer functions
# together, and softmax_terms is softmax_forward's own arithmetic
OWN_PARTS = {("add_norm_forward", "sublayer_out_forward"), ("add_norm_backward", "sublayer_out_backward"),
             ("softmax_terms", "softmax_forward")}


@pytest.mark.parametrize("path", sorted([*(PACKAGE / "ops").glob("*.py"), *(PACKAGE / "model").glob("*.py")]),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_ops_and_blocks_call_each_other_only_through_the_namespaces(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    bound = {a.asname or a.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
             and node.module and node.module.startswith("npformer.") and path.name != "__init__.py"
             for a in node.names} & SEAM
    assert not bound, f"{path.name} binds {sorted(bound)} at import: call them as ops.NAME / model.NAME"
    plain = {(f, caller) for f, caller in plain_calls(path) if f in SEAM} - OWN_PARTS
    assert not plain, f"{path.name} calls {sorted(plain)} by a plain name, past the namespace"


def test_the_check_of_plain_calls_can_fail(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text("def fused_linear_backward(dy, cache):\n    return linear_backward(dy, cache.linear)\n")
    assert plain_calls(planted) == {("linear_backward", "fused_linear_backward")}
