"""The README and the docs, checked where a claim can be checked mechanically:

- README.md is at most 200 lines, with its sections in the learner's order;
- its test command is the one CI runs (.ci/run), word for word;
- the commands table names every command, and each option it names exists in
  that command's parser;
- every relative link in README.md, docs/*.md and benchmarks/README.md points
  at a file that exists, and a link to a heading of a Markdown file at a
  heading that exists (GitHub's anchor rule).
"""
import re
from pathlib import Path

import pytest

from npformer.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "README.md"]
SECTIONS = ["Quick start", "Figure 1, file by file", "Learn", "Commands", "Results", "More"]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def subcommands() -> dict:
    parser = build_parser()
    action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return {name: {o for a in sub._actions for o in a.option_strings} for name, sub in action.choices.items()}


def commands_table(text: str) -> dict:
    """{command: options named in its row} from the README's commands table."""
    section = text.split("## Commands", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        m = re.match(r"\| `npformer ([a-z-]+)` \|", line)
        if m:
            rows[m.group(1)] = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", line))
    return rows


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    return {anchor(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", text, flags=re.M)}


def broken_links(path: Path) -> list:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        file, _, frag = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        if not dest.exists():
            broken.append(f"{target} (no file {dest.relative_to(ROOT) if ROOT in dest.parents else dest})")
        elif frag and dest.suffix == ".md" and frag not in anchors(dest):
            broken.append(f"{target} (no heading #{frag} in {dest.name})")
    return broken


def test_readme_is_at_most_200_lines():
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= 200, f"README.md has {n} lines; at most 200 (move detail to docs/)"


def test_readme_sections_come_in_the_learners_order():
    headings = re.findall(r"^## (.+)$", README.read_text(encoding="utf-8"), flags=re.M)
    assert headings == SECTIONS


def test_readme_test_command_is_the_one_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    command = next(line for line in ci.splitlines() if line.startswith("pip install") and "pytest" in line)
    assert command in README.read_text(encoding="utf-8")


def test_commands_table_names_every_command_and_only_real_options():
    table, real = commands_table(README.read_text(encoding="utf-8")), subcommands()
    assert set(table) == set(real), f"table {sorted(table)} against the parser's {sorted(real)}"
    wrong = {c: sorted(opts - real[c]) for c, opts in table.items() if opts - real[c]}
    assert not wrong, f"options in the commands table that the command does not take: {wrong}"


def test_the_table_reader_sees_a_wrong_option():
    row = "## Commands\n\n| `npformer info` | counts | `--preset`, `--no-such-flag` | `--json` |\n"
    assert commands_table(row) == {"info": {"--preset", "--no-such-flag", "--json"}}
    assert "--no-such-flag" not in subcommands()["info"]


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_at_what_exists(path):
    assert not broken_links(path), f"{path.relative_to(ROOT)}: broken links {broken_links(path)}"


def test_the_link_checker_sees_a_missing_file_and_a_missing_heading(tmp_path):
    (tmp_path / "a.md").write_text("# Title\n\n## Some heading: `x.py`\n", encoding="utf-8")
    doc = tmp_path / "b.md"
    doc.write_text("[ok](a.md#some-heading-xpy) [gone](c.md) [bad](a.md#nope) [web](https://x.org)\n",
                   encoding="utf-8")
    assert [b.split()[0] for b in broken_links(doc)] == ["c.md", "a.md#nope"]
