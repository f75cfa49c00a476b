"""Imports run one way, from the ops up to the command line:

    backend -> ops -> model -> checkpoint -> decode / train / verify -> translation / exercise -> run / course
    -> commands -> cli

A module may import from its own layer or any layer below, never from one
above, and no import cycle joins npformer's modules (a function-level import
counts too). A module may import its own package, as the ops and the model's
blocks read the namespaces ``npformer.ops`` and ``npformer.model`` (npformer/ops/__init__.py):
Python imports a package before any of its modules, so that adds no order to
the graph, and the test checks that such a module reads its package only
inside functions, at call time, never while the package is half imported.
Read from ``npformer``'s source with ``ast``, so a new module is checked as
soon as it exists. README.md states the chain above in the same words.
"""
import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "npformer"

# Lowest first. A module belongs to the layer of the longest prefix listed here.
# npformer.runtime is the machinery that runs the Transformer fast and spread out
# (CPU tuning, flat buffers, threads, ranks); the CuPy stand-in, cupysim, sits beside
# the backend that loads it; npformer.verify is the gradient check, the diagnosis of a
# wrong gradient and the cases it runs, each at the layer of what it checks. npformer.course (assignments, the course
# platforms' files) grades with npformer.exercise, so it sits above it, beside the run.
LAYERS = [
    ("npformer", "npformer.errors", "npformer.runtime.cpu", "npformer.backend", "npformer.cupysim",
     "npformer.special_tokens", "npformer.runtime.flat"),
    ("npformer.ops", "npformer.verify.gradcheck", "npformer.verify.diagnose", "npformer.verify.verdict",
     "npformer.runtime.workers", "npformer.runtime.distributed",
     "npformer.data"),
    ("npformer.model", "npformer.verify.model_cases"),
    ("npformer.checkpoint",),
    ("npformer.decode", "npformer.train", "npformer.verify"),
    ("npformer.translation", "npformer.plot", "npformer.exercise"),
    ("npformer.run", "npformer.site", "npformer.course"),
    ("npformer.commands",),
    ("npformer.cli", "npformer.__main__"),
]
RANK = {prefix: rank for rank, prefixes in enumerate(LAYERS) for prefix in prefixes}


def layer(module: str) -> int:
    parts = module.split(".")
    for n in range(len(parts), 1, -1):  # "npformer" alone is the package's __init__, no catch-all
        if ".".join(parts[:n]) in RANK:
            return RANK[".".join(parts[:n])]
    if module == "npformer":
        return RANK["npformer"]
    raise KeyError(f"{module} is in no layer: add it to LAYERS")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set:
    """Every npformer module ``path`` imports (``from npformer import checkpoint``
    counts as npformer.checkpoint)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                is_module = (PACKAGE.parent / Path(*sub.split("."))).with_suffix(".py").is_file() or \
                    (PACKAGE.parent / Path(*sub.split(".")) / "__init__.py").is_file()
                names.add(sub if is_module else node.module)
    return {n for n in names if n == "npformer" or n.startswith("npformer.")}


MODULES = sorted(PACKAGE.rglob("*.py"))


def upward_imports(path: Path, me: str) -> list:
    """The npformer modules that ``path`` (the module ``me``) imports from layers above its own."""
    return sorted(m for m in imported(path) if layer(m) > layer(me))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_no_module_imports_from_a_layer_above_it(path):
    me = module_name(path)
    above = upward_imports(path, me)
    assert not above, f"{me} (layer {layer(me)}) imports from higher layers: {above}"


def test_a_planted_wrong_way_import_is_found(tmp_path):
    """An op that imports the trainer (inside a function, too) is refused."""
    planted = tmp_path / "planted.py"
    planted.write_text("from npformer.backend import backend_of\n\n"
                       "def f():\n    from npformer.train import trainer\n    return trainer\n")
    assert upward_imports(planted, "npformer.ops.planted") == ["npformer.train.trainer"]
    assert upward_imports(planted, "npformer.train.planted") == []


def test_commands_share_only_through_options():
    for path in (PACKAGE / "commands").glob("*.py"):
        siblings = {m for m in imported(path) if m.startswith("npformer.commands.")}
        assert siblings <= {"npformer.commands.options"}, f"{path.name} imports {siblings}"


def test_the_check_can_fail():
    """The layer table puts a known upward import where the test would refuse it."""
    assert layer("npformer.cli") > layer("npformer.commands.train") > layer("npformer.translation") \
        > layer("npformer.train.trainer") > layer("npformer.model.config") > layer("npformer.ops.linear")
    assert imported(PACKAGE / "commands" / "demo.py") >= {"npformer.commands.options", "npformer.translation"}


# --- no cycles ---------------------------------------------------------------------

def own_package(imported_name: str, me: str) -> bool:
    """``imported_name`` is a package that ``me`` lies in (npformer.ops for npformer.ops.attention)."""
    return me.startswith(imported_name + ".")


def import_graph() -> dict:
    """module -> the npformer modules it imports, less its own packages (see the docstring)."""
    return {module_name(p): {m for m in imported(p) if not own_package(m, module_name(p))} for p in MODULES}


def cycles(graph: dict) -> list:
    """Every strongly connected group of two or more modules (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while not group or group[-1] != v:
                group.append(stack.pop())
                on_stack.discard(group[-1])
            if len(group) > 1 or v in graph.get(v, ()):
                found.append(sorted(group))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_joins_npformers_modules():
    assert cycles(import_graph()) == []


def test_a_planted_cycle_is_found():
    graph = {"npformer.exercise.grader": {"npformer.exercise.variants", "npformer.ops"},
             "npformer.exercise.variants": {"npformer.exercise.grader"}, "npformer.ops": set()}
    assert cycles(graph) == [["npformer.exercise.grader", "npformer.exercise.variants"]]


def _at_import_time(node):
    """The nodes that run when the module is imported: not the bodies of its functions."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            args = child.args
            for part in [*getattr(child, "decorator_list", []), *args.defaults, *filter(None, args.kw_defaults)]:
                yield part
                yield from _at_import_time(part)
            continue
        yield child
        yield from _at_import_time(child)


def own_package_read_at_import(path: Path, me: str) -> list:
    """The names bound to one of ``me``'s own packages that ``path`` reads outside a function."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {a.asname or a.name for a in node.names if own_package(f"{node.module}.{a.name}", me)}
        elif isinstance(node, ast.Import):
            names |= {a.asname for a in node.names if a.asname and own_package(a.name, me)}
    return sorted({n.id for n in _at_import_time(tree) if isinstance(n, ast.Name) and n.id in names})


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_a_module_reads_its_own_package_only_at_call_time(path):
    me = module_name(path)
    read = own_package_read_at_import(path, me)
    assert not read, f"{me} reads its own package {read} while it is imported (the package is half built then)"


def test_a_module_reading_its_package_at_import_is_found(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text("from npformer import ops\n\nSOFTMAX = ops.softmax_forward\n\n"
                       "def f(x, default=ops.relu_forward):\n    return ops.softmax_forward(x)\n")
    assert own_package_read_at_import(planted, "npformer.ops.planted") == ["ops"]
    planted.write_text("from npformer import ops\n\n\ndef f(x):\n    return ops.softmax_forward(x)\n")
    assert own_package_read_at_import(planted, "npformer.ops.planted") == []


# --- the README says the same ---------------------------------------------------------

README = PACKAGE.parent / "README.md"


def chain(text: str) -> str:
    """The first "a -> b / c -> ..." chain in ``text``, its whitespace made single spaces."""
    group = r"\w+(?: / \w+)*"
    m = re.search(rf"{group}(?: -> {group})+", " ".join(text.split()))
    return m.group(0)


def test_the_readme_states_the_chain_of_this_docstring():
    paragraph = README.read_text(encoding="utf-8").split("Imports run one way, checked by", 1)[1]
    assert chain(paragraph) == chain(__doc__)


def test_the_chain_follows_the_layers():
    """Each "->" goes one layer up; the names a "/" joins share one layer."""
    groups = [[name.strip() for name in group.split("/")] for group in chain(__doc__).split("->")]
    ranks = [{layer("npformer." + name) for name in group} for group in groups]
    assert all(len(r) == 1 for r in ranks), ranks
    assert [r.pop() for r in ranks] == list(range(len(LAYERS))), groups
