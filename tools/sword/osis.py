"""OSIS verse markup to plain text, and the Reina-Valera 1909's typographic fixes.

Each verse is OSIS XML markup (``SourceType=OSIS``): Strong's-tagged ``<w>``
words, ``<note>`` footnotes and cross references, ``<title>`` headings,
poetry-line and paragraph milestones.  We keep the running text: notes,
headings and speaker labels are dropped with their content, all other tags are
removed, entities unescaped and whitespace normalised.  The text encoding comes
from the ``.conf`` (``Encoding=UTF-8``; SWORD's default is Latin-1).
"""
from __future__ import annotations

import collections
import html
import re

TOKEN = re.compile(r"<(/?)([A-Za-z][\w:.-]*)([^>]*?)(/?)>|([^<]+)|(<)", re.S)
ATTR = re.compile(r'([\w:.-]+)\s*=\s*"([^"]*)"')
DROP = {"note", "title", "speaker"}   # elements dropped with their content
BREAK = {"l", "lg", "p", "item", "list", "title", "q"}   # element ends that separate words
LETTER = re.compile(r"[^\W\d_]")
GAP = "\x00"                          # marks where a dropped element was

# RV1909 writes translator-supplied words as <transChange> with no space
# before/after ("ejército<transChange>se llamaba</transChange><w>Sísara").
# A supplied enclitic pronoun does attach to the verb before it
# ("díjo" + "le" -> "díjole"), except after these words.
ENCLITIC = {"lo", "la", "le", "los", "las", "les", "nos", "os", "me", "te", "se"}
NOT_A_VERB = {"no", "como", "y", "que", "se", "me", "te", "ya", "si", "ni", "lo", "le"}


def _transchange_spacing(markup: str) -> str:
    def before(m):
        word, attrs, content = m.group(1), m.group(2), m.group(3)
        glue = content.strip().lower() in ENCLITIC and word.lower() not in NOT_A_VERB
        return f"{word}</w>{'' if glue else ' '}<transChange{attrs}>{content}"
    markup = re.sub(r"(\w+)</w><transChange([^>]*)>([^<]*)", before, markup)
    return re.sub(r"</transChange>(?=<w[\s>]|\w)", "</transChange> ", markup)


def osis_to_text(markup: str, keep_psalm_title: bool = False) -> str:
    """Plain text of one OSIS verse entry."""
    if "transChange" in markup:
        markup = _transchange_spacing(markup)
    out = []
    skip = 0            # depth inside dropped elements
    stack = []          # open elements: (name, dropped?)
    for m in TOKEN.finditer(markup):
        close, name, attrs, selfclose, text, stray = m.groups()
        if text is not None or stray is not None:
            if not skip:
                out.append(text if text is not None else "<")
            continue
        a = dict(ATTR.findall(attrs))
        if name == "div" and a.get("type") == "book" and "eID" in a:
            break       # end of the book: anything after is back matter
        if name == "div" and a.get("type") in ("glossary", "front", "introduction",
                                               "book") and "sID" in a:
            break       # start of non-verse matter
        if selfclose:
            out.append(" ")
            continue
        if close:
            # pop to the matching element (tolerate sloppy nesting)
            for k in range(len(stack) - 1, -1, -1):
                if stack[k][0] == name:
                    was_skipping = skip > 0
                    for _, dropped in stack[k:]:
                        skip -= dropped
                    del stack[k:]
                    if was_skipping and not skip:
                        out.append(GAP)     # a dropped note may have eaten a space
                    break
            out.append(" " if name in BREAK else "")
            continue
        dropped = name in DROP
        if (dropped and keep_psalm_title and name == "title"
                and a.get("type") == "psalm" and a.get("canonical") == "true"):
            dropped = False
            out.append(" ")
        stack.append((name, dropped))
        skip += dropped
    text = "".join(out)
    # Where a note sat between two words ("God<note/><w>created</w>") the
    # markup has no space left; put one back unless punctuation follows.
    text = re.sub(GAP + r"(?=\s*[^\W_]|\s*[“‘(\[¿¡«])", " ", text).replace(GAP, "")
    text = html.unescape(text)
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r" +([,.;:!?»)\]])", r"\1", text)
    text = re.sub(r"([¿¡«(\[]) +", r"\1", text)
    return text


def case_votes(texts) -> collections.Counter:
    """Count, per lower-cased word, mid-sentence uses written Capitalised (+1)
    and lower-case (-1): tells proper nouns ("Jacob") from common words."""
    votes = collections.Counter()
    for text in texts:
        words = text.split(" ")
        for prev, w in zip(words, words[1:]):
            if prev[-1:] in ".:;!?" or not prev:
                continue
            core = "".join(LETTER.findall(w))
            if len(core) < 2 or core.isupper():
                continue
            votes[core.lower()] += 1 if core[0].isupper() else -1
    return votes


def fix_dropcap(text: str, psalm: bool, votes: collections.Counter) -> str:
    """Normal-case the all-capitals first word of an RV1909 chapter.

    The first word with two or more letters is the candidate ("EN el
    principio", "Y ACONTECIÓ"); in the Psalms the capitalised word follows
    the superscription, so there it is the first all-capitals word anywhere
    in verse 1.  It becomes Capitalised at the start of a sentence or when
    the corpus writes it so mid-sentence (a name: "Y JACOB" -> "Y Jacob"),
    lower-case otherwise ("Y ACONTECIÓ" -> "Y aconteció").
    """
    words = text.split(" ")
    for i, w in enumerate(words):
        letters = LETTER.findall(w)
        if len(letters) < 2:
            continue
        if all(ch.isupper() for ch in letters):
            j = w.index(letters[0])
            starts_sentence = i == 0 or words[i - 1][-1:] in ".:;!?"
            if starts_sentence or votes["".join(letters).lower()] > 0:
                words[i] = w[:j + 1] + w[j + 1:].lower()
            else:
                words[i] = w.lower()
            return " ".join(words)
        if not psalm:
            return text
    return text


# RV1909 ends each Pauline epistle (and Hebrews) with the traditional
# subscription ("Fué escrita de Corinto á los Romanos..."), which is not
# verse text (KJV prints it apart; the WEB has none).
EPISTLES = ("Rom", "1Cor", "2Cor", "Gal", "Eph", "Phil", "Col", "1Thess", "2Thess",
            "1Tim", "2Tim", "Titus", "Phlm", "Heb")
SUBSCRIPTION = re.compile(r"(?<=Amén\.) [^.]*\b(?:[Ee]scrita|[Ee]nviada|[Ee]pístola)\b.*$")


def strip_subscription(text: str) -> str:
    return SUBSCRIPTION.sub("", text)
