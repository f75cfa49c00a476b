"""The teaching documents stay true: docs/walkthrough.py runs, docs/derivations.md covers every backward.

* The walkthrough runs top to bottom as a plain script (as CI and readers run
  it), its gradient checks pass, its planted bugs are caught and its tiny model
  learns to reverse sequences.
* Every ``*_backward`` function in npformer/ (found by parsing the source, so a
  new op cannot be forgotten) appears in derivations.md next to a link to the
  file that defines it; every link and anchor in the document resolves; its
  gradient-check example runs.
"""
import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WALKTHROUGH = ROOT / "docs" / "walkthrough.py"
DERIVATIONS = ROOT / "docs" / "derivations.md"


# --- the walkthrough ----------------------------------------------------------
@pytest.fixture(scope="module")
def walkthrough(tmp_path_factory):
    """(returncode, stdout + stderr, output dir) of one run of the walkthrough."""
    out = tmp_path_factory.mktemp("walkthrough")
    env = dict(os.environ, MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, str(WALKTHROUGH.relative_to(ROOT)), "--out", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    return proc.returncode, proc.stdout + proc.stderr, out


def test_walkthrough_runs(walkthrough):
    rc, text, _ = walkthrough
    assert rc == 0, f"docs/walkthrough.py exited with {rc}; its output ends with:\n{text[-3000:]}"


@pytest.mark.parametrize("name", ["attention, one head", "hand-written head", "multi-head self-attention",
                                  "encoder layer", "layernorm (correct)", "attention (correct)",
                                  "embedding (correct)"])
def test_walkthrough_gradient_checks_pass(walkthrough, name):
    assert f"gradient check {name!r}: passed" in walkthrough[1]


def test_walkthrough_hand_backward_matches_npformer(walkthrough):
    diffs = re.findall(r"hand d[QKV] vs attention_backward: max difference (\S+)", walkthrough[1])
    assert len(diffs) == 3 and all(float(d) < 1e-12 for d in diffs), diffs


@pytest.mark.parametrize("bug", ["layernorm without gamma", "attention without 1/sqrt(d_k)",
                                 "embedding without scatter-add"])
def test_walkthrough_catches_planted_bugs(walkthrough, bug):
    assert f"planted bug {bug!r}: caught" in walkthrough[1]


def test_walkthrough_post_ln_gradients_grow_towards_the_output_and_pre_ln_ones_do_not(walkthrough):
    found = re.search(r"decoder, last layer / first layer: post-LN (\S+)x, pre-LN (\S+)x", walkthrough[1])
    assert found, "the walkthrough's gradient-flow section printed no ratio"
    post, pre = float(found.group(1)), float(found.group(2))
    assert post > 2.0 and 0.5 < pre < 1.5


def test_walkthrough_layernorm_bug_is_invisible_at_gamma_one(walkthrough):
    assert "with gamma == 1 it would be missed" in walkthrough[1]


def test_walkthrough_model_learns_to_reverse(walkthrough):
    text = walkthrough[1]
    first, last = map(float, re.search(r"loss fell from (\S+) to (\S+)\n", text).groups())
    assert last < first / 2, (first, last)
    exact = float(re.search(r"held-out exact match: (\S+)%", text).group(1))
    assert exact >= 50.0, f"held-out exact match {exact}%"
    hits, n = map(int, re.search(r"anti-diagonal: in (\d+) of (\d+)", text).groups())
    assert 2 * hits > n, f"cross-attention follows the anti-diagonal in only {hits} of {n} rows"


def test_walkthrough_writes_pictures_where_matplotlib_is(walkthrough):
    _, text, out = walkthrough
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "matplotlib is not installed" in text
        return
    for name in ("cross_attention.png", "one_head_weights.png"):
        assert (out / name).stat().st_size > 0, f"{name} missing from WALKTHROUGH_OUT"


def test_walkthrough_is_jupytext_percent_format():
    """Cells start with '# %%'; markdown cells hold only comment lines, so it opens as a notebook."""
    cells = re.split(r"^(# %%.*)$", WALKTHROUGH.read_text(), flags=re.M)
    markers = cells[1::2]
    assert markers and all(m in ("# %%", "# %% [markdown]") for m in markers), set(markers)
    for marker, body in zip(markers, cells[2::2]):
        if marker == "# %% [markdown]":
            bad = [line for line in body.strip("\n").splitlines() if line and not line.startswith("#")]
            assert not bad, f"markdown cell has non-comment lines: {bad[:3]}"


# --- derivations.md -----------------------------------------------------------
def backward_functions():
    """(path relative to the repo, function name) of every *_backward def in npformer/."""
    found = []
    for path in sorted((ROOT / "npformer").rglob("*.py")):
        if path.parent.name == "exercise":  # its known mistakes are deliberately wrong backwards
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.endswith("_backward"):
                found.append((path.relative_to(ROOT).as_posix(), node.name))
    return found


def test_scan_finds_the_core_backwards():
    names = {name for _, name in backward_functions()}
    assert {"linear_backward", "layernorm_backward", "attention_backward", "transformer_backward"} <= names


def test_every_backward_is_derived_with_a_link_to_its_file():
    lines = DERIVATIONS.read_text().splitlines()
    missing = []
    for path, name in backward_functions():
        link = f"](../{path})"
        if not any(f"`{name}`" in line and link in line for line in lines):
            missing.append(f"{name} ({path})")
    assert not missing, ("docs/derivations.md has no line naming these backward functions next to a "
                         f"link to their file, e.g. in its index table: {missing}")


def _slug(heading):
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_derivations_links_and_anchors_resolve():
    text = DERIVATIONS.read_text()
    anchors = {_slug(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith(("http://", "https://")):
            continue
        path, _, anchor = target.partition("#")
        if path and not (DERIVATIONS.parent / path).exists():
            broken.append(target)
        elif not path and anchor not in anchors:
            broken.append(target)
    assert not broken, f"broken links in docs/derivations.md: {broken}"


def test_derivations_math_avoids_constructs_github_mishandles():
    text = DERIVATIONS.read_text()
    blocks = re.findall(r"\$\$(.*?)\$\$", text, flags=re.S) + re.findall(r"(?<!\$)\$([^$\n]+)\$(?!\$)", text)
    for bad in (r"\_", r"\operatorname", r"\{", r"\texttt"):
        assert not any(bad in b for b in blocks), f"{bad} inside math"
    # every display block opens and closes on lines of its own
    for line in text.splitlines():
        if "$$" in line:
            assert line.strip() == "$$", f"'$$' must stand on its own line: {line!r}"


def test_derivations_gradcheck_example_runs():
    """The 'check a gradient yourself' example is real code."""
    text = DERIVATIONS.read_text()
    section = text.split("## 9. How to check a gradient yourself", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=os.pathsep.join(
                              [str(ROOT), os.environ.get("PYTHONPATH", "")])))
    assert proc.returncode == 0, proc.stderr
    assert "layernorm True" in proc.stdout
