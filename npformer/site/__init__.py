"""The annotated npformer: a static site of the code beside its notes and mathematics.

``npformer docs --out DIR`` builds it (npformer/commands/docs.py): a page per
file of ops/ and model/ and for decode/incremental.py, train/optim.py and
train/schedule.py, with each docstring and comment block beside the lines it
explains; docs/derivations.md and docs/exercises.md with their mathematics; an
index with Figure 1 of the paper, each box a link. It is built offline and
read offline: MathML drawn by the browser, no JavaScript, relative links only.

    tree.py      where the sources are (the installed package and its shipped docs) and which files get pages
    annotate.py  a Python file cut into sections of notes and code; what a file defines
    tex.py       TeX to MathML, refusing what it cannot draw
    markup.py    Markdown and plain-text notes to HTML: math, highlighting, anchors, links
    links.py     the cross-references between code, derivations and exercises, read from names, checked
    figure.py    Figure 1 as an SVG whose boxes link to the code
    pages.py     the HTML of the code pages, the prose pages and the index
    build.py     ``build_site``: check, render, check every link, write

Package data: page.html (the template), style.css, figure1.svg, and in the
folder ``shipped-docs`` the Markdown files and images the pages are made from
(links to the repository's own files in a checkout, copies once installed).

Needs the ``docs`` extra (markdown-it-py, mdit-py-plugins, latex2mathml,
Pygments); ``missing()`` names what is not installed.
"""
import importlib.util

# module -> the distribution of the docs extra that provides it
REQUIRES = {"markdown_it": "markdown-it-py", "mdit_py_plugins": "mdit-py-plugins", "latex2mathml": "latex2mathml",
            "pygments": "Pygments"}


def missing() -> list:
    """The distributions of the docs extra that are not installed."""
    return [dist for module, dist in REQUIRES.items() if importlib.util.find_spec(module) is None]
