"""The cross-references between the code, the derivations and the exercises, read from their names.

Nothing here is a hand-kept list. The links come from three conventions that
the sources already follow:

* docs/derivations.md opens each section with a "Code:" sentence:
  ``Code: `linear_forward`, `linear_backward` in [npformer/ops/linear.py](...)``,
  several files separated by ``;``. The names in backticks before a link to a
  file of the package are definitions of that file, derived in that section.
* Its index ends the document: a table row whose first cell is a name in
  backticks, with a link to a file of the package and links to sections
  (``| `linear_backward` | [npformer/ops/linear.py](...) | [§3.1](#31-linear) |``),
  says the file defines the name and the sections derive it.
* ``npformer.exercise.catalog.EXERCISES``: each exercise's ``module``, the
  ``functions`` the learner writes, and the ``section`` of derivations.md.

Each of those is a promise, checked when the site is built: a name the file
does not define, a file that is not there, a section that no heading has. A
broken one fails the build with a message that names both places, the one that
cites and the one cited. Other names in backticks (`` `softmax_terms` `` in the
text of §3.3) become links when they name a definition unambiguously, and are
left alone otherwise: they are prose, not promises.
"""
from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from pathlib import Path

from npformer.errors import UserError
from npformer.site import annotate, markup
from npformer.site.tree import DERIVATIONS, EXERCISES, Tree, page_of

CATALOG = "npformer/exercise/catalog.py"
NAME = re.compile(r"([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)(?:\(.*\))?")


class BrokenReferences(UserError):
    """Names or sections cited that do not exist; the message lists each with both places."""


@dataclass(frozen=True)
class Citation:
    name: str                # "linear_backward"
    file: str                # "npformer/ops/linear.py"
    heading: markup.Heading  # the section of docs/derivations.md it is derived or named in
    line: int                # where in docs/derivations.md
    strong: bool             # declared ("Code:", the index), not just mentioned


@dataclass(frozen=True)
class ExerciseLink:
    id: str
    title: str
    file: str | None         # None for the train exercise, which has no module
    names: tuple
    heading: markup.Heading | None

    @property
    def command(self) -> str:
        return f"npformer exercise start {self.id}"


@dataclass
class CrossReferences:
    tree: Tree
    headings: list = field(default_factory=list)        # of docs/derivations.md, in order
    citations: list = field(default_factory=list)       # Citation
    exercises: list = field(default_factory=list)       # ExerciseLink, in the catalog's order
    errors: list = field(default_factory=list)
    _defs: dict = field(default_factory=dict)

    # --- what the files define ------------------------------------------------------------------

    def definitions(self, file: str) -> dict:
        """name -> annotate.Definition of a package file ({} where the file is not there)."""
        if file not in self._defs:
            self._defs[file] = annotate.definitions(self.tree.read_source(file)) \
                if self.tree.has_source(file) else {}
        return self._defs[file]

    def href(self, file: str, name: str) -> str:
        """The site path of a definition: its section for a function, class or method (``#Adam.update``),
        else its first line (``#L12``: a constant, a field of a class)."""
        d = self.definitions(file).get(name)
        if d is None or d.kind in ("function", "class"):
            return page_href(file, name)
        return page_href(file, f"L{d.start}")

    def defines(self, file: str, name: str) -> bool:
        return name in self.definitions(file)

    def unique_definer(self, name: str) -> str | None:
        """The one page file that defines ``name`` as a function, class or method, if exactly one does."""
        found = [f for f in self.tree.page_sources()
                 if self.definitions(f).get(name) is not None
                 and self.definitions(f)[name].kind in ("function", "class")]
        return found[0] if len(found) == 1 else None

    # --- questions the pages ask ------------------------------------------------------------------

    def locate(self, code: str, heading: markup.Heading | None) -> tuple | None:
        """(file, name) of the definition that an inline code span names, or None: a file the section
        cites that defines it, else the one page file that does."""
        m = NAME.fullmatch(code.strip())
        if not m:
            return None
        name = m.group(1)
        if heading is not None:
            for c in self.citations:
                if c.strong and c.heading.anchor == heading.anchor and self.defines(c.file, name):
                    return c.file, name
        file = self.unique_definer(name)
        return (file, name) if file else None

    def derived_in(self, file: str, name: str | None = None) -> list:
        """The headings whose "Code:" sentence or index row names ``name`` of ``file`` (any name, if None)."""
        return _unique(c.heading for c in self.citations
                       if c.strong and c.file == file and (name is None or c.name == name))

    def named_in(self, file: str, name: str) -> list:
        """The headings that mention ``name`` of ``file`` in their text, less those that derive it."""
        derived = {h.anchor for h in self.derived_in(file, name)}
        return _unique(c.heading for c in self.citations
                       if not c.strong and c.file == file and c.name == name and c.heading.anchor not in derived)

    def exercises_of(self, file: str, name: str | None = None) -> list:
        return [e for e in self.exercises if e.file == file and (name is None or name in e.names)]

    def code_at(self, heading: markup.Heading) -> list:
        """(file, name) of each definition a section derives, in the order it names them."""
        seen = []
        for c in self.citations:
            if c.strong and c.heading.anchor == heading.anchor and (c.file, c.name) not in seen:
                seen.append((c.file, c.name))
        return seen

    def exercises_at(self, heading: markup.Heading) -> list:
        return [e for e in self.exercises if e.heading is not None and e.heading.anchor == heading.anchor]

    def check(self) -> None:
        if self.errors:
            lines = "\n  ".join(self.errors)
            raise BrokenReferences(f"the site cannot be built: {len(self.errors)} broken reference(s), "
                                   f"each with the place that cites and the place cited:\n  {lines}")


def _unique(items) -> list:
    out = []
    for item in items:
        if item not in out:
            out.append(item)
    return out


def _package_file(href: str | None) -> str | None:
    """The repository path of a link from docs/derivations.md to a Python file of the package."""
    if not href or "://" in href:
        return None
    path = href.split("#", 1)[0]
    norm = str(Path("docs", path)).replace("\\", "/")
    parts = []
    for part in norm.split("/"):
        if part == "..":
            if parts:
                parts.pop()
        elif part not in (".", ""):
            parts.append(part)
    norm = "/".join(parts)
    return norm if norm.startswith("npformer/") and norm.endswith(".py") else None


def _section(heading) -> str:
    return f"section {heading.title!r}" if heading else "the top"


def read(tree: Tree) -> CrossReferences:
    """All the cross-references of ``tree``, checked: ``refs.errors`` lists the broken ones
    (``refs.check()`` raises them)."""
    refs = CrossReferences(tree)
    text = tree.read_doc(DERIVATIONS)
    if text is None:
        raise UserError(f"{DERIVATIONS} is missing from the package's data ({tree.docs[DERIVATIONS]})")
    tokens = markup.parse(text)
    refs.headings = [t.meta["heading"] for t in tokens if t.type == "heading_open"]
    by_anchor = {h.anchor: h for h in refs.headings}
    heading = None
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.type == "heading_open":
            heading = tok.meta["heading"]
        elif tok.type == "tr_open":
            end = next(j for j in range(i, len(tokens)) if tokens[j].type == "tr_close")
            _index_row(refs, tokens[i:end], by_anchor)
            i = end
        elif tok.type == "inline":
            _code_sentence(refs, tok, heading)
        i += 1
    _mentions(refs, tokens)
    _catalog(refs, by_anchor)
    _exercise_table(refs)
    return refs


def _declare(refs, name, file, heading, line, what):
    where = f"{DERIVATIONS}:{line} ({what})"
    if not refs.tree.has_source(file):
        refs.errors.append(f"{where} links {file}, which is not in the package")
    elif not refs.defines(file, name):
        refs.errors.append(f"{where} names `{name}` in {file}, which does not define it")
    else:
        refs.citations.append(Citation(name, file, heading, line, True))


def _code_sentence(refs, tok, heading) -> None:
    """The "Code:" sentence of an inline token: each name before a link to a file is that file's."""
    children = tok.children or []
    start = next((k for k, c in enumerate(children) if c.type == "text" and "Code:" in c.content), None)
    if start is None:
        return
    pending = []
    for c in children[start:]:
        if c.type == "code_inline":
            m = NAME.fullmatch(c.content.strip())
            if m:
                pending.append(m.group(1))
        elif c.type == "link_open":
            file = _package_file(c.attrGet("href"))
            if file is not None:
                for name in pending:
                    _declare(refs, name, file, heading, tok.meta["line"],
                             f'the "Code:" sentence of {_section(heading)}')
            pending = []


def _index_row(refs, row, by_anchor) -> None:
    """A table row ``| `name` | [file](...) | [§x](#anchor) |``: ``name`` is defined in ``file``
    and derived at each anchor."""
    cells = [t for t in row if t.type == "inline"]
    if not cells:
        return
    first = [c for c in cells[0].children or [] if c.type != "text" or c.content.strip()]
    if len(first) != 1 or first[0].type != "code_inline" or not NAME.fullmatch(first[0].content):
        return
    links = [c.attrGet("href") for cell in cells[1:] for c in cell.children or [] if c.type == "link_open"]
    files = [f for f in map(_package_file, links) if f]
    if not files:
        return
    line = cells[0].meta["line"]
    for cell in cells:
        cell.meta["index_row"] = True   # its names are declarations, not mentions
    anchors = [h[1:] for h in links if h and h.startswith("#")]
    for anchor in anchors:
        if anchor not in by_anchor:
            refs.errors.append(f"{DERIVATIONS}:{line} (the index row of `{first[0].content}`) links #{anchor}, "
                               f"which no heading of {DERIVATIONS} has")
    for file in files:
        for anchor in anchors:
            if anchor in by_anchor:
                _declare(refs, first[0].content, file, by_anchor[anchor], line,
                         f"the index row deriving it in {_section(by_anchor[anchor])}")


def _mentions(refs, tokens) -> None:
    """Names in backticks elsewhere in the text: a citation where they name one definition."""
    heading = None
    for tok in tokens:
        if tok.type == "heading_open":
            heading = tok.meta["heading"]
        if tok.type != "inline" or heading is None or tok.meta.get("index_row"):
            continue
        for c in tok.children or []:
            if c.type == "code_inline":
                found = refs.locate(c.content, heading)
                if found and found[0] in refs.tree.page_sources():
                    refs.citations.append(Citation(found[1], found[0], heading, tok.meta["line"], False))


def _catalog_lines() -> dict:
    """exercise id -> its line in npformer/exercise/catalog.py."""
    from npformer.exercise import catalog
    lines = {}
    try:
        for n, line in enumerate(inspect.getsource(catalog).splitlines(), 1):
            m = re.search(r'Exercise\("(\w+)"', line)
            if m:
                lines.setdefault(m.group(1), n)
    except OSError:
        pass
    return lines


def _catalog(refs, by_anchor) -> None:
    from npformer.exercise.catalog import EXERCISES
    lines = _catalog_lines()
    for e in EXERCISES.values():
        where = f"{CATALOG}:{lines.get(e.id, '?')} (exercise {e.id})"
        file = "npformer/" + e.module.split(".", 1)[1].replace(".", "/") + ".py" if e.module else None
        if file and not refs.tree.has_source(file):
            refs.errors.append(f"{where} names the module {e.module}, whose file {file} is not in the package")
            file = None
        for name in e.functions:
            if file and not refs.defines(file, name):
                refs.errors.append(f"{where} names `{name}` in {file}, which does not define it")
        anchor = markup.slug(e.section)
        heading = by_anchor.get(anchor)
        if heading is None:
            refs.errors.append(f"{where} names the section {e.section!r} of {DERIVATIONS}, "
                               f"which has no such heading (#{anchor})")
        refs.exercises.append(ExerciseLink(e.id, e.title, file, tuple(e.functions), heading))


def _exercise_table(refs) -> None:
    """docs/exercises.md's table of exercises: each id in its first column must be the catalog's."""
    text = refs.tree.read_doc(EXERCISES)
    if text is None:
        raise UserError(f"{EXERCISES} is missing from the package's data ({refs.tree.docs[EXERCISES]})")
    ids = {e.id for e in refs.exercises}
    tokens = markup.parse(text)
    for i, tok in enumerate(tokens):
        if tok.type == "tr_open":
            cell = next(t for t in tokens[i:] if t.type == "inline")
            kids = [c for c in cell.children or [] if c.type != "text" or c.content.strip()]
            header = tokens[i + 1].type == "th_open"
            if not header and len(kids) == 1 and kids[0].type == "code_inline" and kids[0].content not in ids \
                    and _is_exercise_table(tokens, i):
                refs.errors.append(f"{EXERCISES}:{cell.meta['line']} lists the exercise `{kids[0].content}`, "
                                   f"which {CATALOG} does not define")


def _is_exercise_table(tokens, row) -> bool:
    """Whether the table around token ``row`` is headed by an "id" column."""
    start = max(j for j in range(row + 1) if tokens[j].type == "table_open")
    head = next(t for t in tokens[start:] if t.type == "inline")
    return head.content.strip() == "id"


def page_href(file: str, anchor: str | None = None) -> str:
    """The site path of a file's page, or of an anchor on it."""
    return page_of(file) + (f"#{anchor}" if anchor else "")
