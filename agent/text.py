"""Text normalisation shared by retrieval and intent detection: folding, contractions, tokens."""

from __future__ import annotations

import re
import unicodedata

CONTRACTIONS = {
    "can't": "can not",
    "cannot": "can not",
    "won't": "will not",
    "shan't": "shall not",
    "ain't": "is not",
    "n't": " not",
    "'re": " are",
    "'ve": " have",
    "'ll": " will",
    "'d": " would",
    "'m": " am",
    "i'd": "i would",
}

STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further had
    has have having he her here hers herself him himself his how i if in into is it its itself just
    me more most my myself no nor not now of off on once only or other our ours ourselves out over
    own same she should so some such than that the their theirs them themselves then there these
    they this those through to too under until up very was we were what when where which while who
    whom why will with would you your yours yourself yourselves hi hello hey thanks thank please
    ok okay yes yeah btw also really actually just still maybe pls plz im ive dont cant wont didnt
    doesnt isnt one get got know need want like tell let us would could might much many lot
    am an as at be by do go he if in is it me my no of on or so to up we re ve ll something
    anything everything nothing someone thing things way use using used buy bought wondering
    quick question guys folks there nope nah yep yup""".split()
)


def fold(text: str) -> str:
    """Lower case, typographic quotes and dashes made plain, accents removed."""
    text = text.replace("’", "'").replace("‘", "'").replace("`", "'")
    text = text.replace("–", "-").replace("—", "-")
    if text.isascii():
        return text.lower()
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return text.lower()


_CONTRACTED = re.compile(r"\b(can't|cannot|won't|shan't|ain't)\b")
_I_WOULD = re.compile(r"\bi'd\b")
_NOT = re.compile(r"n't\b")
_SUFFIXED = re.compile(r"'(re|ve|ll|d|m)\b")
_UNAPOSTROPHED = re.compile(
    r"\b(dont|didnt|doesnt|cant|wont|isnt|wasnt|havent|hasnt|couldnt|wouldnt)\b"
)
_UNAPOSTROPHED_NOT = {"cant": "can not", "wont": "will not"}


def expand_contractions(text: str) -> str:
    # Precompiled, and each pattern skipped when the text lacks a string every match of it holds
    # (most chat has no apostrophe): the same result, and normalising runs several times a turn.
    if "'" in text or "cannot" in text:
        text = _CONTRACTED.sub(lambda m: CONTRACTIONS[m.group(1)], text)
    if "'" in text:
        text = _I_WOULD.sub("i would", text)
        text = _NOT.sub(" not", text)
        text = _SUFFIXED.sub(lambda m: CONTRACTIONS["'" + m.group(1)], text)
    # Common apostrophe-less spellings in chat.
    if "nt" in text:
        text = _UNAPOSTROPHED.sub(
            lambda m: _UNAPOSTROPHED_NOT.get(m.group(1), m.group(1)[:-2] + " not"), text
        )
    return text


def normalize(text: str) -> str:
    return expand_contractions(fold(text))


_TOKEN = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*|%|[?!.,;]")
_CONTENT_WORD = re.compile(r"[a-z][a-z0-9]+")


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(normalize(text))


# Shop-support paraphrases: what shoppers say -> words a store's help pages use. Generic to
# online retail, not to any one store; it widens a query, never replaces it.
THESAURUS: list[tuple[str, tuple[str, ...]]] = [
    (r"\b(send|give|bring|ship|post) (it|them|this|that|the \w+)? ?back\b", ("return", "returns")),
    (r"\bmoney back\b|\breimburs\w*", ("refund",)),
    (r"\barriv\w*|\bget here\b|\breach me\b|\breceive\b", ("delivery", "delivered")),
    (r"\bpostage\b|\bsend\b|\bship\b", ("shipping", "delivery")),
    (r"\bextra\b|\bfees?\b|\bcustoms\b|\bimport\b", ("duties", "customs", "vat")),
    (r"\b(do|does) not fit\b|\btoo (small|big|tight|large)\b", ("size", "fit", "return")),
    (
        r"\blegit\w*|\bfakes?\b|\bgenuine\b|\breal\b|\breplica\w*",
        ("authentic", "authenticity", "genuine"),
    ),
    (r"\bstart\w*|\bbegin\w*|\blaunch\w*|\bgo(es)? live\b", ("live", "starts", "opens")),
    (r"\bbasket\b", ("cart",)),
    (r"\bsaved?\b|\bhold\b|\breserv\w*|\bkept\b", ("reserve", "reservation", "held")),
    (r"\blog ?in\b|\bsign ?in\b", ("login", "password")),
    (r"\bcoupon\b|\bvoucher\b|\bpromo\b", ("code", "discount")),
    (r"\bwhere is\b|\btrack\w*", ("tracking",)),
    (r"\buk\b|\bbritain\b|\bengland\b|\bscotland\b|\bwales\b", ("united", "kingdom", "uk")),
    (r"\bexpired?\b|\bnot work\w*", ("expired", "valid")),
]


def content_words(text: str, expand: bool = False) -> list[str]:
    """Words worth searching for: no stopwords, no bare numbers; two-letter words kept (UK, EU)."""
    norm = normalize(text)
    out = []
    for w in _CONTENT_WORD.findall(norm):
        if w in STOPWORDS or len(w) < 2:
            continue
        out.append(w)
    if expand:
        for pattern, extra in THESAURUS:
            if re.search(pattern, norm):
                out.extend(f"~{w}" for w in extra)
    return out


def stem(word: str) -> str:
    """A light suffix stripper, only for choosing which sentence of a passage to quote."""
    w = word.lower()
    for suffix in ("ations", "ation", "ings", "ing", "edly", "ed", "ies", "es", "s", "ly"):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            return w[: -len(suffix)]
    return w


def sentences(text: str) -> list[str]:
    parts = re.split(r"(?<=[.!?])\s+|\n+", text)
    return [p.strip() for p in parts if p.strip()]
