"""The learner's functions in the model, and the reference refused, through npformer's seam.

npformer's ops and blocks call each other through two namespaces read at call time,
``npformer.ops`` and ``npformer.model`` (npformer/ops/__init__.py says why), and each
has a ``swapped`` that replaces names there and nowhere else until it exits. ``check``:

* **refused**, while the exercise is graded alone: the namespace's entry of each of its
  functions raises ``ReferenceCalled``, so code that calls ``ops.layernorm_backward``
  (``npformer.ops.layernorm_backward``) is refused when it runs;
* **swapped**, inside the blocks: the entries are the learner's functions, so the encoder
  layer, the decoder layer and the whole model run the learner's code.

The defining modules never change (the grader runs the reference from there), so code
that takes the reference from there (``from npformer.ops.layernorm import
layernorm_backward``, ``layernorm.layernorm_backward``) is caught by reading it, before
it runs: ``names_the_reference``.
"""
from __future__ import annotations

import ast
import inspect
import textwrap
from contextlib import contextmanager

from npformer import model, ops


class ReferenceCalled(RuntimeError):
    """The learner's code called the reference function it is meant to replace."""


@contextmanager
def swapped(functions: dict):
    """Each function (name -> function) in its namespace, npformer.ops or npformer.model, while inside."""
    with ops.swapped({n: f for n, f in functions.items() if n in ops.FUNCTIONS}), \
            model.swapped({n: f for n, f in functions.items() if n not in ops.FUNCTIONS}):
        yield


def refused(names):
    """While inside, the namespace entry of each name raises ``ReferenceCalled``."""
    def refusing(name):
        def refuse(*args, **kwargs):
            raise ReferenceCalled(f"{name} is the reference answer of this exercise; it refuses to run while "
                                  "check grades it (write the gradient yourself)")
        return refuse
    return swapped({name: refusing(name) for name in names})


def names_the_reference(module: str, refs: dict, functions) -> str | None:
    """How the learner's code (a module, a dict of functions or one) takes a function of ``refs``
    from its defining ``module``, read from the source, never run: an import of it, or an attribute
    of that module or of a name bound to it; None when it does not. npformer's own function passed
    in is graded as the reference (a verbatim copy) and not read."""
    fns = [functions] if inspect.ismodule(functions) else [getattr(f, "learner", f) for f in (
        functions.values() if isinstance(functions, dict) else [functions])]
    for obj in fns:
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(obj)))
            scope = vars(obj) if inspect.ismodule(obj) else {**obj.__globals__, **inspect.getclosurevars(obj).nonlocals}
        except (OSError, TypeError, SyntaxError, ValueError, AttributeError):
            continue  # no source to read (a builtin, a lambda inside an expression), or not a function
        if obj in refs.values():
            continue
        bound = {}  # name -> the dotted path the source's own imports bind it to
        for node in ast.walk(tree):
            for alias in node.names if isinstance(node, (ast.Import, ast.ImportFrom)) else ():
                full = f"{node.module}.{alias.name}" if isinstance(node, ast.ImportFrom) else alias.name
                if full in {f"{module}.{name}" for name in refs}:
                    return f"imports {full}, the reference itself"
                if isinstance(node, ast.Import) and not alias.asname:
                    bound[full.split(".")[0]] = full.split(".")[0]  # import a.b binds a
                else:
                    bound[alias.asname or alias.name] = full
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in refs:
                head, _, rest = ast.unparse(node.value).partition(".")
                value = scope.get(head)
                base = value.__name__ if inspect.ismodule(value) else bound.get(head, head)
                if f"{base}.{rest}".rstrip(".") == module:
                    return f"calls {module}.{node.attr}, the reference itself"
            elif isinstance(node, ast.Name) and any(scope.get(node.id) is ref for ref in refs.values()):
                return f"calls {node.id}, which is {module}.{scope[node.id].__name__}, the reference itself"
    return None
