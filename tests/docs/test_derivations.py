"""Every code name that docs/derivations.md cites exists in npformer.

The document promises the code's own names, so a reader who looks one up must
find it. The package is read with ``ast`` (nothing is imported or run), and the
document's code is checked in three places:

* inline code spans (`` `name` ``): a span that parses as Python is checked
  node by node: a called name (``layernorm_backward(dy, cache)``) must be a
  function or class defined in npformer (or a Python builtin); a field read off
  a cache (``cache.out1``, ``EmbeddingCache.scale``) must be a field, property
  or attribute of that class, or of some npformer class where the owner is just
  ``cache``; ``np.*`` must exist in NumPy; any other name must occur in the
  package's code (a definition, argument, variable, attribute, keyword or
  string key; docstrings do not count). A span naming a file must name one in
  the repository; a span of an ``npformer`` command line must use options the
  commands define.
* pseudocode blocks (```` ```text ````): each line's statement (the part before
  its aligned comment) is checked like a span, and an assignment from a call of
  an npformer function, ``dx_f, g_in = sublayer_in_backward(...)``, must use
  target names that the code itself uses where it calls that function.
* links: every relative link target must exist.

``test_the_checker_catches_made_up_names`` plants wrong names to show the
checks can fail.
"""
from __future__ import annotations

import ast
import builtins
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "derivations.md"
PACKAGE = ROOT / "npformer"

# Names that stand for external libraries whose attributes this test cannot look up
# (CuPy is not installed everywhere; xp is whichever array module a backend has).
UNCHECKED_MODULES = {"cupy", "cupyx", "xp"}


@dataclass
class Package:
    """What npformer's source defines and uses, gathered from its syntax trees."""
    callables: set = field(default_factory=set)      # def and class names
    identifiers: set = field(default_factory=set)    # every name, argument, attribute, keyword, string key
    members: dict = field(default_factory=dict)      # class -> fields, methods, properties, self.* attributes
    names_in: dict = field(default_factory=dict)     # function -> names and arguments in its body
    callers: dict = field(default_factory=dict)      # function -> functions whose body calls it
    strings: set = field(default_factory=set)        # string constants outside docstrings

    @property
    def all_members(self) -> set:
        return set().union(*self.members.values())


def _docstring_nodes(tree) -> set:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                out.add(id(body[0].value))
    return out


def _called_name(call: ast.Call):
    f = call.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None


def scan_package(root: Path = PACKAGE) -> Package:
    pkg = Package()
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        pkg.identifiers.add(path.stem if path.stem != "__init__" else path.parent.name)  # module names
        docstrings = _docstring_nodes(tree)
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                pkg.callables.add(node.name)
                pkg.identifiers.add(node.name)
            elif isinstance(node, ast.Name):
                pkg.identifiers.add(node.id)
            elif isinstance(node, ast.arg):
                pkg.identifiers.add(node.arg)
            elif isinstance(node, ast.Attribute):
                pkg.identifiers.add(node.attr)
            elif isinstance(node, ast.keyword) and node.arg:
                pkg.identifiers.add(node.arg)
            elif isinstance(node, ast.alias):
                pkg.identifiers.add((node.asname or node.name).split(".")[0])
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                pkg.strings.add(node.value)
                if node.value.isidentifier():
                    pkg.identifiers.add(node.value)  # dict keys such as "W_q", "gamma"
            if isinstance(node, ast.ClassDef):
                members = pkg.members.setdefault(node.name, set())
                for item in node.body:
                    if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                        members.add(item.target.id)  # NamedTuple / dataclass fields
                    elif isinstance(item, ast.Assign):
                        members.update(t.id for t in item.targets if isinstance(t, ast.Name))
                    elif isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        members.add(item.name)
                        for sub in ast.walk(item):  # self.x = ... in any method
                            if isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name) \
                                    and sub.value.id == "self" and isinstance(sub.ctx, ast.Store):
                                members.add(sub.attr)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                names = pkg.names_in.setdefault(node.name, set())
                for sub in ast.walk(node):
                    if isinstance(sub, ast.Name):
                        names.add(sub.id)
                    elif isinstance(sub, ast.arg):
                        names.add(sub.arg)
                    elif isinstance(sub, ast.Call) and _called_name(sub):
                        pkg.callers.setdefault(_called_name(sub), set()).add(node.name)
    return pkg


@lru_cache(maxsize=1)
def package() -> Package:
    return scan_package()


# --- checking one piece of the document's code -------------------------------------------
def _attribute_chain(node):
    """['cache', 'decoder', 'layers', 'cross_attn', 'weights'] for cache.decoder.layers[i].cross_attn.weights;
    None when the chain does not start at a plain name."""
    parts = []
    while True:
        if isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        elif isinstance(node, ast.Subscript):
            node = node.value
        elif isinstance(node, ast.Name):
            parts.append(node.id)
            return parts[::-1]
        else:
            return None


def _check_numpy(chain) -> bool:
    obj = np
    for name in chain[1:]:
        if not hasattr(obj, name):
            return False
        obj = getattr(obj, name)
    return True


# A bare name in this form is a function's name: it must be a def, not just any name.
FUNCTION_LIKE = re.compile(r"^[a-z]\w*_(forward|backward)$")


def check_python(tree, pkg: Package, where: str) -> list:
    """Problems with the names in one parsed span or pseudocode statement."""
    problems = []
    chains_seen = set()
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and (id(node) in called or FUNCTION_LIKE.match(node.id)):
            if node.id not in pkg.callables and not hasattr(builtins, node.id):
                problems.append(f"{where}: {node.id}() is not a function or class in npformer")
            continue
        if isinstance(node, (ast.Attribute, ast.Subscript)):
            chain = _attribute_chain(node)
            if not chain or len(chain) < 2 or tuple(chain) in chains_seen:
                continue
            chains_seen.update(tuple(chain[:k]) for k in range(2, len(chain) + 1))
            if id(node) in called and isinstance(node, ast.Attribute) and chain[0] not in pkg.members \
                    and chain[0] not in ("np", "numpy"):
                chain = chain[:-1]  # a method of an array (cache.H.reshape): check what it is called on
                if len(chain) < 2:
                    continue
            head, rest = chain[0], chain[1:]
            if head in UNCHECKED_MODULES:
                continue
            if head in ("np", "numpy"):
                if not _check_numpy(chain):
                    problems.append(f"{where}: {'.'.join(chain)} is not in NumPy")
                continue
            if head in pkg.members:  # Class.member
                if rest[0] not in pkg.members[head]:
                    problems.append(f"{where}: {head} has no field, method or attribute {rest[0]!r}")
                rest = rest[1:]
            elif head == "cache" or head.endswith("cache"):
                pass
            else:
                if head not in pkg.identifiers and head not in ("self",):
                    problems.append(f"{where}: {head!r} is not a name in npformer's code")
                for name in rest:
                    if name not in pkg.identifiers:
                        problems.append(f"{where}: {name!r} is not a name in npformer's code")
                continue
            for name in rest:  # fields of caches, down the chain
                if name not in pkg.all_members:
                    problems.append(f"{where}: {name!r} is not a field of any npformer cache or class")
        elif isinstance(node, ast.Name):
            if node.id not in pkg.identifiers and not hasattr(builtins, node.id):
                problems.append(f"{where}: {node.id!r} is not a name in npformer's code")
    return problems


def check_assignment(stmt, pkg: Package, where: str) -> list:
    """``targets = f(...)`` with f an npformer function: the code that calls f uses these target names."""
    if not isinstance(stmt, ast.Assign) or not isinstance(stmt.value, ast.Call):
        return []
    chain = _attribute_chain(stmt.value.func)
    if not chain or len(chain) != 1 or chain[0] not in pkg.callables:
        return []
    fn = chain[0]
    callers = pkg.callers.get(fn, set())
    used = set().union(*(pkg.names_in.get(c, set()) for c in callers))
    targets = []
    for t in stmt.targets:
        targets += [e for e in (t.elts if isinstance(t, ast.Tuple) else [t])]
    return [f"{where}: {t.id!r} is not a name the code uses where it calls {fn}()"
            for t in targets if isinstance(t, ast.Name) and t.id not in used]


def _statement_prefix(line: str):
    """The longest prefix of a pseudocode line that parses as one Python statement
    (cut where an aligned comment starts, at two spaces), or None."""
    cuts = [len(line)] + [m.start() for m in re.finditer(r"  ", line)][::-1]
    for cut in cuts:
        text = line[:cut].strip()
        if not text:
            continue
        try:
            tree = ast.parse(text)
        except SyntaxError:
            continue
        if len(tree.body) == 1:
            return tree
    return None


PATH_LIKE = re.compile(r"^[\w./-]+\.(py|md|json|png|sh|toml|tsv\.gz|npz)$")


def check_span(span: str, pkg: Package, where: str) -> list:
    span = span.strip()
    if PATH_LIKE.match(span):
        if "/" in span:
            found = (ROOT / span).exists() or (DOC.parent / span).exists()
        else:  # a bare file name: somewhere in the project's own folders
            found = (ROOT / span).exists() or any(
                any((ROOT / d).rglob(span)) for d in ("npformer", "tests", "docs", "benchmarks"))
        return [] if found else [f"{where}: no file {span!r} in the repository"]
    if span.startswith("npformer "):
        return [f"{where}: option {opt!r} is not defined by any npformer command"
                for opt in re.findall(r"--[\w-]+", span) if opt not in pkg.strings]
    if span.startswith("python "):
        return [f"{where}: no file {tok!r} in the repository" for tok in span.split()[1:]
                if PATH_LIKE.match(tok) and not (ROOT / tok).exists()]
    if re.fullmatch(r"[\w.]*\*[\w.]*", span):  # a pattern of parameter keys or names: "ln1.*", "*_backward"
        blob = "\n".join(pkg.strings)
        return [f"{where}: {word!r} occurs in no string or name of npformer's code"
                for word in re.findall(r"\w+", span) if word not in blob and word not in pkg.identifiers]
    if re.fullmatch(r"[A-Za-z_]\w*=", span):  # a keyword argument: "constants="
        span = span[:-1]
    if span.startswith("<"):
        return []  # a token such as <s>
    for mode in ("eval", "exec"):
        try:
            tree = ast.parse(span, mode=mode)
        except SyntaxError:
            continue
        return check_python(tree, pkg, where)
    return []


@dataclass
class DocCode:
    spans: list      # (line number, text)
    pseudo: list     # (line number, text) of lines inside ```text blocks
    links: list      # (line number, target)


def extract(text: str) -> DocCode:
    spans, pseudo, links = [], [], []
    fence = None
    for n, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            fence = line[3:].strip() if fence is None else None
            continue
        if fence is not None:
            if fence == "text":
                pseudo.append((n, line))
            continue  # python blocks are real code, run by tests/docs/test_walkthrough.py
        for target in re.findall(r"\]\(([^)\s]+)\)", line):
            links.append((n, target))
        prose = re.sub(r"\$[^$]*\$", "", line)  # no code spans inside math
        spans += [(n, s) for s in re.findall(r"`([^`]+)`", prose)]
    return DocCode(spans, pseudo, links)


def check_document(text: str, pkg: Package, doc_dir: Path = DOC.parent) -> list:
    code = extract(text)
    problems = []
    for n, span in code.spans:
        problems += check_span(span, pkg, f"line {n} `{span}`")
    for n, line in code.pseudo:
        tree = _statement_prefix(line)
        if tree is None:
            continue
        where = f"line {n} (pseudocode)"
        problems += check_python(tree, pkg, where)
        problems += check_assignment(tree.body[0], pkg, where)
    for n, target in code.links:
        if target.startswith(("http://", "https://", "#")):
            continue
        path = target.partition("#")[0]
        if not (doc_dir / path).exists():
            problems.append(f"line {n}: linked file {path!r} does not exist")
    return problems


# --- the tests -------------------------------------------------------------------------------
def test_the_scan_sees_the_code():
    pkg = package()
    assert {"layernorm_backward", "sublayer_out_backward", "final_norm_backward", "Adam"} <= pkg.callables
    assert {"in1", "out1", "self_attn", "final_norm"} <= pkg.members["EncoderLayerCache"] | \
        pkg.members["StackCache"]
    assert "grad_scale" in pkg.names_in["update"]
    assert {"dx_f", "dx_a", "du"} <= pkg.names_in["encoder_layer_backward"]
    assert "encoder_layer_backward" in pkg.callers["sublayer_in_backward"]


def test_every_code_name_the_document_cites_exists():
    text = DOC.read_text()
    code = extract(text)
    assert len(code.spans) > 300 and len(code.pseudo) > 40 and len(code.links) > 30, "extraction broke"
    problems = check_document(text, package())
    assert not problems, "docs/derivations.md names code that npformer does not have:\n" + "\n".join(problems)


def test_the_pseudocode_names_the_codes_caches_and_variables():
    """The layer backwards are written with the code's own cache fields and variables."""
    text = DOC.read_text()
    for line in ("dx_f, g_in    = sublayer_in_backward(du, cache.in2)",
                 "dx, da, g_out = sublayer_out_backward(dx, cache.out1)",
                 'dx, grads = final_norm_backward(dmemory, cache.final_norm, "encoder")',
                 "du, dmemory, g          = cross_attention_backward(dc, cache.cross_attn)",
                 "grad_scale"):
        assert line in text, line


PLANTED = """\
Code: `made_up_backward` and `layernorm_backward(dy, cache)`; the cache field
`cache.out9`, `cache.out1`; `EmbeddingCache.nonexistent` beside `EmbeddingCache.scale`;
`np.add.reducet`; a variable `dx_zz`; a file `npformer/ops/nowhere.py`; an option in
`npformer train --no-such-option`; the keys `ln9.*`; see [a page](nowhere.md).

```text
dx_zz, g_in   = sublayer_in_backward(du, cache.in2)          the code never calls it dx_zz
dx_f, g_in    = sublayer_in_backward(du, cache.in2)          fan-out of x_1
du, g         = invented_backward(df, cache.ffn)
```
"""


def test_the_checker_catches_made_up_names():
    problems = "\n".join(check_document(PLANTED, package()))
    for bad in ("made_up_backward()", "'out9'", "'nonexistent'", "np.add.reducet", "'dx_zz' is not a name in",
                "nowhere.py", "--no-such-option", "'nowhere.md'", "invented_backward()", "'ln9'",
                "'dx_zz' is not a name the code uses where it calls sublayer_in_backward()"):
        assert bad in problems, f"the checker missed {bad}:\n{problems}"
    for good in ("`layernorm_backward(dy, cache)`", "'out1'", "'scale'", "'dx_f'"):
        assert good not in problems, f"the checker flagged a real name {good}:\n{problems}"
    assert len(problems.splitlines()) == 12, problems  # dx_zz twice in the pseudocode: a name and a target


# --- the document's claims about the code's behaviour ------------------------------------------
# Each test below computes what a passage of docs/derivations.md states (a number, a formula, a
# property of an op) with the code itself, and checks the passage against it.

def _flat(text: str) -> str:
    """``text`` with every run of whitespace turned into one space (line breaks don't matter)."""
    return " ".join(text.split())


def _section(title: str) -> str:
    """The text of the document from the heading or bold paragraph ``title`` to the next ``## ``."""
    text = DOC.read_text()
    start = text.find(title)
    assert start >= 0, f"docs/derivations.md has no passage {title!r}"
    end = text.find("\n## ", start + len(title))
    return text[start:] if end < 0 else text[start:end]


def _table_rows(text: str, first_row_starts: str) -> list:
    """The cells of the markdown table whose header starts with ``first_row_starts``."""
    lines = text[text.index(first_row_starts):].splitlines()
    rows = []
    for line in lines[2:]:  # header and |---| rule
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def _code_names(cell: str) -> set:
    """The code names a notation-table cell gives: `name`, `Class.name` (-> name), and the plain
    ``name in file's docstring`` / ``name in shape comments`` forms."""
    names = set()
    for span in re.findall(r"`([^`]+)`", cell):
        if re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", span):
            names.add(span.split(".")[-1])
    plain = re.sub(r"`[^`]*`|\$[^$]*\$", "", cell)
    for group in re.findall(r"((?:[A-Za-z_]\w*, )*[A-Za-z_]\w*) in \S", plain):
        names.update(group.split(", "))
    return names


def _symbols(cell: str) -> list:
    """The math symbols of a notation-table cell: the $...$ pieces."""
    return re.findall(r"\$([^$]+)\$", cell)


def test_the_notation_lists_every_letter_and_name_used_twice():
    """A code name given for two symbols of the table, or a letter that is both an index and a
    symbol, is listed in the table of names used twice; nothing double-used goes unlisted."""
    text = DOC.read_text()
    notation = text[text.index("## Notation"):text.index("## Contents")]
    rows = _table_rows(notation, "| symbol | meaning | name in the code |")
    assert len(rows) > 60, "the notation table was not found"
    rows_of = {}
    for row in rows:
        for name in _code_names(row[-1]):
            rows_of.setdefault(name, []).append(row[0])
    code_twice = {name for name, where in rows_of.items() if len(where) > 1}
    assert {"eps", "m", "v", "g", "s", "V", "scale", "h"} <= code_twice, code_twice  # the parser works

    single_letters = {s for row in rows for s in _symbols(row[0]) if re.fullmatch(r"[A-Za-z]", s)}
    indices = re.search(r"Indices: (.*?)\.\s*\$\\delta_\{ij\}\$", notation, re.S)
    assert indices, "the paragraph on indices was not found"
    index_letters = set(re.findall(r"\$([a-z])\$", indices.group(1))) | set(
        re.findall(r"\$([a-z](?:, [a-z])+)\$", indices.group(1))[0].split(", "))
    letters_twice = (index_letters | {"d"}) & single_letters  # d: also the gradient prefix of dX (§0)
    assert "b" in letters_twice, letters_twice

    listed = set()
    marker = "| name | first meaning | second meaning |"
    assert marker in notation, ("docs/derivations.md has no table of the letters and names used twice; "
                                f"used twice: code names {sorted(code_twice)}, letters {sorted(letters_twice)}")
    for row in _table_rows(notation, marker):
        listed.update(re.findall(r"`([^`]+)`", row[0]))
        listed.update(_symbols(row[0]))
        assert len(row) == 3 and all(row), f"each entry needs both meanings: {row}"
    missing = (code_twice | letters_twice) - listed
    assert not missing, f"used twice but not listed in docs/derivations.md: {sorted(missing)}"
    # The unit vector of §9 must not share its letter with an index.
    assert not re.search(r"\\,e_i\b|\$e_i\$", text) or "e" not in index_letters, \
        "e is an index and also the unit vector e_i"
    count = re.search(r"\*\*Letters and names used twice\.\*\* (\w+) letters", notation)
    words = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5}
    assert count and words.get(count.group(1).lower()) == sum(
        1 for row in _table_rows(notation, marker) if _symbols(row[0])), "the count of letters is wrong"


def test_clipping_changes_the_direction_of_adams_update_as_section_8_says():
    """§8: clipping scales the gradient, but Adam's update is not proportional to it: at the first
    step (and for an entry without history) clipping changes nothing, a factor shared by every
    step changes nothing, and a clipped step after unclipped ones turns the update."""
    from npformer.train.optim import Adam

    rng = np.random.default_rng(0)
    history = [rng.standard_normal(50) for _ in range(3)]
    g = rng.standard_normal(50)

    def update(grads, scales):
        """The last of Adam's updates, fed ``grads`` with the clipping factors ``scales``."""
        theta = {"w": np.zeros(50)}
        opt = Adam(theta)
        for grad, s in zip(grads, scales):
            before = theta["w"].copy()
            opt.update(theta, {"w": grad.copy()}, lr=1e-3, grad_scale=s)
        return theta["w"] - before

    # first step: the update is lr * sign(g), clipped or not
    first, first_clipped = update([g], [1.0]), update([g], [0.1])
    np.testing.assert_allclose(first_clipped, first, rtol=1e-6)
    np.testing.assert_allclose(first, -1e-3 * np.sign(g), rtol=1e-6)
    # the same factor at every step: nothing changes
    np.testing.assert_allclose(update(history + [g], [0.3] * 4), update(history + [g], [1.0] * 4), rtol=1e-6)
    # only the last step clipped: the update turns, and entries without history do not change
    for h in history:
        h[:10] = 0.0  # entries 0..9 see their first gradient at the last step
    plain = update(history + [g], [1.0] * 4)
    clipped = update(history + [g], [1.0, 1.0, 1.0, 0.1])
    np.testing.assert_allclose(clipped[:10], plain[:10], rtol=1e-5)  # up to eps_Adam
    cosine = float(plain @ clipped) / float(np.linalg.norm(plain) * np.linalg.norm(clipped))
    ratio = clipped[10:] / plain[10:]
    assert cosine < 0.99 and ratio.std() > 0.1, (cosine, ratio.std())

    text = _flat(_section("### Gradient-norm clipping"))
    assert "shortens the update without changing its direction" not in text
    for claim in ("clipping the first step changes nothing",
                  "a factor $\\lambda$ shared by every step scales $m$ and $\\sqrt{v}$ alike and changes nothing",
                  "so the update turns as well as changing its length"):
        assert claim in text, claim


def test_the_gradient_check_floor_is_the_fraction_of_the_gradients_that_section_9_states():
    """§9 states the floor of the checker's relative error; it is read here from the code."""
    from npformer.verify.gradcheck import scale_floor

    # one gradient of scale 100 and one that is zero in theory, with rounding noise 1e-3
    floor = scale_floor({"big": (np.array([100.0]), np.array([100.0])), "zero": (np.array([0.0]), np.array([1e-3]))})
    fraction = floor / 100.0   # of the largest gradient; the inputs' values never enter: the pairs hold gradients
    assert floor == scale_floor({"zero": (np.array([0.0]), np.array([1e-3])),
                                 "big": (np.array([-100.0]), np.array([1.0]))})

    text = _flat(_section("## 9. How to check a gradient yourself"))
    said = re.search(r"at least (\d+)% of the largest (\w+)", text)
    assert said, "§9 does not state the floor"
    assert float(said.group(1)) / 100 == pytest.approx(fraction), said.group(0)
    assert said.group(2) == "gradient", f"§9 says the floor is {said.group(0)!r}: it is a fraction of the gradients"


def test_sharded_gradients_equal_the_whole_batch_only_without_dropout():
    """§8 "Splitting a batch over workers": exact up to the order of sums without dropout; with
    dropout, each shard draws its own masks (a different, equally valid gradient); one worker
    gives the whole batch's gradient exactly."""
    from npformer.backend import get_backend
    from npformer.model.params import init_params
    from npformer.model.transformer import loss_and_grads
    from npformer.runtime.workers import Workers, blas_threads_controllable
    from npformer.train.parallel import parallel_loss_and_grads, worker_generators
    from npformer.verify.model_cases import TINY

    if not blas_threads_controllable():
        pytest.skip("threadpoolctl is not installed")
    be = get_backend("numpy")
    rng = np.random.default_rng(0)
    B, S, T = 6, 7, 6
    src, tgt_in, tgt_out = (np.zeros((B, n), dtype=np.int64) for n in (S, T, T))
    for b in range(B):
        s, t = rng.integers(2, S + 1), rng.integers(2, T + 1)
        src[b, :s], tgt_in[b, :t], tgt_out[b, :t] = (rng.integers(1, TINY.vocab_size, n) for n in (s, t, t))
    params = init_params(TINY, seed=1, dtype="float64")
    assert TINY.p_drop > 0

    def max_rel_diff(a, b):
        """The largest entry of a - b, relative to the largest gradient (b_k's is zero in theory)."""
        return max(float(np.abs(a[k] - b[k]).max()) for k in b) / max(float(np.abs(b[k]).max()) for k in b)

    two, one = Workers(2), Workers(1)
    try:
        _, whole, _ = loss_and_grads(params, TINY, src, tgt_in, tgt_out)  # no rng: no dropout
        _, sharded, _ = parallel_loss_and_grads(params, TINY, src, tgt_in, tgt_out, workers=two)
        assert max_rel_diff(sharded, whole) < 1e-12  # the order of sums only

        _, whole_d, _ = loss_and_grads(params, TINY, src, tgt_in, tgt_out, be.rng(7))
        _, sharded_d, _ = parallel_loss_and_grads(params, TINY, src, tgt_in, tgt_out,
                                                  worker_generators(be, 7, 2), two)
        _, sharded_again, _ = parallel_loss_and_grads(params, TINY, src, tgt_in, tgt_out,
                                                      worker_generators(be, 7, 2), two)
        _, one_d, _ = parallel_loss_and_grads(params, TINY, src, tgt_in, tgt_out,
                                              worker_generators(be, 7, 1), one)
    finally:
        two.close()
    assert max_rel_diff(sharded_d, whole_d) > 1e-3  # other masks: not the whole batch's numbers
    assert max_rel_diff(sharded_again, sharded_d) == 0.0  # reproducible for a given number of shards
    assert max_rel_diff(one_d, whole_d) == 0.0  # one worker: the whole batch's, from the run's generator

    text = _flat(_section("### Splitting a batch over workers"))
    assert "without dropout each shard's forward equals the corresponding rows of the whole batch's forward " \
           "and the result is exact up to the order of floating-point sums" in text
    assert "With dropout it is not the whole batch's gradient" in text and "`worker_generators`" in text


def _sci(cell: str) -> float:
    """The number in a cell written $a \\times 10^{b}$."""
    m = re.search(r"([\d.]+) \\times 10\^\{(-?\d+)\}", cell)
    assert m, f"no number a x 10^b in {cell!r}"
    return float(m.group(1)) * 10.0 ** int(m.group(2))


def _central_difference_errors(op: str, dtype) -> dict:
    """h -> the worst error of numerical_gradient on ``op`` in ``dtype``, relative to the gradient's
    largest entry (the checker's measure), at h = 1e-1 ... 1e-10. The exact gradient is the
    backward's, in float64, at the same (rounded) inputs."""
    from npformer.ops import layernorm_backward, layernorm_forward, softmax_backward, softmax_forward
    from npformer.verify.gradcheck import numerical_gradient

    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 8)).astype(dtype)
    gamma, beta = 1 + 0.5 * rng.standard_normal(8), rng.standard_normal(8)
    if op == "layernorm":
        def forward(x):
            return layernorm_forward(x, gamma.astype(x.dtype), beta.astype(x.dtype))
        exact_y, cache = layernorm_forward(x.astype(np.float64), gamma, beta)
    else:
        def forward(x):
            return softmax_forward(x)
        exact_y, cache = softmax_forward(x.astype(np.float64))
    dy = rng.standard_normal(x.shape).astype(dtype)
    exact = (layernorm_backward(dy.astype(np.float64), cache)[0] if op == "layernorm"
             else softmax_backward(dy.astype(np.float64), cache)).reshape(-1)
    errors = {}
    for k in range(1, 11):
        _, numeric = numerical_gradient(forward, {"x": x}, "x", dy, h=10.0 ** -k)
        errors[10.0 ** -k] = float(np.abs(numeric - exact).max() / np.abs(exact).max())
    return errors


def test_the_central_difference_error_is_what_section_9_derives():
    """§9's table: machine epsilon, the optimum step (3 eps)^(1/3), the error there (3 eps)^(2/3)/2
    and at the checker's h = 1e-6 (about eps/h), per dtype; and the measurements the text reports."""
    text = _section("**Why central differences, float64")
    rows = {row[0]: row for row in _table_rows(text, "| dtype |")}
    assert set(rows) == {"float64", "float32"}, rows
    for dtype in (np.float64, np.float32):
        eps_cell, opt_cell, err_opt_cell, err_code_cell = rows[np.dtype(dtype).name][1:5]
        eps = float(np.finfo(dtype).eps)
        assert _sci(eps_cell) == pytest.approx(eps, rel=0.05)
        assert _sci(opt_cell) == pytest.approx((3 * eps) ** (1 / 3), rel=0.1)
        assert _sci(err_opt_cell) == pytest.approx((3 * eps) ** (2 / 3) / 2, rel=0.2)
        assert _sci(err_code_cell) == pytest.approx(eps / 1e-6, rel=0.25)
        for op in ("layernorm", "softmax"):
            errors = _central_difference_errors(op, dtype)
            best = min(errors, key=errors.get)
            # the measured optimum is the decade nearest the formula's, its error within 10x of it
            assert abs(np.log10(best) - np.log10(_sci(opt_cell))) <= 0.5, (op, dtype, errors)
            assert _sci(err_opt_cell) / 10 < errors[best] < 10 * _sci(err_opt_cell), (op, dtype, errors)
            assert _sci(err_code_cell) / 10 < errors[1e-6] < 10 * _sci(err_code_cell), (op, dtype, errors)
            if dtype is np.float64:  # "smallest at 1e-5, a few 1e-11; 1e-6: a few 1e-10"
                assert best == 1e-5 and 1e-11 <= errors[1e-5] < 1e-10 and 1e-10 <= errors[1e-6] < 1e-9
                # above the optimum truncation (x100 per decade), below it rounding (x10 per decade)
                assert 30 < errors[1e-3] / errors[1e-4] < 300 and 3 < errors[1e-8] / errors[1e-7] < 30
            else:  # "best at 1e-2, a few 1e-5; 1e-3: 1e-4 to 1e-3; 1e-6: of order 0.1"
                assert best == 1e-2 and 1e-5 <= errors[1e-2] < 1e-4 and 1e-4 <= errors[1e-3] <= 1e-3
                assert 0.03 < errors[1e-6] < 1.0
    assert "$\\Delta = 10^{-5}$" in text and "$\\Delta = 10^{-2}$" in text


def test_log_softmax_stays_finite_where_log_of_softmax_underflows():
    """§6: exp(-x) is exactly 0 beyond a gap of about 745 (float64) or 104 (float32), so
    log(softmax) is -inf there, while the code's z - lse gives the finite loss the text states."""
    from npformer.ops import cross_entropy_forward, softmax_forward

    text = _flat(_section("**Why $\\log p$ is computed as $z - \\mathrm{lse}$.**"))
    stated = dict(zip(("float64", "float32"), (float(x) for x in re.findall(
        r"once \$x\$ exceeds about \$(\d+)\$ in float64 .*? or about \$(\d+)\$ in float32", text)[0])))
    for dtype, gap in stated.items():
        first_zero = next(g for g in range(1, 2000)
                          if softmax_forward(np.array([0.0, -g], dtype=dtype))[0][1] == 0)
        assert abs(first_zero - gap) <= 1, (dtype, first_zero, gap)
    logits = np.array([[800.0, 0.0, 0.0]])
    with np.errstate(divide="ignore"):
        assert np.log(softmax_forward(logits)[0])[0, 1] == -np.inf
    loss, _ = cross_entropy_forward(logits, np.array([1]), eps_ls=0.0)
    assert float(loss) == 800.0
    assert "the code's loss is $800$" in text
    assert "`loss_n = xp.log(s[..., 0]) - (1.0 - eps_ls) * zm_true`" in text
    source = (PACKAGE / "ops" / "cross_entropy.py").read_text()
    assert "loss_n = xp.log(s[..., 0]) - (1.0 - eps_ls) * zm_true" in source


def test_the_attention_scale_keeps_softmax_out_of_saturation():
    """§3.3: Q.K of d_k unit-variance terms has variance d_k; unscaled, a share of the rows saturate
    (||J||_F < 0.01), growing with d_k; scaled by 1/sqrt(d_k), the variance is 1 and none do."""
    from npformer.ops import softmax_forward

    def measure(d_k, rows, scale, seed=0):
        rng = np.random.default_rng(seed)
        Q = rng.standard_normal((rows, 1, d_k))
        K = rng.standard_normal((rows, 32, d_k))
        S = (Q @ K.swapaxes(-1, -2))[:, 0, :] * scale  # (rows, 32)
        p, _ = softmax_forward(S)
        J = p[:, :, None] * np.eye(32) - p[:, :, None] * p[:, None, :]  # diag(p) - p p^T per row
        norms = np.linalg.norm(J, axis=(1, 2))
        return float(S.var()), float(np.mean(norms < 0.01)), float(norms.mean())

    text = _flat(_section("**Why the scale is $1/\\sqrt{d_k}$: the backward's reason.**"))
    var, saturated, mean_norm = measure(64, 4000, 1.0)
    assert var == pytest.approx(64, rel=0.05) and 0.15 < saturated < 0.25 and mean_norm == pytest.approx(0.20, abs=0.01)
    assert "at $d_k = 64$ the unscaled scores have variance $64$ and about one row in five is saturated" in text
    assert "with a mean $\\lVert J\\rVert_F$ of $0.20$" in text
    var, saturated, mean_norm = measure(256, 2000, 1.0)
    assert 0.4 < saturated < 0.6 and mean_norm == pytest.approx(0.11, abs=0.01)
    assert "at $d_k = 256$ about half the rows are, mean $0.11$" in text
    for d_k, rows in ((64, 4000), (256, 2000)):
        var, saturated, mean_norm = measure(d_k, rows, 1 / np.sqrt(d_k))
        assert var == pytest.approx(1, rel=0.05) and saturated == 0.0 and mean_norm == pytest.approx(0.24, abs=0.01)
    assert "the mean $\\lVert J\\rVert_F$ is $0.24$ at both widths" in text


def test_backward_is_the_transpose_product_which_layernorm_tells_apart():
    """§0: a backward computes J^T dy. Softmax's J is symmetric; LayerNorm's is not, and J dy is
    exactly the backward that applies gamma after the means (its backward at gamma = 1, times gamma)."""
    from npformer.ops import layernorm_backward, layernorm_forward, softmax_backward, softmax_forward
    from npformer.ops.softmax import SoftmaxCache

    rng = np.random.default_rng(0)
    d = 6
    x, dy = rng.standard_normal(d), rng.standard_normal(d)
    gamma, beta = 1 + 0.5 * rng.standard_normal(d), rng.standard_normal(d)

    def jacobian(f, x, h=1e-6):  # J[j, i] = d f_j / d x_i, by central differences
        return np.stack([(f(x + h * e) - f(x - h * e)) / (2 * h) for e in np.eye(len(x))], axis=1)

    J = jacobian(lambda x: layernorm_forward(x, gamma, beta)[0], x)
    _, cache = layernorm_forward(x, gamma, beta)
    dx = layernorm_backward(dy, cache)[0]
    np.testing.assert_allclose(dx, J.T @ dy, atol=1e-8)
    assert np.abs(J - J.T).max() > 0.1 and np.abs(J @ dy - J.T @ dy).max() > 0.1
    _, cache1 = layernorm_forward(x, np.ones(d), beta)
    np.testing.assert_allclose(J @ dy, gamma * layernorm_backward(dy, cache1)[0], atol=1e-8)

    p, _ = softmax_forward(x)
    Js = jacobian(lambda z: softmax_forward(z)[0], x)
    np.testing.assert_allclose(Js, Js.T, atol=1e-9)
    np.testing.assert_allclose(softmax_backward(dy, SoftmaxCache(p)), Js.T @ dy, atol=1e-8)

    text = _flat(_section("**Why the transpose matters.**"))
    assert "exactly the classic mistake of applying $\\gamma$ after the means" in text


def test_the_broadcast_rule_names_the_codes_own_lines():
    """§0's rule "a broadcast in the forward is a sum in the backward" quotes lines of the code."""
    from npformer.ops import layernorm_backward, linear_backward, softmax_backward
    import inspect

    text = _flat(_section("* **A broadcast in the forward is a sum in the backward.**"))
    for line, fn in (("db = dy2.sum(axis=0)", linear_backward),
                     ("g.mean(axis=-1, keepdims=True)", layernorm_backward),
                     ("(dp * p).sum(axis=-1, keepdims=True)", softmax_backward)):
        assert f"`{line}`" in text, line
        assert line in inspect.getsource(fn), f"{fn.__name__} no longer has {line}"
    assert "`dbeta` and `dgamma` in `layernorm_backward`" in text


def test_the_device_scatter_add_is_close_not_exact_as_section_1_says():
    """§1: the device form's running-sum difference is off by at most about M eps sum|dy| per column;
    a run of 1 between 1e17 and -1e17 comes out 0 there and 1 on the host."""
    from npformer.backend import get_backend

    dev, host = get_backend("cupysim"), get_backend("numpy")
    ids = np.array([0, 1, 2])
    values = np.array([[1e17], [1.0], [-1e17]], dtype=np.float32)
    out = {}
    for be in (dev, host):
        target = be.xp.zeros((3, 1), dtype=np.float32)
        be.scatter_add(target, be.asarray(ids), be.asarray(values))
        out[be.name] = be.to_host(target)[1, 0]
    assert out["numpy"] == 1.0 and out["cupysim"] == 0.0
    M, eps = len(ids), float(np.finfo(np.float64).eps)
    assert abs(out["cupysim"] - 1.0) <= M * eps * float(np.abs(values).sum())  # within the stated bound
    rng = np.random.default_rng(0)  # and on ordinary data: the bound holds, run by run
    ids = rng.integers(0, 20, 500)
    values = rng.standard_normal((500, 4)).astype(np.float32)
    target = dev.xp.zeros((20, 4), dtype=np.float64)
    dev.scatter_add(target, dev.asarray(ids), dev.asarray(values.astype(np.float64)))
    exact = np.zeros((20, 4))
    np.add.at(exact, ids, values.astype(np.float64))
    assert (np.abs(dev.to_host(target) - exact) <= len(ids) * eps * np.abs(values).sum(axis=0)).all()

    text = _flat(_section("## 1. Input embedding"))
    assert "The device form is not exact, only close" in text
    assert "off by at most about $M\\,\\epsilon_{\\mathrm{mach}}\\sum_n |dy_{nj}|$" in text
    assert "a run of $1$ between $10^{17}$ and $-10^{17}$ comes out $0$" in text


def test_section_3_3_names_the_constant_the_mask_uses():
    """§3.3 quotes the masked score's value from softmax_terms, and says why it is not -inf."""
    from npformer.ops.softmax import softmax_terms
    import inspect

    text = _flat(_section("### 3.3 Scaled dot-product attention with a mask"))
    quoted = re.search(r"`(xp\.finfo\([^`]*\)\.\w+)`", text)
    assert quoted, "§3.3 does not quote the value a masked score gets"
    assert quoted.group(1) in inspect.getsource(softmax_terms)
    with np.errstate(invalid="ignore"):
        row = np.full(3, -np.inf)
        assert np.isnan(row - row.max()).all()  # what -inf would do to a fully masked row
    assert "$-\\infty - (-\\infty)$ is NaN" in text
