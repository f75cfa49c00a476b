"""Without PyTorch, ``compare-torch`` is a one-line error that names the extra to install."""
import sys

from npformer.cli import main


def test_missing_torch_is_a_one_line_error(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    assert main(["compare-torch"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and "npformer[torch]" in err
