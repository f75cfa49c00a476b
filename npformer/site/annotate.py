"""A Python file cut into sections: notes on the left, the code they explain on the right.

A note is a docstring or a block of whole-line comments; the code is the lines
that follow it, up to the next note. A section also starts at every top-level
``def`` or ``class`` and at every method, so that each function has a section
of its own to link to (its anchor is its name, ``Adam.update`` for a method).
A docstring moves into the note column and leaves the code; comments at the
end of a code line stay in the code, where they annotate that line (the shapes,
mostly). A comment block right above a ``def`` shares the function's section.

``definitions`` lists what a file defines (functions, classes, their methods
and fields, module-level names) with their lines, read with ``ast``: nothing
is imported or run, so a page can be made of a file that would not import.
"""
from __future__ import annotations

import ast
import inspect
import io
import tokenize
from dataclasses import dataclass, field


@dataclass
class Note:
    text: str        # the docstring (dedented) or the comment block without its '#'
    line: int        # where it starts in the file
    kind: str        # "docstring" or "comment"


@dataclass
class Section:
    notes: list = field(default_factory=list)   # Note, in order
    lines: list = field(default_factory=list)   # line numbers (1-based) of the code shown
    names: list = field(default_factory=list)   # definitions that start here: "linear_backward", "Adam.update"

    def has_code(self) -> bool:
        return bool(self.lines)


@dataclass(frozen=True)
class Definition:
    name: str        # "linear_backward", "Adam", "Adam.update", "LinearCache.x"
    start: int       # first line (its first decorator, for a decorated def)
    end: int
    kind: str        # "function", "class", "name", "attribute"


def definitions(source: str) -> dict:
    """name -> Definition for every top-level function, class and assigned name,
    and the methods, fields and attributes (``self.t = ...``) of each top-level class."""
    found = {}

    def add(name, node, kind):
        start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        found.setdefault(name, Definition(name, start, node.end_lineno, kind))

    def walk(body, prefix):
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                add(prefix + node.name, node, "function")
            elif isinstance(node, ast.ClassDef):
                add(prefix + node.name, node, "class")
                if not prefix:
                    walk(node.body, node.name + ".")
                    for n in ast.walk(node):   # self.t = 0 in a method: the attribute Adam.t
                        if not isinstance(n, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                            continue
                        for t in (n.targets if isinstance(n, ast.Assign) else [n.target]):
                            for a in ast.walk(t):
                                if (isinstance(a, ast.Attribute) and isinstance(a.value, ast.Name)
                                        and a.value.id == "self"):
                                    add(f"{node.name}.{a.attr}", n, "attribute")
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:
                    for n in ast.walk(t):
                        if isinstance(n, ast.Name):
                            add(prefix + n.id, node, "name")
    walk(ast.parse(source).body, "")
    return found


def _docstrings(tree) -> dict:
    """first line -> (last line, text) of each docstring of the module, a class or a function."""
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                    and isinstance(first.value.value, str)):
                found[first.lineno] = (first.end_lineno, inspect.cleandoc(first.value.value))
    return found


def _section_starts(tree) -> dict:
    """first line -> qualified name of every top-level def or class, every method, and every def with a docstring."""
    starts = {}

    def visit(body, prefix, in_class, top):
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                line = min([node.lineno] + [d.lineno for d in node.decorator_list])
                if top or in_class or ast.get_docstring(node) is not None:
                    starts.setdefault(line, prefix + node.name)
                visit(node.body, prefix + node.name + ".", isinstance(node, ast.ClassDef), False)
            elif hasattr(node, "body") and isinstance(node.body, list):
                for part in ("body", "orelse", "finalbody", "handlers"):
                    visit(getattr(node, part, []) or [], prefix, False, top)
    visit(tree.body, "", False, True)
    return starts


def _whole_line_comments(source: str) -> dict:
    """line -> text of every comment that is alone on its line (not one inside a string)."""
    found = {}
    lines = source.splitlines()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            row, col = tok.start
            if not lines[row - 1][:col].strip():
                text = tok.string[1:]
                found[row] = text[1:] if text.startswith(" ") else text
    return found


def sections(source: str) -> list:
    """The file as a list of Section, in order; every line of the file is in
    exactly one section's code or note (blank lines at a section's edges dropped)."""
    tree = ast.parse(source)
    docs = _docstrings(tree)
    starts = _section_starts(tree)
    comments = _whole_line_comments(source)
    lines = source.splitlines()
    out = [Section()]

    def fresh():
        if out[-1].has_code():
            out.append(Section())
        return out[-1]

    i = 1
    while i <= len(lines):
        if i in starts:
            fresh().names.append(starts[i])
        if i in docs:
            end, text = docs[i]
            if i == 1 or not out[-1].has_code() or out[-1].names:
                out[-1].notes.append(Note(text, i, "docstring"))
            else:
                fresh().notes.append(Note(text, i, "docstring"))
            i = end + 1
            continue
        if i in comments and i not in starts:
            j = i
            while j + 1 in comments and j + 1 not in starts:
                j += 1
            fresh().notes.append(Note("\n".join(comments[k] for k in range(i, j + 1)), i, "comment"))
            i = j + 1
            continue
        out[-1].lines.append(i)
        i += 1
    for s in out:
        while s.lines and not lines[s.lines[0] - 1].strip():
            s.lines.pop(0)
        while s.lines and not lines[s.lines[-1] - 1].strip():
            s.lines.pop()
    return [s for s in out if s.notes or s.lines or s.names]
