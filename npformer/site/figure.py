"""Figure 1 of the paper as an SVG whose boxes link to the code.

figure1.svg is drawn by hand, in the paper's layout and colours: the encoder
stack on the left, the decoder stack on the right, the embeddings and the
positional encoding at the bottom, the linear layer and the softmax on top. Each
box is an ``<a>`` whose ``href`` is the repository path of the file that
implements it (``npformer/ops/multihead.py``); ``linked`` turns each into the
relative URL of that file's page, and refuses a box whose file has no page, so
the figure cannot point at a page that was renamed away.
"""
from __future__ import annotations

import re
from pathlib import Path

from npformer.site.links import BrokenReferences

SVG = Path(__file__).resolve().parent / "figure1.svg"
WHERE = "npformer/site/figure1.svg"


def linked(resolve) -> str:
    """The SVG, its hrefs made site URLs by ``resolve(target, source)`` (links from the repository's root)."""
    svg = SVG.read_text(encoding="utf-8")
    broken = []

    def link(m):
        target = resolve(m.group(1), "README.md")
        if target is None:
            broken.append(m.group(1))
            return m.group(0)
        return f'href="{target}"'
    svg = re.sub(r'(?<=\s)href="([^"#][^"]*)"', link, svg)
    if broken:
        raise BrokenReferences(f"{WHERE} links {', '.join(broken)}, which no page of the site is")
    return svg
