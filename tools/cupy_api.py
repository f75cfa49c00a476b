"""Write npformer/cupy_api.json: the CuPy API that every supported CuPy version has.

The cupysim backend (npformer/cupysim.py) exposes exactly these names, so code
that calls something one supported CuPy lacks fails on the CPU, in CI, rather
than on a user's GPU. ``put_along_axis`` is the example that motivated it: it
arrived in CuPy 14, and a call to it breaks every CuPy 13 install.

Where the names come from:
  * the namespaces (cupy, cupy.random, cupy.linalg, cupyx): the ``__init__.py``
    files inside each version's wheel, read with ``ast`` (the wheels download and
    open on a machine without a GPU; nothing is imported);
  * the ndarray methods and attributes: ``cupy/_core/core.pyx`` (and its
    ``.pxd``) at each version's git tag, since the wheel holds only the compiled
    extension.

Usage (the wheel versions give the range: the oldest and newest supported):
    pip download --no-deps --only-binary=:all: cupy-cuda12x==13.0.0 cupy-cuda12x==14.2.0 -d wheels/
    (one version per pip call), and a clone of github.com/cupy/cupy with its tags, then
    python tools/cupy_api.py --wheels wheels/*.whl --source path/to/cupy [--out npformer/cupy_api.json]
"""
from __future__ import annotations

import argparse
import ast
import json
import re
import subprocess
import zipfile
from pathlib import Path

NAMESPACES = {"cupy": "cupy/__init__.py", "cupy.random": "cupy/random/__init__.py",
              "cupy.linalg": "cupy/linalg/__init__.py", "cupyx": "cupyx/__init__.py"}


def public_names(source: str) -> set[str]:
    """Names a module's ``__init__.py`` binds at top level (imports, assignments,
    functions, classes), without the private ones."""
    names = set()
    for node in ast.parse(source).body:
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.name != "*":
                    names.add((alias.asname or alias.name).split(".")[0])
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                for n in ast.walk(t):
                    if isinstance(n, ast.Name):
                        names.add(n.id)
        elif isinstance(node, ast.If):  # names bound in both branches of version checks
            inner = ast.Module(body=node.body, type_ignores=[])
            names |= public_names(ast.unparse(inner))
    return {n for n in names if not n.startswith("_")}


def wheel_version(path: Path) -> str:
    return path.name.split("-")[1]


def ndarray_members(core_pyx: str, core_pxd: str) -> set[str]:
    """Methods, properties and readonly attributes of ``_ndarray_base``."""
    members = set(re.findall(r"readonly\s+[\w.]+\s+(\w+)", core_pxd))
    body = core_pyx.split("cdef class _ndarray_base", 1)[1]
    body = re.split(r"\n(?:cdef|cpdef|def|class) ", body, maxsplit=1)[0]  # up to the next top-level item
    for m in re.finditer(r"^    (?:def|cpdef(?:\s+[\w.]+)?)\s+(\w+)\s*\(|^    property\s+(\w+)\s*:", body, re.M):
        members.add(m.group(1) or m.group(2))
    return {n for n in members if not n.startswith("_") or n.startswith("__")}


def git_show(source: Path, tag: str, path: str) -> str:
    return subprocess.run(["git", "-C", str(source), "show", f"{tag}:{path}"], check=True,
                          capture_output=True, text=True).stdout


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wheels", nargs="+", type=Path, required=True, help="CuPy wheels, one per version")
    ap.add_argument("--source", type=Path, required=True, help="a git clone of CuPy with its version tags")
    ap.add_argument("--out", type=Path,
                    default=Path(__file__).resolve().parents[1] / "npformer" / "cupy_api.json")
    args = ap.parse_args(argv)
    per_version = {}
    for wheel in sorted(args.wheels, key=lambda p: tuple(int(x) for x in wheel_version(p).split("."))):
        version = wheel_version(wheel)
        with zipfile.ZipFile(wheel) as z:
            spaces = {ns: public_names(z.read(path).decode()) for ns, path in NAMESPACES.items()}
        tag = f"v{version}"
        spaces["ndarray"] = ndarray_members(git_show(args.source, tag, "cupy/_core/core.pyx"),
                                            git_show(args.source, tag, "cupy/_core/core.pxd"))
        per_version[version] = spaces
    versions = list(per_version)
    common = {ns: sorted(set.intersection(*(per_version[v][ns] for v in versions)))
              for ns in [*NAMESPACES, "ndarray"]}
    missing = {ns: {v: sorted(set.union(*(per_version[w][ns] for w in versions)) - per_version[v][ns])
                    for v in versions} for ns in common}
    doc = {"versions": versions, "generated_by": "tools/cupy_api.py", "names": common,
           "not_in_every_version": {ns: {v: names for v, names in d.items() if names}
                                    for ns, d in missing.items() if any(d.values())}}
    args.out.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    print(f"wrote {args.out}: CuPy {', '.join(versions)}; "
          + ", ".join(f"{ns} {len(names)}" for ns, names in common.items()))


if __name__ == "__main__":
    main()
