"""An exercise as a Jupyter notebook (``npformer exercise start ID --notebook``), built with nbformat.

Three cells, in the order a learner works:

    markdown   the task: what to write, the derivation's section, what it builds on, the hints
    code       the stub, as ``exercise start`` writes it to ID.py (files.template): the forward,
               the cache, the signatures, bodies that raise NotImplementedError
    code       ``check(ID, {name: function})``: the grader on the functions the notebook defines;
               the stub as it is reports "not started"

The notebook is the file's other form, not a second copy of it: its stub cell is the same text.
nbformat is the ``course`` extra's; without it, a ``UserError`` names the extra.
"""
from __future__ import annotations

import os

from npformer.errors import UserError


def _nbformat():
    try:
        import nbformat
    except ImportError:
        raise UserError("a notebook needs nbformat, which is not installed: pip install '.[course]' "
                        "from npformer's clone") from None
    return nbformat


def _task(exercise_id: str) -> str:
    from npformer.exercise import EXERCISES, variants
    if exercise_id in variants.VARIANTS:
        name = variants.VARIANTS[exercise_id][1]
        return (f"# Variant exercise `{exercise_id}`\n\nWrite `{name}` in the next cell: a layer npformer does "
                "not contain, graded against numerical derivatives of its forward. Run the last cell to grade it.\n\n"
                f"Hints: `npformer exercise hint {exercise_id} --level 1` (then 2, then 3).")
    ex = EXERCISES[exercise_id]
    names = ", ".join(f"`{n}`" for n in ex.functions)
    return "\n".join([
        f"# Exercise `{ex.id}`: {ex.title}", "",
        f"Write {names} in the next cell, with the names and signatures of npformer's reference "
        f"(`{ex.module}`), then run the last cell: it grades your code against central differences, "
        "entry by entry, and says which gradient is wrong, where, and how.", "",
        f"- Derivation: [{ex.section}]({ex.anchor}) (`{ex.anchor}` in npformer's source, or its page in the "
        "site `npformer docs` builds)",
        f"- Builds on: {', '.join(f'`{p}`' for p in ex.prereqs) or 'nothing'}",
        f"- Hints: `npformer exercise hint {ex.id} --level 1` (then 2, then 3)",
    ])


def function_names(exercise_id: str) -> tuple:
    """The functions the learner writes, as the grader looks them up."""
    from npformer.exercise import EXERCISES, variants
    if exercise_id in variants.VARIANTS:
        return (variants.VARIANTS[exercise_id][1],)
    return tuple(EXERCISES[exercise_id].functions)


def check_source(exercise_id: str) -> str:
    """The last cell: the grader on the functions the notebook defined."""
    functions = ", ".join(f"{n!r}: {n}" for n in function_names(exercise_id))
    return (f"# grade the cell above: run it again after each change, then this one\n"
            f"from npformer.exercise import check\n\nreport = check({exercise_id!r}, {{{functions}}})")


def notebook(exercise_id: str):
    """The notebook of an exercise (an nbformat NotebookNode, version 4)."""
    from npformer.exercise import files
    nbf = _nbformat()
    nb = nbf.v4.new_notebook()
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata["npformer"] = {"exercise": exercise_id}
    nb.cells = [nbf.v4.new_markdown_cell(_task(exercise_id)),
                nbf.v4.new_code_cell(files.template(exercise_id).rstrip("\n")),
                nbf.v4.new_code_cell(check_source(exercise_id))]
    for i, cell in enumerate(nb.cells):   # stable ids: the same exercise makes the same file
        cell["id"] = f"{exercise_id}-{i}"
    nbf.validate(nb)
    return nb


def path_of(exercise_id: str, folder: str) -> str:
    return os.path.join(folder, f"{exercise_id}.ipynb")


def write(exercise_id: str, folder: str, force: bool = False) -> str:
    """Write ``folder/ID.ipynb``; refuse to overwrite an existing one unless ``force``."""
    from npformer.exercise.grader import ExerciseError
    nb = notebook(exercise_id)
    path = path_of(exercise_id, folder)
    if os.path.exists(path) and not force:
        raise ExerciseError(f"{path} exists: your work is kept; pass --force to replace it with a fresh notebook")
    os.makedirs(folder, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        _nbformat().write(nb, f)
    return path
