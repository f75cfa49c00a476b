"""The learner's folder: ``start`` writes an exercise file, ``load`` reads one back,
and a small record (``.npformer-exercise.json``) keeps the last verdict of each
file, with the file's hash, so that ``list`` can say passing or failing without
grading everything again (a file changed since its check shows "changed").
"""
from __future__ import annotations

import ast
import hashlib
import importlib.util
import inspect
import io
import json
import os
import re
import sys
import textwrap
import tokenize

from npformer.exercise import variants
from npformer.exercise.catalog import EXERCISES, get
from npformer.exercise.grader import ExerciseError

DEFAULT_DIR = "exercises"
RECORD = ".npformer-exercise.json"


def path_of(exercise_id: str, folder: str = DEFAULT_DIR) -> str:
    return os.path.join(folder, f"{exercise_id}.py")


def _comment(src: str) -> str:
    """src as a block of comments; a blank line stays a comment, so the block stays one."""
    lines = textwrap.dedent(src).rstrip().splitlines()
    return "\n".join(("#     " + line).rstrip() for line in lines)


# dx = ..., dW = ..., ``dlogits`` (..., V) = ...: a gradient's name (d and a letter, so that
# d_model = 512 is not one), an optional shape, and an equals sign that is not ==
_GRADIENT_EQUATION = re.compile(r"(?<![\w.])d[A-Za-z]\w*`{0,2}\s*(\([^)]*\)\s*)?=(?!=)")


def shown_source(obj) -> str:
    """obj's source as a stub shows it: the code and its shape comments, without a docstring or a
    comment that states a gradient (``dx = ...``). The stub shows what the learner differentiates,
    never the result; npformer's own docstrings are written for readers who may see it."""
    src = textwrap.dedent(inspect.getsource(obj))
    lines = src.splitlines(keepends=True)
    drop = set()  # the indices of the lines left out
    definition = ast.parse(src).body[0]
    doc = ast.get_docstring(definition, clean=False)
    if doc and _GRADIENT_EQUATION.search(doc):
        statement = definition.body[0]  # the docstring's, all its lines
        drop.update(range(statement.lineno - 1, statement.end_lineno))
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type == tokenize.COMMENT and _GRADIENT_EQUATION.search(tok.string):
            row, col = tok.start[0] - 1, tok.start[1]
            code = lines[row][:col].rstrip()
            if code:
                lines[row] = code + "\n"
            else:
                drop.add(row)
    return "".join(line for i, line in enumerate(lines) if i not in drop)


def _returns(text: str) -> str:
    """A stub function's docstring: what to return, wrapped to the file's width, never inside a
    shape: ``dy (B, T, d_model)`` stays on one line."""
    keep = re.sub(r"(\w+ )?\([\w.,* ]{1,40}\)", lambda m: m.group(0).replace(" ", "\0"), text)
    body = textwrap.fill(keep, 96, initial_indent='    """', subsequent_indent="    ", break_on_hyphens=False)
    body = body.replace("\0", " ")
    return body + ('"""' if len(body.splitlines()) == 1 else '\n    """')


def _caches(module) -> list:
    return [obj for name, obj in vars(module).items()
            if inspect.isclass(obj) and name.endswith("Cache") and obj.__module__ == module.__name__]


def template(exercise_id: str, folder: str = DEFAULT_DIR) -> str:
    """The text of a new exercise file: the signatures, the forward, the cache's fields and shapes,
    what to return, and a body that raises. Never the backward: not its code, not an equation of it
    (the reference's docstring is not copied; ``Exercise.returns`` says what to return)."""
    if exercise_id in variants.VARIANTS:
        return _variant_template(exercise_id, folder)
    ex = get(exercise_id)
    if ex.kind == "train":
        raise ExerciseError("exercise train has no file: it runs every exercise you passed in a training run "
                            f"(`npformer exercise check train --dir {folder}`)")
    module = __import__(ex.module, fromlist=["_"])
    refs = ex.references()
    forwards = [getattr(module, n.replace("_backward", "_forward"), None) for n in ex.functions]
    lines = [f'"""Exercise {ex.id}: {ex.title}.', "",
             f"Write {', '.join(ex.functions)} below, with the names and signatures of npformer's",
             f"reference ({ex.module}). `npformer exercise check {ex.id} --dir {folder}` grades",
             "it against central differences, entry by entry, and says which gradient is wrong,",
             "where, and how.", "",
             f"Derivation: {ex.anchor}", f'            (section "{ex.section}")',
             f"Builds on:  {', '.join(ex.prereqs) or 'nothing'}",
             f"Hints:      npformer exercise hint {ex.id} --level 1   (then 2, then 3)",
             "", "Arrays are NumPy's (or CuPy's: take the module from the arrays, as",
             "npformer.backend.backend_of(a).xp does). Keep every gradient in its input's dtype.",
             '"""', "import numpy as np  # noqa: F401", ""]
    if ex.kind == "backward":
        lines += ["# The forward you differentiate (npformer's own):", "#"]
        for fwd in dict.fromkeys(f for f in forwards if f is not None):
            lines += [_comment(shown_source(fwd)), "#"]
        for cls in _caches(module):
            lines += ["# The cache your backward receives:", _comment(shown_source(cls)), "#"]
    else:
        lines += ["# What the table is used for: the model adds PE[pos] to every embedded position,",
                  "# x + PE, whose backward passes dy unchanged (npformer.ops.positional_backward).", "#"]
    for name, returns in zip(ex.functions, ex.returns):
        sig = inspect.signature(refs[name])
        params = ", ".join(p.name if p.default is inspect.Parameter.empty else f"{p.name}={p.default!r}"
                           for p in sig.parameters.values())
        lines += ["", "", f"def {name}({params}):", _returns(returns),
                  f'    raise NotImplementedError("write {name}")']
    return "\n".join(lines).replace("\n\n\n\n", "\n\n\n") + "\n"


def _variant_template(vid: str, folder: str) -> str:
    fwd, name, returns, _, cache = variants.VARIANTS[vid]
    return "\n".join([
        f'"""Variant exercise {vid}: a layer npformer does not contain.', "",
        f"Write {name}(dy, cache). There is no stored answer: `npformer exercise check {vid} --dir {folder}`",
        "differentiates the forward below numerically and compares, entry by entry.", '"""',
        "import numpy as np  # noqa: F401", "", "# The forward (npformer.exercise.variants):", "#",
        _comment(shown_source(fwd)), "#", "# Its cache:", _comment(shown_source(cache)), "", "",
        f"def {name}(dy, cache):", _returns(returns), f'    raise NotImplementedError("write {name}")', ""])


def start(exercise_id: str, folder: str = DEFAULT_DIR, force: bool = False, staged: bool = False) -> str:
    """Write ``folder/ID.py``; refuse to overwrite an existing file unless ``force``."""
    if staged:
        from npformer.exercise.staged import GRAPHS, template as staged_template
        if exercise_id not in GRAPHS:
            raise ExerciseError(f"--staged exists for {', '.join(GRAPHS)}, not {exercise_id}")
        text = staged_template(exercise_id)
    else:
        text = template(exercise_id, folder)
    path = path_of(exercise_id, folder)
    if os.path.exists(path) and not force:
        raise ExerciseError(f"{path} exists: your work is kept; pass --force to replace it with a fresh file")
    os.makedirs(folder, exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    return path


def load(exercise_id: str, folder: str = DEFAULT_DIR):
    """Import the learner's file as a module, from its path (never from sys.path)."""
    path = path_of(exercise_id, folder)
    if not os.path.isfile(path):
        raise ExerciseError(f"{path}: no such file; write it with `npformer exercise start {exercise_id} "
                            f"--dir {folder}`")
    name = "npformer_exercise_" + re.sub(r"\W", "_", exercise_id)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        raise ExerciseError(f"{path}:{e.lineno}: syntax error: {e.msg}") from None
    except NotImplementedError:
        raise
    except Exception as e:  # noqa: BLE001 -- a file that fails to import is the learner's to fix
        raise ExerciseError(f"{path}: importing it raised {type(e).__name__}: {e}") from None
    finally:
        sys.modules.pop(name, None)
    return module


def _hash(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _read_record(folder: str) -> dict:
    try:
        with open(os.path.join(folder, RECORD)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def record(folder: str, exercise_id: str, verdict: str) -> None:
    path = path_of(exercise_id, folder)
    rec = _read_record(folder)
    rec[exercise_id] = {"verdict": verdict, "sha256": _hash(path) if os.path.exists(path) else None}
    with open(os.path.join(folder, RECORD), "w") as f:
        json.dump(rec, f, indent=1, sort_keys=True)


def status(exercise_id: str, folder: str = DEFAULT_DIR) -> str:
    """'not started', 'passing', 'failing', 'borderline' or 'changed' (edited since its last check)."""
    rec = _read_record(folder).get(exercise_id)
    path = path_of(exercise_id, folder)
    if EXERCISES.get(exercise_id) is not None and EXERCISES[exercise_id].kind == "train":
        return {"passed": "passing", "failed": "failing"}.get((rec or {}).get("verdict"), "not started")
    if not os.path.exists(path):
        return "not started"
    if rec is None:
        return "not started" if "raise NotImplementedError" in open(path).read() else "changed"
    if rec.get("sha256") != _hash(path):
        return "changed"
    return {"passed": "passing", "failed": "failing", "borderline": "borderline"}.get(rec["verdict"], "not started")


def passed(folder: str) -> list:
    """The ids whose file passed its last check and has not changed since."""
    return [i for i, e in EXERCISES.items() if e.functions and status(i, folder) == "passing"]


def reference_text(exercise_id: str) -> str:
    """An exercise file whose functions are the reference's source, verbatim, with the imports
    they need: what a learner who copied the answer would have (it passes, and check says so)."""
    ex = get(exercise_id)
    module = __import__(ex.module, fromlist=["_"])
    refs = ex.references()
    needed = set()
    for fn in refs.values():
        stack = [fn.__code__]
        while stack:
            code = stack.pop()
            needed.update(code.co_names)
            stack += [c for c in code.co_consts if inspect.iscode(c)]
    names = sorted(n for n in needed if n in vars(module) and n not in refs and not n.startswith("__"))
    spaces = [n for n in names if inspect.ismodule(vars(module)[n])]  # the namespaces npformer.ops, npformer.model
    head = "from __future__ import annotations\n\n" + (f"from npformer import {', '.join(spaces)}\n" if spaces else "")
    if set(names) - set(spaces):
        head += f"from {ex.module} import {', '.join(n for n in names if n not in spaces)}  # noqa: F401\n"
    return head + "\n\n" + "\n\n".join(inspect.getsource(fn) for fn in refs.values())
