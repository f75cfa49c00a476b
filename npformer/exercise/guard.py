"""Swapping the learner's functions into the model, and guarding the reference.

Two things happen while ``check`` runs:

* **swap**: every npformer module that bound a reference function (for example
  ``npformer.model.sublayer`` binds ``layernorm_backward``) gets the learner's
  function under that name instead, so the encoder layer, the decoder layer and
  the whole model run the learner's code wherever they would run the reference;
* **guard**: the reference function itself raises ``ReferenceCalled`` if called.
  Its code object is replaced for the duration, so even a name bound before the
  check (``from npformer.ops import layernorm_backward`` in a notebook) refuses:
  a learner's file cannot lean on the answer by accident.

Both are undone when the check ends, whatever happened.
"""
from __future__ import annotations

import sys
import types
from contextlib import contextmanager


class ReferenceCalled(RuntimeError):
    """The learner's code called the reference function it is meant to replace."""


def _refuse(*args, **kwargs):
    # Runs with the reference module's globals, so it names nothing of ours directly:
    # it imports the exception class and reads its own (renamed) code object's name.
    raise __import__("npformer.exercise.guard", fromlist=["ReferenceCalled"]).ReferenceCalled(
        f"{__import__('sys')._getframe().f_code.co_name} is the reference answer of this exercise; "
        "it refuses to run while check grades it (write the gradient yourself)")


_ORIGINAL_CODE: dict = {}  # id(function) -> its real code object, while guarded


def original(fn):
    """``fn`` as it really is, even while guarded: the grader's own use of the reference."""
    code = _ORIGINAL_CODE.get(id(fn))
    if code is None:
        return fn
    return types.FunctionType(code, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)


@contextmanager
def guarded(references: dict):
    """While inside, each reference function (name -> function) raises ``ReferenceCalled``."""
    saved = {}
    try:
        for name, fn in references.items():
            if not isinstance(fn, types.FunctionType) or fn.__code__.co_freevars:
                continue
            saved[name] = fn
            _ORIGINAL_CODE[id(fn)] = fn.__code__
            fn.__code__ = _refuse.__code__.replace(co_name=name)
        yield
    finally:
        for fn in saved.values():
            fn.__code__ = _ORIGINAL_CODE.pop(id(fn))


@contextmanager
def swapped(references: dict, replacements: dict):
    """Bind ``replacements[name]`` wherever an npformer module bound ``references[name]``."""
    patched = []
    try:
        for module in list(sys.modules.values()):
            mod_name = getattr(module, "__name__", "") or ""
            if not mod_name.startswith("npformer") or mod_name.startswith("npformer.exercise"):
                continue
            for name, ref in references.items():
                if name in replacements and module.__dict__.get(name) is ref:
                    patched.append((module, name, ref))
                    setattr(module, name, replacements[name])
        _clear_tables()
        yield
    finally:
        for module, name, ref in reversed(patched):
            setattr(module, name, ref)
        _clear_tables()


def _clear_tables():
    """The model caches its positional table: a swapped ``sinusoidal_table`` must be rebuilt."""
    transformer = sys.modules.get("npformer.model.transformer")
    if transformer is not None:
        transformer._PE_CACHE.clear()
