"""The corpus builder's parts (tools/sword/): the versification table, OSIS to
text, and the content alignment that re-pairs a chapter numbered one verse off."""
import random
import sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parents[2] / "tools"
if str(TOOLS) not in sys.path:
    sys.path.insert(0, str(TOOLS))

from sword import align, osis, versification  # noqa: E402


def test_kjv_table_and_nrsv_differences():
    versification.check_kjv_table()
    ot, nt, trailing = versification.versification("NRSVA")
    assert trailing and dict(nt)["3John"][0] == 15 and dict(nt)["Rev"][11] == 18
    assert versification.versification("KJV")[1] == versification.KJV_NT


def test_osis_markup_becomes_plain_text():
    markup = ('<w lemma="strong:H7225">In the beginning</w> <note type="x">a note</note>God '
              '<title>A heading</title>created&amp;made.')
    assert osis.osis_to_text(markup) == "In the beginning God created&made."


def test_a_chapter_numbered_one_verse_off_is_re_paired_by_content():
    rng = random.Random(0)
    en, es, order = {}, {}, []
    for chapter in range(1, 11):
        for verse in range(1, 31):
            # six words of a 400-word vocabulary, each translated one to one, and a length of its own
            ids = rng.sample(range(400), 6) + [400 + rng.randrange(40) for _ in range(rng.randrange(8))]
            en["Gen", chapter, verse] = " ".join(f"en{k}" for k in ids)
            es["Gen", chapter, verse] = " ".join(f"es{k}" for k in ids)
            order.append(("Gen", chapter, verse))
    shifted = {("Gen", 5, v + 1): es.pop(("Gen", 5, v)) for v in range(1, 30)}  # Spanish ch. 5 one verse later
    es.update(shifted)
    pairs = align.checked_alignment(en, es, order, log=lambda message: None)
    assert all(en[e].replace("en", "es") == es[s] for e, s in pairs)  # every kept pair is a true translation
    assert sorted((e, s) for e, s in pairs if e != s) == [(("Gen", 5, v), ("Gen", 5, v + 1)) for v in range(1, 30)]
    assert len(pairs) >= 295
