"""``npformer docs``: the static site of the annotated code, checked page by page.

Built once from the package as it is imported (in a checkout, its shipped docs
are links to docs/ and README.md), then: every file that should have a page
has one; no ``$``-delimited TeX is left in any text; every internal link and
anchor resolves, and nothing is loaded from outside the folder; every formula
of the docstrings, comments and docs renders (latex2mathml raises on bad
input, and npformer.site.tex refuses what it would pass through); the
cross-links run both ways; a function renamed in a copy of the package fails
the build with a message that names both places; and the package builds from
a copy of itself alone, with no checkout around it. The tests that build skip
without the ``docs`` extra; the refusal of a missing extra is tested without it.
"""
from __future__ import annotations

import html.parser
import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from npformer import site as site_package

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "npformer"
EXPECTED = ([p.relative_to(PKG).with_suffix(".html").as_posix() for d in ("ops", "model")
             for p in sorted((PKG / d).glob("*.py"))]
            + ["decode/incremental.html", "train/optim.html", "train/schedule.html"])
TEX = re.compile(r"\$\$.+?\$\$|\$[^\s$][^$]*?\$", re.S)

needs_docs = pytest.mark.skipif(bool(site_package.missing()),
                                reason=f"the docs extra is not installed ({site_package.missing()})")


class Page(html.parser.HTMLParser):
    """A page's ids, URLs (href, src), text nodes with their enclosing tags, and tags seen."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.ids, self.urls, self.texts, self.tags, self.stack = set(), [], [], [], []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self.stack.append(tag)
        for name, value in attrs:
            if name == "id":
                self.ids.add(value)
            if name in ("href", "src") and value is not None:
                self.urls.append((tag, value))

    def handle_endtag(self, tag):
        if tag in self.stack:
            while self.stack.pop() != tag:
                pass

    def handle_data(self, data):
        self.texts.append((tuple(self.stack), data))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    if site_package.missing():
        pytest.skip("the docs extra is not installed")
    from npformer.site.build import build_site
    out = tmp_path_factory.mktemp("site")
    result = build_site(out)
    pages = {p.relative_to(out).as_posix(): Page(p.read_text(encoding="utf-8")) for p in out.rglob("*.html")}
    return out, result, pages


def copy_of_the_package(tmp_path: Path) -> Path:
    """A checkout-shaped copy: npformer/ (without its corpus), docs/ and README.md."""
    shutil.copytree(PKG, tmp_path / "npformer", ignore=shutil.ignore_patterns("__pycache__", "*.gz"))
    shutil.copytree(ROOT / "docs", tmp_path / "docs", ignore=shutil.ignore_patterns("sessions"))
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    return tmp_path


# --- the pages ------------------------------------------------------------------------------------

@needs_docs
def test_every_file_has_its_page(built):
    out, result, pages = built
    for page in EXPECTED + ["index.html", "derivations.html", "exercises.html"]:
        assert page in pages, f"no page {page}"
    assert (out / "style.css").is_file()
    attention = pages["ops/attention.html"]
    assert {"attention_forward", "attention_backward", "L1"} - attention.ids == {"L1"}   # line 1: the docstring
    assert any(t == "math" for t, _ in pages["derivations.html"].tags)


@needs_docs
def test_no_raw_tex_is_left_in_any_text(built):
    _, _, pages = built
    left = [(page, text[:80]) for page, p in pages.items() for _, data in p.texts for text in TEX.findall(data)]
    assert not left, left[:10]


def targets(page: str, url: str) -> tuple:
    file, _, frag = url.partition("#")
    return (posixpath.normpath(posixpath.join(posixpath.dirname(page), file)) if file else page), frag


@needs_docs
def test_every_internal_link_and_anchor_resolves(built):
    out, _, pages = built
    broken, checked = [], 0
    for page, p in pages.items():
        for tag, url in p.urls:
            if re.match(r"[a-z]+:", url):
                assert url.startswith(("https:", "http:", "mailto:")), (page, url)
                assert tag == "a", f"{page} loads {url} from outside the site"
                continue
            target, frag = targets(page, url)
            checked += 1
            if target not in pages and not (out / target).is_file():
                broken.append((page, url))
            elif frag and frag not in pages[target].ids:
                broken.append((page, url))
    assert checked > 1000
    assert not broken, broken[:10]


@needs_docs
def test_nothing_runs_or_loads_from_outside(built):
    out, _, pages = built
    for page, p in pages.items():
        assert not any(tag == "script" for tag, _ in p.tags), page
        for tag, attrs in p.tags:
            if tag == "link":
                assert not re.match(r"[a-z]+:", attrs["href"]), (page, attrs)
    css = (out / "style.css").read_text(encoding="utf-8")
    assert "url(" not in css and "@import" not in css
    assert re.search(r"@media \(max-width: 800px\)[^@]*\.sec[^{]*\{ grid-template-columns: minmax\(0, 1fr\)", css)


# --- the mathematics ------------------------------------------------------------------------------

@needs_docs
def test_every_formula_of_the_docstrings_comments_and_docs_renders():
    from npformer.site import annotate, markup
    from npformer.site.tex import to_mathml
    from npformer.site.tree import Tree
    tree = Tree.installed()
    rendered = 0
    for file in tree.page_sources():
        for sec in annotate.sections(tree.read_source(file)):
            for note in sec.notes:
                for tok in markup.parse(note.text, plain=True, first_line=note.line):
                    for t in [tok, *(tok.children or [])]:
                        if t.type.startswith("math"):
                            assert to_mathml(t.content, "block" in t.type, f"{file}:{tok.meta['line']}")
                            rendered += 1
    for name in ("docs/derivations.md", "docs/exercises.md"):
        for tok in markup.parse(tree.read_doc(name)):
            for t in [tok, *(tok.children or [])]:
                if t.type.startswith("math"):
                    assert to_mathml(t.content, "block" in t.type, name).startswith("<math")
                    rendered += 1
    assert rendered > 900


@needs_docs
@pytest.mark.parametrize("tex, reason", [(r"\frac{a}", "mfrac needs 2 parts"), (r"x^", "MissingSuperScript"),
                                         (r"\notacommand{x}", r"unknown command \notacommand"),
                                         (r"{x", "unbalanced braces"), (r"a & b", "ParseError")])
def test_a_formula_that_cannot_be_drawn_is_refused_with_its_place(tex, reason):
    from npformer.site.tex import TexError, to_mathml
    with pytest.raises(TexError, match=re.escape(reason)) as e:
        to_mathml(tex, False, "npformer/ops/linear.py:7")
    assert str(e.value).startswith("npformer/ops/linear.py:7: cannot draw $")


@needs_docs
def test_tex_in_a_docstring_is_typeset_and_bad_tex_fails_the_build_at_its_line(tmp_path):
    from npformer.site.build import build_site
    from npformer.site.tex import TexError
    from npformer.site.tree import Tree
    root = copy_of_the_package(tmp_path)
    relu = root / "npformer" / "ops" / "relu.py"
    text = relu.read_text(encoding="utf-8")
    first = text.index('"""') + 3
    # the file holds "\\max": the docstring's value "\max" (in a raw docstring, one backslash would do)
    relu.write_text(text[:first] + "ReLU, $\\\\max(0, x)$ entry by entry.\n\n" + text[first:], encoding="utf-8")
    build_site(root / "site", Tree.checkout(root))
    page = (root / "site" / "ops" / "relu.html").read_text(encoding="utf-8")
    assert "<math" in page and "$\\max" not in page
    relu.write_text(text[:first] + "ReLU.\n\nThe kink: $\\\\frac{1}$.\n\n" + text[first:], encoding="utf-8")
    with pytest.raises(TexError, match=r"npformer/ops/relu\.py:3: cannot draw \$\\frac\{1\}\$"):
        build_site(root / "site2", Tree.checkout(root))
    assert not (root / "site2").exists()


# --- the cross-links ------------------------------------------------------------------------------

def links_of(p: Page, page: str) -> set:
    return {targets(page, url)[0] + ("#" + targets(page, url)[1] if "#" in url else "")
            for tag, url in p.urls if tag == "a" and not re.match(r"[a-z]+:", url)}


@needs_docs
def test_a_function_and_its_derivation_link_both_ways(built):
    _, _, pages = built
    assert "derivations.html#33-scaled-dot-product-attention-with-a-mask" in links_of(
        pages["ops/attention.html"], "ops/attention.html")
    derivations = links_of(pages["derivations.html"], "derivations.html")
    for target in ("ops/attention.html#attention_backward", "ops/layernorm.html#layernorm_backward",
                   "ops/linear.html#linear_backward", "train/optim.html#Adam", "train/schedule.html#noam_lr",
                   "model/transformer.html#transformer_backward"):
        assert target in derivations, target
    assert "derivations.html#layernorm" in links_of(pages["ops/layernorm.html"], "ops/layernorm.html")


@needs_docs
def test_an_op_and_its_exercise_link_both_ways(built):
    from npformer.exercise.catalog import EXERCISES
    _, _, pages = built
    exercises = pages["exercises.html"]
    for e in EXERCISES.values():
        assert f"exercise-{e.id}" in exercises.ids, e.id
        if not e.module:
            continue
        page = e.module.split(".", 1)[1].replace(".", "/") + ".html"
        text = "".join(d for _, d in pages[page].texts)
        assert f"npformer exercise start {e.id}" in text, page
        assert f"exercises.html#exercise-{e.id}" in links_of(pages[page], page), page
        assert f"{page}#{e.functions[0]}" in links_of(exercises, "exercises.html"), e.id


@needs_docs
def test_the_index_draws_figure_1_with_linked_boxes_and_the_readme_table(built):
    _, _, pages = built
    index = pages["index.html"]
    assert any(tag == "svg" for tag, _ in index.tags)
    boxes = {url for tag, url in index.urls if tag == "a" and url.endswith(".html") and "/" in url}
    assert {"ops/multihead.html", "ops/feedforward.html", "ops/embedding.html", "ops/positional.html",
            "model/sublayer.html", "model/encoder.html", "model/decoder.html", "ops/softmax.html",
            "model/transformer.html"} <= boxes
    text = " ".join(d for _, d in index.texts)
    assert "Figure 1, file by file" in text and "Positional encoding (§3.5)" in text
    assert any(t == "math" for t, _ in index.tags)


@needs_docs
def test_a_renamed_function_fails_the_build_naming_both_places(tmp_path):
    from npformer.site.build import build_site
    from npformer.site.links import BrokenReferences
    from npformer.site.tree import Tree
    root = copy_of_the_package(tmp_path)
    linear = root / "npformer" / "ops" / "linear.py"
    linear.write_text(linear.read_text(encoding="utf-8").replace("def linear_backward(", "def affine_backward("),
                      encoding="utf-8")
    with pytest.raises(BrokenReferences) as e:
        build_site(root / "site", Tree.checkout(root))
    message = str(e.value)
    line = next(n for n, text in enumerate((ROOT / "docs" / "derivations.md").read_text().splitlines(), 1)
                if text.startswith("Code: `linear_forward`, `linear_backward`"))
    assert (f"docs/derivations.md:{line} (the \"Code:\" sentence of section '3.1 Linear') names "
            "`linear_backward` in npformer/ops/linear.py, which does not define it") in message
    assert re.search(r"npformer/exercise/catalog\.py:\d+ \(exercise linear\) names `linear_backward` in "
                     r"npformer/ops/linear\.py", message)
    assert not (root / "site").exists()


@needs_docs
def test_a_section_the_catalog_cites_must_exist(tmp_path):
    from npformer.site.build import build_site
    from npformer.site.links import BrokenReferences
    from npformer.site.tree import Tree
    root = copy_of_the_package(tmp_path)
    doc = root / "docs" / "derivations.md"
    doc.write_text(doc.read_text(encoding="utf-8").replace("### 3.2 Softmax", "### 3.2 The softmax"),
                   encoding="utf-8")
    with pytest.raises(BrokenReferences, match=r"\(exercise softmax\) names the section '3.2 Softmax' of "
                                                r"docs/derivations.md, which has no such heading"):
        build_site(root / "site", Tree.checkout(root))


# --- the package alone, and the command -------------------------------------------------------------

def test_the_shipped_docs_are_the_repositorys():
    shipped = PKG / "site" / "shipped-docs"
    for name, original in (("derivations.md", "docs/derivations.md"), ("exercises.md", "docs/exercises.md"),
                           ("README.md", "README.md")):
        assert (shipped / name).read_bytes() == (ROOT / original).read_bytes(), name
    for doc in ("derivations.md", "exercises.md"):
        for image in re.findall(r"!\[[^\]]*\]\(img/([^)]+)\)", (ROOT / "docs" / doc).read_text(encoding="utf-8")):
            assert (shipped / "img" / image).is_file(), f"docs/{doc} shows img/{image}: ship it in {shipped}/img"


@needs_docs
def test_the_package_builds_alone_without_a_checkout(tmp_path):
    """A copy of the package with its links resolved, as pip installs it, and no README or docs/ around."""
    shutil.copytree(PKG, tmp_path / "lib" / "npformer", ignore=shutil.ignore_patterns("__pycache__", "*.gz"))
    assert not (tmp_path / "lib" / "npformer" / "site" / "shipped-docs" / "README.md").is_symlink()
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "lib"))
    run = subprocess.run([sys.executable, "-m", "npformer", "docs", "--out", "site", "--json"], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert len(result["pages"]) == len(EXPECTED) + 3
    assert (tmp_path / "site" / "index.html").read_text(encoding="utf-8").count("ops/attention.html") >= 2


def test_a_missing_extra_is_named_before_any_work(tmp_path, monkeypatch, capsys):
    from npformer.cli import main
    monkeypatch.setattr(site_package, "missing", lambda: ["latex2mathml"])
    assert main(["docs", "--out", str(tmp_path / "site")]) == 2
    err = capsys.readouterr().err
    assert "docs needs latex2mathml, which is not installed: pip install 'npformer[docs]'" in err
    assert not (tmp_path / "site").exists()


def test_help_describes_the_command(capsys):
    from npformer.cli import main
    with pytest.raises(SystemExit):
        main(["docs", "--help"])
    out = capsys.readouterr().out
    assert "--out DIR" in out and "--json" in out and "static site" in out and "npformer[docs]" in out
