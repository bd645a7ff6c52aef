"""Card numbers (and store-configured patterns) are masked at intake, before the text is stored,
shown in Slack or sent to an LLM: the raw number never exists anywhere after this.

A card number is found the way a person would write it, not the way a form would: digits with
any separators between them (spaces, several spaces, dashes, dots, slashes, underscores,
zero-width characters), Luhn-checked after the separators are removed. A security code or an
expiry date written beside the number goes with it, and a labelled security code ("CVV 123")
anywhere is masked too: none of them is ever needed to help a shopper."""

from __future__ import annotations

import re
from functools import lru_cache

# What people (and copy-paste) put between the digits of a card number.
_SEP = r"[\s\-._/\\\u00ad\u200b-\u200f\u2010-\u2015\u2060\ufeff]"
# A run of digits with at most three separator characters between any two of them.
_RUN = re.compile(rf"\d(?:{_SEP}{{0,3}}\d)*")
_GROUP = re.compile(r"\d+")
_CARD_LENGTHS = (16, 15, 14, 19, 13, 17, 18)  # most common first

_EXPIRY = r"(?:0?[1-9]|1[0-2])\s*[/\-.]\s*(?:20\d{2}|\d{2})"
_CODE = r"\d{3,4}"
# Words and punctuation that may stand between a card number and its code or expiry.
_FILLER = (
    rf"(?:{_SEP}|[,;:=#()\[\]|+]|\band\b|\bexp(?:iry|ires|iration)?\b|\bdate\b|\bvalid\b|\bthru\b"
    r"|\bthrough\b|\bcvv2?\b|\bcvc2?\b|\bcsc\b|\bcid\b|\bsecurity\b|\bcode\b|\bpin\b|\bmm\s*/\s*yy\b)"
)
_AFTER = re.compile(rf"(?:{_FILLER}){{0,12}}?(?P<tok>{_EXPIRY}|{_CODE})(?![\d/])", re.I)
_BEFORE = re.compile(rf"(?<![\d/])(?P<tok>{_EXPIRY}|{_CODE})(?:{_FILLER}){{0,12}}\Z", re.I)
_LABELLED_CODE = re.compile(
    r"\b(?:cvv2?|cvc2?|csc|cid|security\s+code|card\s+code)\b\W{0,3}(?:is\s+)?(?P<tok>\d{3,4})(?!\d)",
    re.I,
)
_LABELLED_EXPIRY = re.compile(
    rf"\b(?:exp(?:iry|iration)?(?:\s+date)?|valid\s+(?:thru|through)|mm\s*/\s*yy)\b\W{{0,3}}"
    rf"(?:is\s+)?(?P<tok>{_EXPIRY})(?![\d/])",
    re.I,
)


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


class _Digits:
    """A run's digits with prefix sums, so the Luhn sum of any slice costs O(1): a hostile
    message of 4,000 separated digits has thousands of candidate windows."""

    def __init__(self, digits: str) -> None:
        self.digits = digits
        # plain[q][k] / doubled[q][k]: sums over positions p < k with p % 2 == q.
        self.plain = ([0], [0])
        self.doubled = ([0], [0])
        for p, ch in enumerate(digits):
            d = int(ch)
            dd = d * 2 - 9 if d > 4 else d * 2
            for q in (0, 1):
                self.plain[q].append(self.plain[q][-1] + (d if p % 2 == q else 0))
                self.doubled[q].append(self.doubled[q][-1] + (dd if p % 2 == q else 0))

    def luhn_ok(self, a: int, b: int) -> bool:
        """Luhn over digits[a:b]: every second digit from the right (the check digit at b-1 is
        not doubled) is doubled, i.e. the positions p with p % 2 == b % 2."""
        q = b % 2
        total = (
            self.doubled[q][b] - self.doubled[q][a] + self.plain[1 - q][b] - self.plain[1 - q][a]
        )
        return total % 10 == 0


def _cards_in_run(run: re.Match[str]) -> list[tuple[int, int, str]]:
    """(start, end, last four) of each card number inside a run of separated digits.

    A run may hold more than a card (an order number before it, an expiry after it), so the
    card is looked for among windows of whole digit groups, most common lengths first."""
    groups = [
        (run.start() + g.start(), run.start() + g.end(), g.group())
        for g in _GROUP.finditer(run.group())
    ]
    cum = [0]
    for g in groups:
        cum.append(cum[-1] + len(g[2]))
    if cum[-1] < 13:
        return []
    digits = _Digits("".join(g[2] for g in groups))
    whole_run = cum[-1] <= 19
    found: list[tuple[int, int, str]] = []
    i = 0
    while i < len(groups):
        # Part of a longer run must also start like a card (2-6: Mastercard, Amex, Diners,
        # JCB, Visa, Discover, UnionPay), so a long tracking number is not taken for one.
        if not (whole_run and i == 0) and digits.digits[cum[i]] not in "23456":
            i += 1
            continue
        windows: dict[int, int] = {}  # digit count -> index of the last group
        for j in range(i, len(groups)):
            n = cum[j + 1] - cum[i]
            if n > 19:
                break
            if n >= 13:
                windows[n] = j
        hit = next(
            (
                end
                for n in _CARD_LENGTHS
                if (end := windows.get(n)) is not None and digits.luhn_ok(cum[i], cum[end + 1])
            ),
            None,
        )
        if hit is None:
            i += 1
            continue
        found.append((groups[i][0], groups[hit][1], digits.digits[cum[hit + 1] - 4 : cum[hit + 1]]))
        i = hit + 1
    return found


def _beside(text: str, start: int, end: int) -> list[tuple[int, int, str]]:
    """Codes and expiry dates written right after (or right before) a card number."""
    spans: list[tuple[int, int, str]] = []
    pos = end
    for _ in range(3):
        m = _AFTER.match(text, pos)
        if not m or m.start("tok") - end > 40:
            break
        spans.append((m.start("tok"), m.end("tok"), _label(m.group("tok"))))
        pos = m.end()
    window = max(0, start - 40)
    m = _BEFORE.search(text[window:start])
    if m:
        spans.append((window + m.start("tok"), window + m.end("tok"), _label(m.group("tok"))))
    return spans


def _label(token: str) -> str:
    return "[expiry]" if re.search(r"\D", token) else "[code]"


def mask_cards(text: str) -> str:
    spans: list[tuple[int, int, str]] = []
    for run in _RUN.finditer(text):
        for start, end, last4 in _cards_in_run(run):
            spans.append((start, end, f"[card ending {last4}]"))
    for start, end, _ in list(spans):
        spans.extend(_beside(text, start, end))
    for pattern, label in ((_LABELLED_CODE, "[code]"), (_LABELLED_EXPIRY, "[expiry]")):
        spans.extend((m.start("tok"), m.end("tok"), label) for m in pattern.finditer(text))
    if not spans:
        return text
    out: list[str] = []
    pos = 0
    for start, end, replacement in sorted(spans):
        if start < pos:  # overlaps one already replaced
            continue
        out.append(text[pos:start])
        out.append(replacement)
        pos = end
    out.append(text[pos:])
    return "".join(out)


@lru_cache(maxsize=64)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def mask_sensitive(text: str, extra_patterns: list[str] | tuple[str, ...] = ()) -> str:
    text = mask_cards(text)
    for pattern in extra_patterns:
        text = _compiled(pattern).sub("[redacted]", text)
    return text
