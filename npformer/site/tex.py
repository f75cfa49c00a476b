"""TeX to MathML, once, when the site is built.

The pages carry MathML, which browsers draw natively (Chromium since version
109, Firefox, Safari): no JavaScript, no font files and nothing fetched when a
page is read, and a site that works from a folder or any static host. KaTeX
would draw the same formulas with its own fonts, but needs JavaScript, in the
browser or in Node at build time, and about a megabyte of fonts beside the
pages; docs/site.md says how the two compared in Chromium.

latex2mathml converts. It is lenient where a wrong page is worse than a failed
build, so ``to_mathml`` refuses what it would pass through: unbalanced braces,
a command it does not know (it would print ``\\foo`` as a letter), output that
is not well-formed XML (a stray ``&``), and a fraction, script or root that
lacks one of its parts. The error names the file and line of the formula.

Chromium draws only the upright variant of ``mathvariant``; a bold, blackboard
or script letter is therefore written as its own Unicode character
(``\\boldsymbol{\\delta}`` as U+1D739), which every browser draws.
"""
from __future__ import annotations

import re
import unicodedata
import xml.etree.ElementTree as ET

from npformer.errors import UserError

MATHML = "{http://www.w3.org/1998/Math/MathML}"
# children each MathML element must have
ARITY = {"mfrac": 2, "msub": 2, "msup": 2, "msubsup": 3, "munder": 2, "mover": 2, "munderover": 3, "mroot": 2}
# mathvariant -> the prefix of the Unicode names of its letters
VARIANTS = {"bold": "MATHEMATICAL BOLD", "bold-italic": "MATHEMATICAL BOLD ITALIC", "italic": "MATHEMATICAL ITALIC",
            "double-struck": "MATHEMATICAL DOUBLE-STRUCK", "script": "MATHEMATICAL SCRIPT",
            "fraktur": "MATHEMATICAL FRAKTUR", "sans-serif": "MATHEMATICAL SANS-SERIF",
            "monospace": "MATHEMATICAL MONOSPACE"}


class TexError(UserError):
    """A formula that cannot be drawn: its place, the formula and the reason."""


def _balanced(tex: str) -> bool:
    depth = 0
    for m in re.finditer(r"\\.|[{}]", tex):
        if m.group() == "{":
            depth += 1
        elif m.group() == "}":
            depth -= 1
            if depth < 0:
                return False
    return depth == 0


def _letter(char: str, variant: str) -> str:
    """``char`` in the Unicode alphabet of ``variant`` (bold, double-struck, ...), or itself where there is none."""
    prefix = VARIANTS.get(variant)
    if prefix is None or len(char) != 1:
        return char
    name = unicodedata.name(char, "")
    m = re.fullmatch(r"(LATIN|GREEK) (CAPITAL|SMALL) LETTER (\w+)", name)
    if not m:
        return char
    case = "CAPITAL" if m.group(2) == "CAPITAL" else "SMALL"
    for candidate in (f"{prefix} {case} {m.group(3)}", f"{prefix} {m.group(3)}"):
        try:
            return unicodedata.lookup(candidate)
        except KeyError:
            continue
    if variant == "double-struck" and m.group(1) == "LATIN":   # the letters Unicode placed earlier: C, H, N, P, Q, R, Z
        try:
            return unicodedata.lookup(f"DOUBLE-STRUCK {case} {m.group(3)}")
        except KeyError:
            return char
    return char


def _restyle(root) -> None:
    """Replace each mathvariant other than "normal" by the Unicode letters of that variant."""
    for el in root.iter():
        variant = el.attrib.get("mathvariant")
        if variant and variant != "normal" and el.text and len(el.text) == 1:
            letter = _letter(el.text, variant)
            if letter != el.text:
                el.text = letter
                del el.attrib["mathvariant"]


def _problem(root) -> str | None:
    for el in root.iter():
        tag = el.tag.replace(MATHML, "")
        if el.text and "\\" in el.text:
            return f"unknown command {el.text.strip()}"
        if tag in ARITY and len(el) != ARITY[tag]:
            return f"{tag} needs {ARITY[tag]} parts, got {len(el)}"
        if tag in ("msqrt",) and len(el) == 0:
            return "an empty square root"
    return None


def to_mathml(tex: str, display: bool, where: str) -> str:
    """The MathML of ``tex`` (without its dollars); ``where`` ("docs/derivations.md:412") is
    named if it cannot be drawn."""
    from latex2mathml.converter import convert
    shown = tex.strip().replace("\n", " ")
    if not _balanced(tex):
        raise TexError(f"{where}: cannot draw ${shown}$: unbalanced braces")
    try:
        out = convert(tex, display="block" if display else "inline")
        root = ET.fromstring(out)
    except Exception as e:   # latex2mathml's own errors, and output that is not well-formed
        raise TexError(f"{where}: cannot draw ${shown}$: {type(e).__name__} {e}".rstrip()) from None
    problem = _problem(root)
    if problem:
        raise TexError(f"{where}: cannot draw ${shown}$: {problem}")
    _restyle(root)
    ET.register_namespace("", MATHML[1:-1])
    return ET.tostring(root, encoding="unicode", short_empty_elements=False)
