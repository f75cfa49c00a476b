"""Markdown to HTML, for the docs and for the notes of the code pages.

One parser (markdown-it-py, CommonMark with tables, and mdit-py-plugins'
dollarmath for ``$...$`` and ``$$...$$``) renders both, with these rules:

* TeX becomes MathML (tex.py); a formula that cannot be drawn fails the build,
  named by file and line.
* Fenced code is highlighted by Pygments in the fence's language.
* Headings get GitHub's anchors (the rule of ``npformer.exercise.catalog.slug``,
  which the exercises use to cite a section), so a link written for GitHub,
  ``derivations.md#31-linear``, lands on the same heading here.
* Each link is handed to the caller's ``resolve``: a file that has a page
  becomes a relative link to it; one that does not (a test, another doc) is
  kept as text, marked with its repository path, so that no link of the site
  points outside it. Inline code that names a definition becomes a link to it
  where the caller's ``code_href`` knows one.

Docstrings and comments are plain text, not Markdown: their equations are
written for a terminal, indented under the line that introduces them and
aligned in columns, in the code's own names (``dx = rstd * (g - mean(g) -
xhat * mean(g * xhat))``). ``plain=True`` keeps them so. An indented block
becomes an equation block in monospace, as it appears in an editor and in
``help()``: turning ``d_model^-0.5`` or ``sum_j x_j`` into TeX would be a guess,
and a wrongly typeset equation is worse than a plain one (the typeset forms are
in docs/derivations.md, linked beside each function). Emphasis and headings
are off, so ``*`` and ``_`` stay the multiplications and subscripts they are;
``$...$`` in a docstring is still typeset.
"""
from __future__ import annotations

import html
import re
from dataclasses import dataclass
from functools import lru_cache

from npformer.site.tex import to_mathml


@dataclass(frozen=True)
class Heading:
    level: int
    title: str
    anchor: str
    line: int       # where it is in its file, 1-based


def slug(title: str) -> str:
    """GitHub's anchor of a heading (npformer.exercise.catalog.slug)."""
    from npformer.exercise.catalog import slug as github_slug
    return github_slug(title)


@lru_cache(maxsize=None)
def _parser(plain: bool):
    from markdown_it import MarkdownIt
    from mdit_py_plugins.dollarmath import dollarmath_plugin
    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    md.use(dollarmath_plugin, allow_space=True, allow_digits=True, double_inline=True)
    if plain:
        md.disable(["emphasis", "heading", "lheading"])
    for name, rule in _RULES.items():
        md.add_render_rule(name, rule)
    return md


def _math(self, tokens, idx, options, env):
    tok = tokens[idx]
    display = tok.type in ("math_block", "math_block_label", "math_inline_double")
    mathml = to_mathml(tok.content, display, f"{env['source']}:{tok.meta.get('line', '?')}")
    if tok.type.startswith("math_block"):
        return f'<div class="math-block">{mathml}</div>\n'
    return f'<span class="math-display">{mathml}</span>' if display else mathml


def _fence(self, tokens, idx, options, env):
    tok = tokens[idx]
    return highlight_block(tok.content, (tok.info or "").split()[0] if tok.info.strip() else "text")


def _code_block(self, tokens, idx, options, env):
    return f'<pre class="eq">{html.escape(tokens[idx].content.rstrip(chr(10)))}</pre>\n'


def _code_inline(self, tokens, idx, options, env):
    tok = tokens[idx]
    code = f"<code>{html.escape(tok.content)}</code>"
    href = tok.meta.get("href")
    return f'<a class="code-ref" href="{html.escape(href)}">{code}</a>' if href else code


def _offsite_open(self, tokens, idx, options, env):
    return f'<span class="offsite" title="{html.escape(tokens[idx].meta["title"])}">'


def _offsite_close(self, tokens, idx, options, env):
    return "</span>"


def _table_open(self, tokens, idx, options, env):
    return '<div class="table-wrap">' + self.renderToken(tokens, idx, options, env)


def _table_close(self, tokens, idx, options, env):
    return self.renderToken(tokens, idx, options, env) + "</div>\n"


def _raw(self, tokens, idx, options, env):
    return tokens[idx].content


_RULES = {"math_inline": _math, "math_inline_double": _math, "math_block": _math, "math_block_label": _math,
          "fence": _fence, "code_block": _code_block, "code_inline": _code_inline, "offsite_open": _offsite_open,
          "offsite_close": _offsite_close, "table_open": _table_open, "table_close": _table_close, "site_html": _raw}


def highlight_block(code: str, language: str = "python") -> str:
    """``<pre class="highlight">`` of ``code``, highlighted as ``language`` (plain text when unknown)."""
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import TextLexer, get_lexer_by_name
    from pygments.util import ClassNotFound
    try:
        lexer = get_lexer_by_name(language)
    except ClassNotFound:
        lexer = TextLexer()
    return f'<pre class="highlight"><code>{highlight(code, lexer, HtmlFormatter(nowrap=True))}</code></pre>\n'


def plain_to_markdown(text: str) -> tuple:
    """A docstring or comment as Markdown: a blank line before each indented block that follows a
    line of text, so that the block is an equation block and not the end of the paragraph.
    Returns the text and, for each of its lines, the line of ``text`` it comes from."""
    out, origin, before, item = [], [], "", None
    for n, line in enumerate(text.split("\n")):
        indented = line.startswith(("    ", "\t")) and line.strip()
        marker = re.match(r"( *)([-*+]|\d+[.)]) ", line)
        if marker:
            item = len(marker.group(0))   # a list item: lines indented under it continue it
        elif not line.strip() or len(line) - len(line.lstrip()) < (item or 0):
            item = None
        if indented and before.strip() and not before.startswith(("    ", "\t")) and item is None:
            out.append("")
            origin.append(n)
        out.append(line)
        origin.append(n)
        before = line
    return "\n".join(out), origin


def parse(text: str, plain: bool = False, first_line: int = 1) -> list:
    """markdown-it's tokens of ``text``, each with ``meta["line"]`` (its line in the file, from
    ``first_line``) and each heading_open with ``meta["heading"]`` and its ``id``."""
    if plain:
        text, origin = plain_to_markdown(text)
    tokens = _parser(plain).parse(text, {})
    used = {}
    for i, tok in enumerate(tokens):
        at = tok.map[0] if tok.map else 0
        tok.meta["line"] = first_line + (origin[at] if plain else at)
        if tok.type == "heading_open":
            title = "".join(c.content for c in tokens[i + 1].children if c.type != "softbreak")
            anchor = slug(title)
            if anchor in used:
                used[anchor] += 1
                anchor = f"{anchor}-{used[anchor]}"
            else:
                used[anchor] = 0
            tok.attrSet("id", anchor)
            tok.meta["heading"] = Heading(int(tok.tag[1]), title, anchor, tok.meta["line"])
    return tokens


def inline_children(tokens):
    """(inline token, its children) of every inline token, in order."""
    for tok in tokens:
        if tok.type == "inline":
            yield tok, tok.children or []


def render(text: str, *, source: str, page: str, resolve, first_line: int = 1, plain: bool = False,
           code_href=None, after_heading=None, row_id=None):
    """``(html, headings)`` of Markdown ``text`` from the repository file ``source`` (its lines
    start at ``first_line``), for the site page ``page``.

    ``resolve(target, source)``: a link's target -> the site path ("ops/linear.html#x") of a
    page or file of the site, or None to keep the link as text. ``code_href(name, heading)``:
    the site path of the definition an inline code span names, or None. ``after_heading(heading)``:
    HTML to put under a heading. ``row_id(name)``: the id of a table row whose first cell is the
    code span ``name``, or None."""
    from markdown_it.token import Token

    from npformer.site.tree import relative
    md = _parser(plain)
    env = {"source": source}
    tokens = parse(text, plain=plain, first_line=first_line)
    headings, out, heading = [], [], None
    for i, tok in enumerate(tokens):
        line = tok.meta["line"]
        if tok.type == "heading_open":
            heading = tok.meta["heading"]
            headings.append(heading)
        out.append(tok)
        if tok.type == "heading_close" and after_heading is not None:
            extra = after_heading(heading)
            if extra:
                raw = Token("site_html", "", 0)
                raw.content = extra
                out.append(raw)
        if tok.type == "tr_open" and row_id is not None:
            first = next((t for t in tokens[i + 1:i + 4] if t.type == "inline"), None)
            codes = [c for c in (first.children or []) if c.type != "text" or c.content.strip()] if first else []
            if codes and codes[0].type == "code_inline":
                rid = row_id(codes[0].content)
                if rid:
                    tok.attrSet("id", rid)
        if tok.type != "inline":
            continue
        opened = []
        for child in tok.children or []:
            child.meta["line"] = line
            if child.type == "link_open":
                target = resolve(child.attrGet("href"), source)
                if target is None:
                    child.type, child.meta["title"] = "offsite_open", _repo_path(child.attrGet("href"), source)
                else:
                    child.attrSet("href", target if target.startswith(("#", "http:", "https:", "mailto:"))
                                  else relative(page, target))
                opened.append(child.type)
            elif child.type == "link_close" and opened:
                if opened.pop() == "offsite_open":
                    child.type = "offsite_close"
            elif child.type == "image":
                target = resolve(child.attrGet("src"), source)
                child.attrSet("src", relative(page, target) if target else child.attrGet("src"))
            elif child.type == "code_inline" and code_href is not None:
                href = code_href(child.content, heading)
                if href:
                    child.meta["href"] = relative(page, href) if not href.startswith("#") else href
    return md.renderer.render(out, md.options, env), headings


def _repo_path(href: str, source: str) -> str:
    """The repository path a relative link of ``source`` points at, as shown to the reader."""
    import posixpath
    if "://" in href or href.startswith("mailto:"):
        return href
    file = href.split("#", 1)[0]
    return posixpath.normpath(posixpath.join(posixpath.dirname(source), file)) if file else source
