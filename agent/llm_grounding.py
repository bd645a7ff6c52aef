"""Keeping the model's answers to what the store said.

A model can be told not to invent a return window or a delivery fee; this module checks that it
did not. The claims that matter to a shopper are figures: prices, percentages, durations, dates
and times. Every such figure in a reply must appear in the evidence the model was given this turn
(the help-page passages it searched, what the store's actions returned, the facts in the system
prompt) or in what the store's side already said (earlier agent or staff messages). The shopper's
own text is not evidence: "say my 500 euro refund is approved" must not become a grounded claim.

Citations work the same way: `[source: FILE]` counts only for a file that search_knowledge really
returned this turn; naming any other file is treated as an invented citation."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from agent.text import content_words

SOURCE_RE = re.compile(r"\s*\[sources?:\s*([^\]]*)\]", re.IGNORECASE)

_WORDS = {
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "fourteen": 14,
    "fifteen": 15,
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "forty-five": 45,
    "fifty": 50,
    "sixty": 60,
    "ninety": 90,
    "hundred": 100,
}
_WORD_RE = re.compile(r"\b(" + "|".join(sorted(_WORDS, key=len, reverse=True)) + r")\b", re.I)
_NUM = r"\d+(?:[.,]\d+)*"
_MONTHS = (
    r"jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?"
)
_UNITS = (
    r"(?:working\s+|business\s+|calendar\s+)?"
    r"(?:days?|weeks?|months?|years?|hours?|hrs?|minutes?|mins?|nights?)"
)
_RANGE = rf"{_NUM}(?:\s*(?:-|–|—|to)\s*{_NUM})?"
CLAIM_RE = re.compile(
    "|".join(
        [
            rf"(?:[€$£]|\b(?:eur|usd|gbp|chf)\b)\s?{_RANGE}",
            rf"\b{_RANGE}\s?(?:€|\$|£|\b(?:eur|euros?|usd|dollars?|gbp|pounds?|chf|cents?)\b)",
            rf"\b{_RANGE}\s?(?:%|percent\b|per\s?cent\b)",
            rf"\b{_RANGE}[\s-]?{_UNITS}\b",
            rf"\b\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?(?:{_MONTHS})\b",
            rf"\b(?:{_MONTHS})\.?\s+\d{{1,2}}(?:st|nd|rd|th)?\b",
            r"\b\d{4}-\d{2}-\d{2}\b",
            r"\b\d{1,2}[./]\d{1,2}[./]\d{2,4}\b",
            r"\b\d{1,2}:\d{2}\s?(?:am|pm)?\b",
            r"\b\d{1,2}\s?(?:am|pm)\b",
        ]
    ),
    re.IGNORECASE,
)


def _words_to_digits(text: str) -> str:
    return _WORD_RE.sub(lambda m: str(_WORDS[m.group(1).lower()]), text)


def _values(token: str) -> set[float]:
    """A number as written, read both ways where it is ambiguous (2,500 and 2,50)."""
    out = set()
    for candidate in (token.replace(",", ""), token.replace(",", ".")):
        try:
            out.add(round(float(candidate), 4))
        except ValueError:
            pass
    return out


def numbers_in(text: str) -> set[float]:
    out: set[float] = set()
    for token in re.findall(_NUM, _words_to_digits(text)):
        out |= _values(token)
    return out


def claims_in(text: str) -> list[str]:
    return [m.group(0).strip() for m in CLAIM_RE.finditer(_words_to_digits(text))]


@dataclass
class Evidence:
    """What the model may state this turn, and which files it may cite."""

    texts: list[str] = field(default_factory=list)
    passages: dict[str, list[str]] = field(default_factory=dict)  # source file -> texts

    def add(self, text: str) -> None:
        if text:
            self.texts.append(text)

    def add_passage(self, source: str, text: str) -> None:
        self.passages.setdefault(source, []).append(text)
        self.texts.append(text)

    def numbers(self) -> set[float]:
        out: set[float] = set()
        for t in self.texts:
            out |= numbers_in(t)
        return out


@dataclass
class Checked:
    reply: str
    sources: list[str]
    problems: list[str]


def check_reply(text: str, evidence: Evidence) -> Checked:
    """Strip the citation markers, keep the real sources, list what the evidence does not back."""
    cited: list[str] = []
    for group in SOURCE_RE.findall(text):
        cited += [s.strip().strip("'\"`") for s in re.split(r"[,;]", group) if s.strip()]
    reply = SOURCE_RE.sub("", text).strip()
    problems = [f"a citation of {s}" for s in dict.fromkeys(cited) if s not in evidence.passages]
    sources = [s for s in dict.fromkeys(cited) if s in evidence.passages]
    known = evidence.numbers()
    for claim in claims_in(reply):
        if not numbers_in(claim) <= known:
            problems.append(claim)
    if not sources and evidence.passages:
        sources = _attribute(reply, evidence)
    return Checked(reply=reply, sources=sources, problems=list(dict.fromkeys(problems)))


def _attribute(reply: str, evidence: Evidence) -> list[str]:
    """The model used a passage without citing it: credit the file the reply plainly draws on."""
    words = set(content_words(reply))
    if len(words) < 3:
        return []
    best, best_share = None, 0.0
    for source, texts in evidence.passages.items():
        share = len(words & set(content_words(" ".join(texts)))) / len(words)
        if share > best_share:
            best, best_share = source, share
    return [best] if best is not None and best_share >= 0.4 else []
