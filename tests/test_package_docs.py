"""Signposts that point somewhere: every package's docstring lists exactly its modules, and every
file that a docstring, a comment or docs/derivations.md cites exists."""
import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "npformer"
PACKAGES = sorted(p.parent for p in PKG.rglob("__init__.py") if "__pycache__" not in p.parts)
CITED = re.compile(r"(?<![\w./-])((?:[\w-]+/)*[\w-]+\.(?:py|json|md))\b")


def modules_of(package: Path) -> set:
    files = {p.name for p in package.glob("*.py") if p.name != "__init__.py"}
    subpackages = {p.name + "/" for p in package.iterdir() if (p / "__init__.py").is_file()}
    return files | subpackages


def docstring_of(package: Path) -> str:
    return ast.get_docstring(ast.parse((package / "__init__.py").read_text(encoding="utf-8"))) or ""


def names_in(doc: str, package: Path) -> set:
    found = set(re.findall(r"(?<![\w/.])([\w]+\.py)\b", doc))
    found |= {m + "/" for m in re.findall(r"(?<![\w/.])(\w+)/(?![\w.])", doc) if (package / m).is_dir()}
    found |= {m + "/" for m in re.findall(r"(?<![\w/.])(\w+)/,", doc) if (package / m).is_dir()}
    return found


@pytest.mark.parametrize("package", PACKAGES, ids=[str(p.relative_to(ROOT)) for p in PACKAGES])
def test_a_packages_docstring_lists_exactly_its_modules(package):
    doc = docstring_of(package)
    if package.name == "commands":   # one module per command, named by COMMANDS, plus the shared options
        from npformer.commands import COMMANDS
        listed = {c.replace("-", "_") + ".py" for c in COMMANDS} | {"options.py"}
        assert "options" in doc
    else:
        listed = names_in(doc, package)
    assert listed == modules_of(package), (sorted(modules_of(package) - listed), sorted(listed - modules_of(package)))


def cited_paths(text: str):
    for m in CITED.finditer(text):
        yield m.group(1)


ALL_FILES = {p.relative_to(ROOT).as_posix() for p in ROOT.rglob("*") if p.is_file() and ".git" not in p.parts}
USER_SIDE = re.compile(r"^(exercises|runs|folder|DIR|RUN_DIR)/|(^|/)ID\.py$")   # a learner's or a run's file


def resolves(path: str, source: Path) -> bool:
    """A path resolves from the repository, the package, the citing file's folder or docs/; a bare
    or partial path ("multihead.py", "distributed/buckets.py") where one file of the tree ends so."""
    if USER_SIDE.search(path):
        return True
    if any((b / path).exists() for b in (ROOT, PKG, source.parent, ROOT / "docs")):
        return True
    return any(f == path or f.endswith("/" + path) for f in ALL_FILES)


SOURCES = sorted(p for p in PKG.rglob("*.py") if "__pycache__" not in p.parts) + [ROOT / "docs" / "derivations.md"]


@pytest.mark.parametrize("source", SOURCES, ids=[str(p.relative_to(ROOT)) for p in SOURCES])
def test_every_file_a_docstring_comment_or_derivation_cites_exists(source):
    text = source.read_text(encoding="utf-8")
    if source.suffix == ".py":   # docstrings and comments only: code may build file names at run time
        tree = ast.parse(text)
        docs = [ast.get_docstring(n) or "" for n in ast.walk(tree)
                if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))]
        comments = [line.split("#", 1)[1] for line in text.splitlines() if "#" in line]
        text = "\n".join(docs + comments)
    missing = sorted({p for p in cited_paths(text) if not resolves(p, source)})
    assert not missing, f"{source.relative_to(ROOT)} cites {missing}"
