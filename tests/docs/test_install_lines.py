"""Every ``pip install`` that README.md and docs/*.md tell a reader to run resolves.

npformer is on no package index, so each line installs it from a clone (``.`` or
``".[extra,...]"``) or from the wheel a course build writes; every extra named exists in
setup.cfg, and no line asks an index for npformer. One test (marked ``install``: plain
``python -m pytest``, as CI runs it, includes it) installs both for real into a fresh
virtualenv: ``pip install .`` from this checkout (NumPy, setuptools and wheel from the index or
pip's cache) and the course wheel over it, and runs the installed command from outside the tree.
"""
import configparser
import os
import re
import shlex
import subprocess
import venv
from pathlib import Path

import pytest

import npformer
from npformer.course import wheel

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PIP_INSTALL = re.compile(r"pip install((?:[ \t]+(?:\"[^\"]*\"|'[^']*'|[^\s`\"'&|;#)]+))+)")


def install_lines() -> list:
    """(file, line number, the requirements and options after ``pip install``) of every one."""
    out = []
    for path in DOCS:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for m in PIP_INSTALL.finditer(line):
                out.append((path.relative_to(ROOT).as_posix(), n, shlex.split(m.group(1))))
    return out


def extras() -> set:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg", encoding="utf-8")
    return set(cfg["options.extras_require"])


def problems(args: list) -> list:
    """What would not resolve in one ``pip install`` line's arguments."""
    found = []
    for arg in (a for a in args if not a.startswith("-")):
        local = re.fullmatch(r"\.(?:\[([\w,-]+)\])?", arg)
        if local:
            found += [f"no extra {e!r} in setup.cfg" for e in (local.group(1) or "").split(",") if e
                      and e not in extras()]
        elif arg.endswith(".whl"):
            if arg != wheel.filename(npformer.__version__):
                found.append(f"{arg}: not the wheel `npformer course build` writes")
        elif re.match(r"npformer\b", arg, re.I):
            found.append(f"{arg}: npformer is on no package index")
    return found


LINES = install_lines()


def test_the_docs_hold_install_lines_of_each_kind():
    """The reader finds them all: from the clone, with extras, and the course's wheel."""
    kinds = {a.split("[")[0] for _, _, args in LINES for a in args}
    assert {".", wheel.filename(npformer.__version__)} <= kinds and len(LINES) >= 10


@pytest.mark.parametrize("where,n,args", LINES, ids=[f"{w}:{n}" for w, n, _ in LINES])
def test_every_install_line_resolves(where, n, args):
    assert args and not problems(args), (where, n, problems(args))


def test_a_line_that_would_not_resolve_is_found():
    assert problems(["npformer[docs]"]) and problems([".[no-such-extra]"]) and problems(["other-0.1-py3-none-any.whl"])
    assert not problems(["--no-deps", ".[test,all,mpi]"])


@pytest.mark.install
def test_the_clone_and_the_course_wheel_install_into_a_fresh_virtualenv(tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}

    def run(*args, cwd=tmp_path):
        proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=cwd, env=env, timeout=900)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc.stdout

    run(python, "-m", "pip", "install", "--quiet", ".", cwd=ROOT)   # the docs' line, as they write it
    where = run(python, "-c", "import npformer; print(npformer.__file__)")
    assert str(env_dir) in where
    run(env_dir / "bin" / "npformer", "exercise", "list", "--dir", tmp_path / "exercises")
    whl = wheel.build(str(tmp_path / "dist"))
    run(python, "-m", "pip", "install", "--quiet", "--force-reinstall", "--no-deps", whl)
    run(env_dir / "bin" / "npformer", "exercise", "start", "relu", "--dir", tmp_path / "exercises")
    assert "NotImplementedError" in (tmp_path / "exercises" / "relu.py").read_text()
