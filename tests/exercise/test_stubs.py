"""What ``start`` writes and what ``hint`` says lead the learner to the answer without giving it.

A stub holds the signature, the forward, the cache's fields and shapes, and what to
return (names and shapes, in order); never an equation of the backward. A hint gives
the concept (level 1), the structure (level 2: which paths, which shapes, which sums)
or what to read (level 3); never the final formula, and never advice that leads into
a known mistake.

The answer is checked in three forms: the statements of npformer's reference backward
(its code), the equations in the reference's docstring (``dz = p * (dp - ...)``), and
the final formulas written below by hand, for the variants, which have no reference,
and for the ops whose answer is short enough to be stated in a sentence.
"""
import ast
import inspect
import re
import textwrap

import numpy as np
import pytest

from npformer.backend import get_backend
from npformer.exercise import EXERCISES, VARIANT_IDS, cases, files, staged, variants

WITH_FUNCTIONS = [i for i, e in EXERCISES.items() if e.functions]
STAGED_IDS = list(staged.GRAPHS)


def _hints(exercise_id):
    return EXERCISES[exercise_id].hints if exercise_id in EXERCISES else variants.HINTS[exercise_id]


def _flat(text: str) -> str:
    """text as code compares: comment markers, backticks and every blank removed, one kind of quote,
    lower case. ``dx = dy @ W.T`` in a stub's comment and ``dx=dy@W.T`` in a hint both become
    ``dx=dy@w.t``."""
    text = "\n".join(re.sub(r"^\s*#", "", line) for line in text.splitlines())
    return re.sub(r"\s+", "", text).replace("`", "").replace('"', "'").lower()


def _name_of(node) -> str:
    return node.id if isinstance(node, ast.Name) else ""


def _is_shape_read(value) -> bool:
    if isinstance(value, ast.Subscript):
        value = value.value
    return isinstance(value, ast.Attribute) and value.attr == "shape"


def _answer_statements(fn) -> list:
    """The statements of a reference function that compute its answer, as source text.

    Skipped, because the stub gives their content on purpose or they hold none:
    reading the cache (``x, W = cache``, ``p = cache.p``: the stub prints the cache's
    fields); reading a shape (``d_in, d_out = W.shape``: the stub gives the shapes);
    taking the array module (``xp = backend_of(dy).xp``: the stub says how);
    ``return dx, dW, db`` when every name was computed by an earlier statement (that
    statement is checked instead); and any statement of the forward the stub shows.
    ``return dz, dz`` (residual) is kept: its names are inputs, so it is the answer.
    """
    src = textwrap.dedent(inspect.getsource(fn))
    func = ast.parse(src).body[0]
    assigned = set()
    for node in ast.walk(func):
        if isinstance(node, (ast.Assign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                assigned.update(_name_of(n) for n in ast.walk(t))
    module = inspect.getmodule(fn)
    forward = getattr(module, fn.__name__.replace("_backward", "_forward"), None)
    shown = _flat(inspect.getsource(forward)) if forward is not None and forward is not fn else ""
    out = []
    for node in ast.walk(func):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # the docstring: its equations are checked by _docstring_equations
        if not isinstance(node, (ast.Assign, ast.AugAssign, ast.Return, ast.Expr)):
            continue
        value = node.value
        if isinstance(node, ast.Return):
            names = value.elts if isinstance(value, ast.Tuple) else [value]
            if value is None or all(isinstance(n, ast.Name) and n.id in assigned for n in names):
                continue
        if isinstance(node, ast.Assign):
            if _name_of(value) == "cache" or (isinstance(value, ast.Attribute) and _name_of(value.value) == "cache"):
                continue
            if _is_shape_read(value) or "backend_of(" in ast.get_source_segment(src, value):
                continue
        text = ast.get_source_segment(src, node)
        if _flat(text) not in shown:
            out.append(text)
    return out


_EQUATION = re.compile(r"\b(d[A-Za-z]\w*)`{0,2}\s*(?:\([^)]*\)\s*)?=(?!=)\s*([^;,]+)")


def _docstring_equations(fn) -> list:
    """``dz = p * (dp - sum(dp * p))`` -> the right-hand side, for every equation of a gradient
    (a name starting with d) in fn's docstring."""
    eqs = []
    for line in (inspect.getdoc(fn) or "").splitlines():
        for m in _EQUATION.finditer(line):
            rhs = m.group(2).strip().rstrip(".")
            if len(_flat(rhs)) >= 3:
                eqs.append(rhs)
    return eqs


def _compact(text: str) -> str:
    """text as prose and formulas compare: lower case, no backticks, no blank around an operator
    or a bracket, one blank between words. ``p - q, where`` becomes ``p-q,where``."""
    text = re.sub(r"\s*([^\w\s])\s*", r"\1", text.replace("`", "").lower())
    return re.sub(r"\s+", " ", text)


# The final formulas, as they read after _compact (" ?" where two words may touch, as in dy W^T):
# for the variants, which have no reference, and for the ops whose answer fits in a sentence of
# prose that no statement of the reference matches.
ANSWER_FORMS = {
    "linear": [r"dy ?w\^t", r"dy@w\.t", r"x\^t ?dy", r"x\.t@dy"],
    "relu": [r"dy\*(cache\.)?positive", r"dy ?\*? ?\[x>0\]"],
    "dropout": [r"dy\*(cache\.)?scale", r"dy\*keep/\(1-p\)"],
    "softmax": [r"p ?\*? ?\(dp-", r"diag\(p\)-p ?p", r"p ?\*? ?dp-p ?\*? ?\("],
    "layernorm": [r"g-mean\(g\)", r"mean\(g ?\*? ?xhat\)", r"mean\(dy\*gamma\)"],
    "attention": [r"p\^t ?@? ?dout", r"p\.t@dout", r"dout ?@? ?v\^t", r"ds\^t ?@? ?q", r"ds@k"],
    "multihead": [r"w_[qkv]\^t", r"w_[qkv]\.t"],
    "feedforward": [r"w_[12]\^t", r"r\^t ?@? ?dy", r"x\^t ?@? ?da"],
    "cross_entropy": [r"\bp-q\b", r"softmax-q\b", r"\bp-one-?hot"],
    "model": [r"de_?src\+de_?tgt\+de_?out", r"dlogits ?@? ?e(_out)?\b", r"dlogits\^t ?@? ?h"],
    "rmsnorm": [r"dy ?\*? ?x ?\*? ?rrms", r"rrms ?(\^|\*\*) ?[23]", r"mean\(g ?\*? ?x\)", r"-rrms"],
    "gelu": [r"1-t ?(\^2|\*\*2|\*t|²)", r"0\.5 ?\*? ?\(1\+t\)\+", r"3 ?\*? ?0\.044715", r"0\.134145"],
    "softmax_temperature": [r"p ?\*? ?\(d[pyz]-", r"\(1/tau\) ?\*? ?p", r"/tau ?\*? ?p ?\*? ?\(",
                            r"sum\(d[py] ?\*? ?p\)"],
    "cross_entropy_ignore_index": [r"\bp-(q|one-?hot)\b", r"softmax(\(z\))?-one"],
}

# any gradient equation at all: dx = ..., dW[i] = ... (d then a letter: d_model = 512 is not one)
_ANY_GRADIENT_EQUATION = re.compile(r"(?<![\w.])d[a-z]\w*(\[[^\]]*\])?\s*=(?!=)")


def _gradient_equation(text: str):
    """The first gradient equation in text (words kept apart, unlike _flat), or None."""
    m = _ANY_GRADIENT_EQUATION.search(re.sub(r"\s+", " ", text.replace("`", "")).lower())
    return m and m.group(0)


def _leaks(text: str, exercise_id: str) -> list:
    """Every form of the answer to ``exercise_id`` found in ``text``."""
    flat = _flat(text)
    found = []
    if exercise_id in EXERCISES:
        for fn in EXERCISES[exercise_id].references().values():
            found += [f"the reference's statement {s!r}" for s in _answer_statements(fn) if _flat(s) in flat]
            found += [f"the reference's equation ... = {e}" for e in _docstring_equations(fn) if _flat(e) in flat]
    found += [f"the final formula /{f}/" for f in ANSWER_FORMS.get(exercise_id, []) if re.search(f, _compact(text))]
    return found


def _learner_text(stub: str) -> str:
    """What the stub writes in the learner's functions: their docstrings (their bodies only raise)."""
    return "\n".join(ast.get_docstring(node) or "" for node in ast.parse(stub).body
                     if isinstance(node, ast.FunctionDef))


@pytest.mark.parametrize("exercise_id", WITH_FUNCTIONS + list(VARIANT_IDS))
def test_the_stub_shows_no_form_of_the_answer(exercise_id):
    stub = files.template(exercise_id)
    assert _leaks(stub, exercise_id) == []
    assert _gradient_equation(_learner_text(stub)) is None, _learner_text(stub)


@pytest.mark.parametrize("exercise_id", WITH_FUNCTIONS + list(VARIANT_IDS))
@pytest.mark.parametrize("level", [1, 2, 3])
def test_no_hint_states_the_answer(exercise_id, level):
    hint = _hints(exercise_id)[level - 1]
    assert _leaks(hint, exercise_id) == [], hint
    assert _gradient_equation(hint) is None, hint


@pytest.mark.parametrize("exercise_id", STAGED_IDS)
def test_the_staged_stub_shows_no_form_of_the_answer(exercise_id):
    stub = staged.template(exercise_id)
    assert _leaks(stub, exercise_id) == []
    assert _gradient_equation(_learner_text(stub)) is None, _learner_text(stub)


@pytest.mark.parametrize("exercise_id", [i for i in WITH_FUNCTIONS if EXERCISES[i].kind == "backward"])
def test_the_stub_does_not_copy_the_references_docstring(exercise_id):
    """The reference's docstring is written for readers of npformer, who may see the answer."""
    stub = _flat(files.template(exercise_id))
    for name, fn in EXERCISES[exercise_id].references().items():
        assert _flat(inspect.getdoc(fn)) not in stub, name


@pytest.mark.parametrize("exercise_id", WITH_FUNCTIONS + list(VARIANT_IDS))
def test_the_stub_says_what_to_return_in_the_references_order(exercise_id):
    """Each function's docstring names its results, in the order the grader unpacks them."""
    stub = files.template(exercise_id)
    docs = {node.name: ast.get_docstring(node) or "" for node in ast.parse(stub).body
            if isinstance(node, ast.FunctionDef)}
    if exercise_id in EXERCISES:
        refs = EXERCISES[exercise_id].references()
    else:
        refs = {variants.VARIANTS[exercise_id][1]: None}
    for name, fn in refs.items():
        doc = docs[name]
        assert doc.startswith("Return"), doc
        # a shape: (..., d_in), (B, h, T_q, d_k), (d_model,), or "x's shape" for an elementwise op
        assert re.search(r"\((\.\.\.|\w+),|shape", doc), f"{name}: no shape in {doc!r}"
        ref_doc = inspect.getdoc(fn) if fn is not None else variants.VARIANTS[exercise_id][2]
        m = re.search(r"Returns ``\(?([^`]*?)\)?``", ref_doc or "")
        if m:  # the reference names its results: the stub names the same ones, in order
            names = re.findall(r"\bd\w+|\bgrads\b", m.group(1))
            positions = [doc.find(n) for n in names]
            assert -1 not in positions and positions == sorted(positions), (name, names, doc)


def _documented_backward(dp, cache):
    """Returns ``dz`` = p * (dp - sum(dp * p)); ``out`` may be ``dp`` itself.

    q is (1 - eps) at the target, so dz = w p - w eps / V, then minus (1 - eps) w there;
    d_model = 512 is a size and dW == dV a comparison, neither a gradient's equation."""


def test_the_equation_finder_finds_a_gradients_equations_and_nothing_else():
    """_docstring_equations is not vacuous, on docstrings written as npformer's are."""
    assert [_flat(e) for e in _docstring_equations(_documented_backward)] == [
        _flat("p * (dp - sum(dp * p))"), _flat("w p - w eps / V")]


def test_every_reference_backward_has_statements_to_look_for():
    """_answer_statements is not vacuous: it keeps a statement of every reference, and of linear's
    the one that computes dW, not the cache's unpacking."""
    for eid in WITH_FUNCTIONS:
        for name, fn in EXERCISES[eid].references().items():
            assert _answer_statements(fn), name
    from npformer.ops import linear_backward
    kept = [_flat(s) for s in _answer_statements(linear_backward)]
    assert any(s.startswith("dw=") for s in kept) and not any(s.endswith("=cache") for s in kept), kept


def _forward_with_a_gradient_in_its_docstring(x):
    """y = 2 x. Backward: dx = 2 * dy."""
    y = 2 * x  # dx = 2 * dy, for the backward
    return y, None


def test_a_forwards_docstring_or_comment_that_states_a_gradient_is_left_out_and_its_code_kept():
    shown = files.shown_source(_forward_with_a_gradient_in_its_docstring)
    assert "dx" not in shown and "2 * dy" not in shown
    assert "y = 2 * x" in shown and "return y, None" in shown
    compile(shown, "<shown>", "exec")  # still a function
    plain = files.shown_source(files.path_of)
    assert plain == textwrap.dedent(inspect.getsource(files.path_of))


# --- the hints that led into known mistakes ------------------------------------------------------
def _sentences(text):
    return [s for s in re.split(r"(?<=[.;:])\s+", text) if s]


def test_linear_hints_do_not_claim_the_shapes_fix_the_operand_order():
    """Every attention projection is square, (d_model, d_model): dy W and dy W^T have the same
    shape there (derivations.md §3.1), so shapes alone cannot settle the order or the transpose."""
    text = " ".join(EXERCISES["linear"].hints).lower()
    for s in _sentences(text):
        assert not ("shape" in s and "follow" in s and "order" in s), s
    assert "square" in text  # and the hint says where the shape check fails


def test_dropout_hint_does_not_ask_for_the_scale_the_cache_already_holds():
    """DropoutCache.scale is keep / (1 - p): a 1/(1-p) applied on top of it is the known mistake
    rescaled_twice. A sentence of the structure hint that speaks of 1/(1-p) says it is already in."""
    from npformer.exercise.mistakes import MISTAKES
    assert "rescaled_twice" in [m.name for m in MISTAKES["dropout"]]
    for s in _sentences(EXERCISES["dropout"].hints[1]):
        if "1/(1-p)" in s.replace(" ", ""):
            assert "already" in s.lower(), s


def test_relu_hint_says_what_the_check_does_at_the_kink_and_the_cases_do_it():
    """The cases keep every input at least 1e-3 from 0, so the check never evaluates x = 0."""
    for h in EXERCISES["relu"].hints:
        for s in _sentences(h):
            if "check" in s.lower():
                assert not re.search(r"(takes|uses|evaluates)\s+0|and the check", s), s
    assert "1e-3" in " ".join(EXERCISES["relu"].hints)
    for seed in range(20):
        (case,) = cases.relu_cases(np.random.default_rng(seed), get_backend("numpy"))
        assert np.abs(case.inputs["x"]).min() >= 1e-3


def test_multihead_hint_says_split_heads_is_a_reshape_and_a_transpose():
    """Undoing only the reshape of split_heads scrambles the heads' entries; merge_heads (the inverse
    transpose, then the inverse reshape) is its backward."""
    from npformer.ops.multihead import merge_heads, split_heads
    first = EXERCISES["multihead"].hints[0].lower()
    assert "transpose" in first
    assert not re.search(r"reshape's backward is the inverse reshape", first)
    x = np.random.default_rng(0).standard_normal((2, 3, 8))
    heads = split_heads(x, 1, 2)
    assert not np.array_equal(heads.reshape(x.shape), x)
    assert np.array_equal(merge_heads(heads), x)


@pytest.mark.parametrize("variant", ["gelu", "softmax_temperature"])
def test_the_variants_structure_hint_gives_no_formula(variant):
    """Level 2 names the steps and the sums; the derivative is the learner's to write."""
    hint = variants.HINTS[variant][1]
    assert [f for f in ANSWER_FORMS[variant] if re.search(f, _compact(hint))] == [], hint
    assert "=" not in hint, hint
