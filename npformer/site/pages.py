"""The HTML of each kind of page, in the one template (page.html) and style sheet (style.css).

A code page is the file cut into sections (annotate.py): each section is one
row of two cells, the note (rendered by markup.py) and the code (highlighted
by Pygments, with the file's line numbers, each line an anchor ``#L41``). A
section that starts a definition is anchored by its name (``#linear_backward``)
and its note ends with the definition's cross-references: the derivations that
derive or name it, and the exercise that asks for it with the command that
starts it. The prose pages (the derivations, the exercises) are one column,
with the same cross-references under each heading. Every URL is relative, so
the site works from a folder and from any static host.
"""
from __future__ import annotations

import html
from functools import lru_cache
from pathlib import Path
from string import Template

from npformer.site import annotate, markup
from npformer.site.links import NAME, CrossReferences, page_href
from npformer.site.tree import DERIVATIONS, EXERCISES, page_of, relative

HERE = Path(__file__).resolve().parent
DERIVATIONS_PAGE = "derivations.html"
EXERCISES_PAGE = "exercises.html"
INDEX_PAGE = "index.html"


@lru_cache(maxsize=None)
def template() -> Template:
    return Template((HERE / "page.html").read_text(encoding="utf-8"))


def page(*, title: str, path: str, kind: str, body: str, footer: str) -> str:
    root = relative(path, "")
    return template().substitute(title=html.escape(title), root=root, kind=kind, body=body, footer=footer)


def heading_label(heading: markup.Heading, headings: list) -> str:
    """"§3.1 Linear" for a numbered heading; "LayerNorm (§3.5)" for one inside a numbered section."""
    if heading.title[:1].isdigit():
        return "§" + heading.title
    before = [h for h in headings if h.line < heading.line and h.level < heading.level and h.title[:1].isdigit()]
    if before:
        return f"{heading.title} (§{before[-1].title.split(' ', 1)[0]})"
    return heading.title


def heading_link(heading: markup.Heading, refs: CrossReferences, from_page: str) -> str:
    href = relative(from_page, f"{DERIVATIONS_PAGE}#{heading.anchor}")
    return f'<a href="{href}">{html.escape(heading_label(heading, refs.headings))}</a>'


def exercise_link(e, from_page: str) -> str:
    """``npformer exercise start ID``, the id a link to the exercise's row of the exercises page."""
    href = relative(from_page, f"{EXERCISES_PAGE}#exercise-{e.id}")
    return (f'<code class="cmd">npformer exercise start <a href="{href}" title="exercise {html.escape(e.id)}: '
            f'{html.escape(e.title)}">{html.escape(e.id)}</a></code>')


def definition_xref(refs: CrossReferences, file: str, name: str, path: str) -> str:
    """The cross-references of one definition, for the end of its note ("" if it has none)."""
    parts = []
    derived = refs.derived_in(file, name)
    if derived:
        parts.append("derived in " + ", ".join(heading_link(h, refs, path) for h in derived))
    named = refs.named_in(file, name)
    if named:
        parts.append("named in " + ", ".join(heading_link(h, refs, path) for h in named))
    parts += ["write it yourself: " + exercise_link(e, path) for e in refs.exercises_of(file, name)]
    if not parts:
        return ""
    return (f'<div class="xref"><span class="what"><code>{html.escape(name)}</code></span>: '
            + "; ".join(parts) + "</div>")


def file_xref(refs: CrossReferences, file: str, path: str) -> str:
    parts = []
    derived = refs.derived_in(file)
    if derived:
        parts.append("Derived in " + ", ".join(heading_link(h, refs, path) for h in derived))
    exercises = refs.exercises_of(file)
    if exercises:
        parts.append("Write it yourself: " + "; ".join(exercise_link(e, path) for e in exercises))
    return f'<div class="xref">{". ".join(parts)}.</div>' if parts else ""


def code_page(refs: CrossReferences, file: str, resolve, neighbours, footer: str) -> str:
    """The annotated page of the package file ``file`` ("npformer/ops/linear.py")."""
    path = page_of(file)
    source = refs.tree.read_source(file)
    lines = highlighted_lines(source)
    defs = refs.definitions(file)
    rows = []
    for k, sec in enumerate(annotate.sections(source)):
        anchor = sec.names[0] if sec.names else f"s{k}"
        notes = []
        for note in sec.notes:
            body, _ = markup.render(note.text, source=file, page=path, resolve=resolve, first_line=note.line,
                                    plain=True, code_href=lambda name, _h: _code_href(refs, name, file))
            notes.append(body)
        extra_ids = "".join(f'<span id="{html.escape(n)}"></span>' for n in sec.names[1:])
        xrefs = "".join(definition_xref(refs, file, n, path) for n in sec.names if n in defs)
        code = "\n".join(f'<span class="line" id="L{n}"><span class="ln">{n}</span>{lines[n - 1]}</span>'
                         for n in sec.lines)
        intro = " intro" if sec.notes and sec.notes[0].line == 1 and sec.notes[0].kind == "docstring" else ""
        rows.append(f'<section class="sec{intro}" id="{html.escape(anchor)}">{extra_ids}'
                    f'<div class="note"><a class="sec-link" href="#{html.escape(anchor)}" '
                    f'aria-label="link to this section">#</a>{"".join(notes)}{xrefs}</div>'
                    f'<div class="code"><pre class="highlight"><code>{code}</code></pre></div></section>')
    prev, nxt = neighbours
    nav = '<nav class="prev-next">'
    nav += (f'<a href="{relative(path, page_of(prev))}">&larr; {html.escape(prev)}</a>' if prev else "<span></span>")
    nav += (f'<a href="{relative(path, page_of(nxt))}">{html.escape(nxt)} &rarr;</a>' if nxt else "<span></span>")
    nav += "</nav>"
    body = (f'<div class="page-head"><h1><code>{html.escape(file)}</code></h1>{file_xref(refs, file, path)}</div>'
            f'<div class="annotated">{"".join(rows)}</div>{nav}')
    return page(title=f"{file} · npformer", path=path, kind="code-page", body=body, footer=footer)


def _code_href(refs: CrossReferences, code: str, file: str) -> str | None:
    """The site path of a name in a note: a definition of the same file first, else the one page file that has it."""
    match = NAME.fullmatch(code.strip())
    if match is None:
        return None
    m = match.group(1)
    if m in refs.definitions(file):
        return refs.href(file, m)
    found = refs.locate(code, None)
    return refs.href(*found) if found else None


def highlighted_lines(source: str) -> list:
    """Each line of ``source`` as Pygments' HTML (spans are closed at each line's end)."""
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer
    out = highlight(source, PythonLexer(stripnl=False, ensurenl=True), HtmlFormatter(nowrap=True)).split("\n")
    n = len(source.splitlines())
    return (out + [""] * n)[:n]


def derivations_page(refs: CrossReferences, resolve, footer: str) -> str:
    path = DERIVATIONS_PAGE

    def aside(heading):
        parts = []
        by_file = {}
        for file, name in refs.code_at(heading):
            by_file.setdefault(file, []).append(name)
        for file, names in by_file.items():
            on_site = file in refs.tree.page_sources()
            items = []
            for name in names:
                d = refs.definitions(file)[name]
                lines = f'<span class="where">lines {d.start}&ndash;{d.end}</span>'
                link = (f'<a class="code-ref" href="{relative(path, refs.href(file, name))}"><code>'
                        f'{html.escape(name)}</code></a>' if on_site else f"<code>{html.escape(name)}</code>")
                items.append(f"{link} {lines}")
            where = (f'<a href="{relative(path, page_of(file))}">{html.escape(file)}</a>' if on_site
                     else f'<span class="offsite" title="not on this site">{html.escape(file)}</span>')
            parts.append(f'<span class="what">Code</span> in {where}: ' + ", ".join(items))
        exercises = refs.exercises_at(heading)
        if exercises:
            parts.append('<span class="what">Write it yourself:</span> '
                         + ", ".join(exercise_link(e, path) for e in exercises))
        return f'<aside class="xref">{"<br>".join(parts)}</aside>\n' if parts else ""

    def code_href(code, heading):
        found = refs.locate(code, heading)
        if found and found[0] in refs.tree.page_sources():
            return refs.href(*found)
        return None

    body, _ = markup.render(refs.tree.read_doc(DERIVATIONS), source=DERIVATIONS, page=path, resolve=resolve,
                            code_href=code_href, after_heading=aside)
    return page(title="Deriving every backward pass · npformer", path=path, kind="prose-page",
                body=f'<article class="prose">{body}</article>', footer=footer)


def exercises_page(refs: CrossReferences, resolve, footer: str) -> str:
    path = EXERCISES_PAGE
    by_id = {e.id: e for e in refs.exercises}

    def code_href(code, heading):
        e = by_id.get(code.strip())
        if e is not None and e.file in refs.tree.page_sources():
            return refs.href(e.file, e.names[0]) if e.names else page_href(e.file)
        found = refs.locate(code, None)
        return refs.href(*found) if found and found[0] in refs.tree.page_sources() else None

    def row_id(code):
        return f"exercise-{code}" if code in by_id else None

    body, _ = markup.render(refs.tree.read_doc(EXERCISES), source=EXERCISES, page=path, resolve=resolve,
                            code_href=code_href, row_id=row_id)
    return page(title="Exercises · npformer", path=path, kind="prose-page",
                body=f'<article class="prose">{body}</article>', footer=footer)


def index_page(refs: CrossReferences, resolve, figure_svg: str, table_html: str, footer: str) -> str:
    body = f"""<article class="prose">
<h1>npformer, annotated</h1>
<p>The Transformer of &ldquo;Attention Is All You Need&rdquo; (Vaswani et al., 2017) in explicit NumPy
array math, with a hand-written backward pass for every op. Each page below puts the notes of one file
beside the code they explain; the equations of every backward pass are derived in
<a href="{DERIVATIONS_PAGE}">the derivations</a>, and <a href="{EXERCISES_PAGE}">the exercises</a> ask
you to write them yourself. Every box of Figure 1 links to its code.</p>
<figure class="figure-wrap">{figure_svg}<figcaption>Figure 1 of the paper: the encoder (left) and the
decoder (right). Click a box for its code.</figcaption></figure>
{table_html}
</article>"""
    return page(title="npformer, annotated", path=INDEX_PAGE, kind="index-page", body=body, footer=footer)


def footer(files: list, here: str) -> str:
    """The list of every page, grouped by folder, with ``here`` marked."""
    items, folder = [], None
    for f in files:
        top = f.split("/")[1]
        if top != folder:
            folder = top
            items.append(f'<li class="folder">{html.escape(folder)}/</li>')
        name = f.split("/", 2)[2]
        cls = ' class="here"' if page_of(f) == here else ""
        items.append(f'<li{cls}><a href="{relative(here, page_of(f))}">{html.escape(name)}</a></li>')
    docs = (f'<a href="{relative(here, DERIVATIONS_PAGE)}">derivations</a> &middot; '
            f'<a href="{relative(here, EXERCISES_PAGE)}">exercises</a>')
    return (f'<h2>The annotated files</h2><ul class="files">{"".join(items)}</ul>'
            f'<p>The docs: {docs}. Built by <code>npformer docs</code>.</p>')
