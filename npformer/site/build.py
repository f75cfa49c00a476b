"""``build_site(out)``: every page, the style sheet and the images, written to one folder.

The steps: read and check the cross-references (links.py: a broken one stops
the build before anything is written), render the pages (pages.py), check that
every link and anchor of every page resolves inside the site, then write. The
folder is then a complete static site with relative links only: open its
index.html from disk, or copy the folder to any static host.
"""
from __future__ import annotations

import html.parser
import posixpath
import re
import shutil
import time
from pathlib import Path

from npformer.errors import UserError
from npformer.site import figure, links, markup, pages
from npformer.site.tree import DERIVATIONS, EXERCISES, README, Tree, page_of

STYLE = Path(__file__).resolve().parent / "style.css"
TABLE_HEADING = "Figure 1, file by file"
SCHEME = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*:")


class _Anchors(html.parser.HTMLParser):
    """The ids of a page and the URLs it links or loads."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids, self.urls = set(), []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name == "id" and value:
                self.ids.add(value)
            if name in ("href", "src") and value is not None:
                self.urls.append(value)


def broken_links(written: dict, files: set) -> list:
    """``page -> url`` of every relative link or image of ``written`` (site path -> HTML) that
    names no written page or file, or an anchor that its page lacks."""
    parsed = {}
    for path, text in written.items():
        p = _Anchors()
        p.feed(text)
        parsed[path] = p
    broken = []
    for path, p in parsed.items():
        for url in p.urls:
            if SCHEME.match(url):
                continue
            file, _, frag = url.partition("#")
            target = posixpath.normpath(posixpath.join(posixpath.dirname(path), file)) if file else path
            if target not in parsed and target not in files:
                broken.append(f"{path} -> {url} (no such page)")
            elif frag and (target not in parsed or frag not in parsed[target].ids):
                broken.append(f"{path} -> {url} (no such anchor)")
    return broken


def readme_table(tree: Tree, refs: links.CrossReferences, resolve) -> str:
    """README's "Figure 1, file by file" section as HTML."""
    text = tree.read_doc(README)
    if text is None:
        raise UserError(f"{README} is missing from the package's data ({tree.docs[README]}); "
                              "reinstall npformer from its repository")
    m = re.search(rf"^## {re.escape(TABLE_HEADING)}\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    if m is None:
        raise UserError(f"{README} has no section {TABLE_HEADING!r}, which the index page shows")
    first = text[:m.start()].count("\n") + 1
    section = text[m.start():m.end()]

    def code_href(code, heading):
        found = refs.locate(code, None)
        return refs.href(*found) if found else None
    body, _ = markup.render(section, source=README, page=pages.INDEX_PAGE, resolve=resolve, first_line=first,
                            code_href=code_href)
    return body


def reading_order(refs: links.CrossReferences, files: list) -> list:
    """The files in the order docs/derivations.md first cites them (Figure 1's, bottom to top), then the rest."""
    first = {}
    for c in refs.citations:
        if c.strong:
            first[c.file] = min(first.get(c.file, c.line), c.line)
    return sorted(files, key=lambda f: (first.get(f, float("inf")), files.index(f)))


def build_site(out, tree: Tree | None = None) -> dict:
    """Write the site to the folder ``out``; returns what was written and how long it took."""
    start = time.perf_counter()
    tree = tree or Tree.installed()
    refs = links.read(tree)
    refs.check()
    files = tree.page_sources()
    docs = {DERIVATIONS: pages.DERIVATIONS_PAGE, EXERCISES: pages.EXERCISES_PAGE, README: pages.INDEX_PAGE}
    site_of = {f: page_of(f) for f in files} | docs
    images = {}   # site path -> the file to copy
    missing_images = []

    def resolve(target, source):
        if not target:
            return None
        if SCHEME.match(target):
            return target
        if target.startswith("#"):
            return target
        file, _, frag = target.partition("#")
        repo = posixpath.normpath(posixpath.join(posixpath.dirname(source), file))
        if repo in site_of:
            return site_of[repo] + (f"#{frag}" if frag else "")
        if repo.startswith("docs/img/"):
            shipped = tree.images / Path(repo).name
            if shipped.is_file():
                images["img/" + shipped.name] = shipped
                return "img/" + shipped.name
            missing_images.append(f"{source} shows {repo}, which the package does not ship "
                                  f"(a link to it belongs in npformer/site/shipped-docs/img)")
        return None

    order = reading_order(refs, files)
    written = {}
    for i, f in enumerate(order):
        neighbours = (order[i - 1] if i else None, order[i + 1] if i + 1 < len(order) else None)
        written[page_of(f)] = pages.code_page(refs, f, resolve, neighbours, pages.footer(files, page_of(f)))
    written[pages.DERIVATIONS_PAGE] = pages.derivations_page(refs, resolve,
                                                             pages.footer(files, pages.DERIVATIONS_PAGE))
    written[pages.EXERCISES_PAGE] = pages.exercises_page(refs, resolve, pages.footer(files, pages.EXERCISES_PAGE))
    written[pages.INDEX_PAGE] = pages.index_page(refs, resolve, figure.linked(resolve),
                                                 readme_table(tree, refs, resolve),
                                                 pages.footer(files, pages.INDEX_PAGE))
    if missing_images:
        raise links.BrokenReferences("the site cannot be built:\n  " + "\n  ".join(missing_images))
    broken = broken_links(written, set(images) | {"style.css"})
    if broken:
        raise links.BrokenReferences(f"the site cannot be built: {len(broken)} link(s) lead nowhere:\n  "
                                     + "\n  ".join(broken))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for path, text in written.items():
        (out / path).parent.mkdir(parents=True, exist_ok=True)
        (out / path).write_text(text, encoding="utf-8")
    (out / "style.css").write_text(stylesheet(), encoding="utf-8")
    for path, src in images.items():
        (out / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, out / path)
    return {"out": str(out), "pages": sorted(written), "files": sorted(written) + ["style.css", *sorted(images)],
            "seconds": round(time.perf_counter() - start, 2)}


def stylesheet() -> str:
    """Pygments' colours for the code, then the site's own style.css (which wins where both set a rule)."""
    from pygments.formatters import HtmlFormatter
    return HtmlFormatter(style="default").get_style_defs(".highlight") + "\n\n" + STYLE.read_text(encoding="utf-8")
