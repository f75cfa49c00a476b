"""Imports run one way, from the ops up to the command line:

    backend -> ops -> model -> decode / train -> translation / exercise -> run -> commands -> cli

A module may import from its own layer or any layer below, never from one
above (a function-level import counts too). Read from ``npformer``'s source
with ``ast``, so a new module is checked as soon as it exists.
"""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "npformer"

# Lowest first. A module belongs to the layer of the longest prefix listed here.
# npformer.runtime is the machinery that runs the Transformer fast and spread out
# (CPU tuning, flat buffers, threads, ranks); the CuPy stand-in, cupysim, sits beside
# the backend that loads it; npformer.verify is the gradient check and the cases it
# runs, each at the layer of what it checks.
LAYERS = [
    ("npformer", "npformer.errors", "npformer.runtime.cpu", "npformer.backend", "npformer.cupysim",
     "npformer.special_tokens", "npformer.runtime.flat"),
    ("npformer.ops", "npformer.verify.gradcheck", "npformer.runtime.workers", "npformer.runtime.distributed",
     "npformer.data"),
    ("npformer.model", "npformer.verify.model_cases"),
    ("npformer.checkpoint",),
    ("npformer.decode", "npformer.train", "npformer.verify"),
    ("npformer.translation", "npformer.plot", "npformer.exercise"),
    ("npformer.run",),
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
