"""docs/exercises.md's sessions are real: each `$ npformer exercise check ...` block is what the
command prints today on the learner file in docs/sessions/ that the text names."""
import re
import shutil
from pathlib import Path

import pytest

from npformer.cli import main

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "exercises.md"
BLOCK = re.compile(r"```text\n\$ (npformer exercise check [^\n]+)\n(.*?)```", re.S)
SESSIONS = BLOCK.findall(DOC.read_text(encoding="utf-8"))


def test_the_doc_has_its_three_sessions():
    assert len(SESSIONS) >= 3


@pytest.mark.parametrize("command,printed", SESSIONS, ids=[c for c, _ in SESSIONS])
def test_a_session_in_the_doc_is_what_check_prints(command, printed, tmp_path, capsys):
    args = command.split()[1:]
    folder = args[args.index("--dir") + 1]
    copy = tmp_path / "learner"
    shutil.copytree(ROOT / folder, copy)   # check writes its record beside the file: not into docs/
    args[args.index("--dir") + 1] = str(copy)
    code = main(args)
    assert code == 1   # each session shows a bug
    assert capsys.readouterr().out.rstrip() == printed.rstrip()
