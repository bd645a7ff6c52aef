"""Picking the store's identifiers (order numbers, emails) out of what a shopper types.

A store's order number has a canonical form (its YAML `pattern` and `format`, e.g. `KD-318877`).
Shoppers type it as they like: `kd 318 877`, `#KD318877`, `KD - 318877`, `KD-3l8877` (l and O
for 1 and 0), or only the digits (`order 318877`). An entity with `lenient: true` reads all of
these as one order, but only where it cannot mistake something else for one: a spaced or repaired
form counts only with a prefix the store is known to use, and bare digits only when the prefix is
known and the digits have the store's length. The prefixes and lengths come from the YAML
(`prefixes:`), from the order numbers the store's own help pages show (learned at start), and
from order numbers written in full earlier in the chat. Prices, postcodes, phone numbers, sizes
and product names ("iPhone 15") have no known prefix, or not the store's length, and stay text."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from domain.storeconfig import Entity
from domain.templating import render

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_EMAIL_SPACED = re.compile(r"([A-Za-z0-9._%+-]+)\s+@\s*([A-Za-z0-9.-]+\.[A-Za-z]{2,})")

# A prefix (1-4 letters), optional separators, then digits that may be grouped by spaces or
# dashes and may carry l/I/O/o typed for 1/0. Not inside a word, an email or a longer code.
_LOOSE = re.compile(
    r"(?<![\w@.+/])#?\s?(?P<prefix>[A-Za-z]{1,4})\s{0,2}[-–#:./]?\s{0,2}"
    r"(?P<digits>\d[\dlIoO]*(?:[ -]?[\dlIoO]+)*)(?![\w@])"
)
# Digits only, with a cue that an order is meant: '#', or the word "order" in five languages.
_CUED_DIGITS = re.compile(
    r"(?:#\s?|\b(?:order|orders|bestellung|bestellnummer|pedido|commande|bestelling|"
    r"bestelnummer|ordernummer|nr|no|number|nummer|numero|número|n°)\.?\s{0,2}[#:]?\s{0,2})"
    r"(?P<digits>\d[\d ]{3,14}\d)(?![\w@.,])",
    re.IGNORECASE,
)
_BARE_DIGITS = re.compile(r"(?<![\w@.,+$€£#/-])(?P<digits>\d{6,12})(?![\w@%€$£]|[.,]\d)")
_REPAIR = str.maketrans({"l": "1", "I": "1", "o": "0", "O": "0"})
_ORDER_CUE = re.compile(r"order|bestell|pedido|commande|ordine|numéro|number|nummer", re.IGNORECASE)


def extract(entity: Entity, text: str) -> list[str]:
    """Every value of `entity` in `text` by its strict `pattern`, normalised by its `format` (so
    '#kd 318877' and 'KD-318877' are the same order), in order of appearance, without repeats."""
    return [v for _, v in _strict(entity, text)]


def _strict(entity: Entity, text: str) -> list[tuple[tuple[int, int], str]]:
    out: list[tuple[tuple[int, int], str]] = []
    for m in re.finditer(entity.pattern, text, flags=re.IGNORECASE):
        groups = {k: v or "" for k, v in m.groupdict().items()}
        value = render(entity.format, match=m.group(0), **groups).strip()
        if entity.upper:
            value = value.upper()
        if value and value not in [v for _, v in out]:
            out.append((m.span(), value))
    return out


def extract_emails(text: str) -> list[str]:
    text = _EMAIL_SPACED.sub(r"\1@\2", text)
    return list(dict.fromkeys(e.lower().rstrip(".") for e in EMAIL.findall(text)))


def _split(value: str) -> tuple[str, str] | None:
    """A canonical order number's letter prefix and digits (`KD-318877` -> KD, 318877)."""
    m = re.fullmatch(r"([A-Za-z]{1,4})\W?(\d{3,12})", value)
    return (m.group(1).upper(), m.group(2)) if m else None


@dataclass
class OrderNumbers:
    """Order numbers as shoppers type them, for one lenient entity."""

    entity: Entity
    prefixes: set[str] = field(default_factory=set)
    lengths: set[int] = field(default_factory=set)
    # What this turn already read: a turn reads its message several times (its actions, each
    # sentence's order, the reply), mostly with the same prefixes known. Emptied by `forget`
    # at the start of each turn, so a message is never read from an earlier one's work.
    _read: dict[tuple[str, frozenset[str], str | None], tuple[str, ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _matched: dict[str, list[tuple[tuple[int, int], str]]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        self.prefixes |= {p.upper().strip("-# ") for p in self.entity.prefixes}

    def forget(self) -> None:
        """Drop what earlier readings found (called as a turn starts; they stay correct, this
        only keeps them from piling up)."""
        self._read.clear()
        self._matched.clear()

    def _strict(self, text: str) -> list[tuple[tuple[int, int], str]]:
        """`_strict(self.entity, text)`, each text matched once per turn (read only)."""
        hit = self._matched.get(text)
        if hit is None:
            if len(self._matched) >= 256:
                self._matched.clear()
            hit = self._matched[text] = _strict(self.entity, text)
        return hit

    def learn(self, texts: Iterable[str]) -> None:
        """Prefixes and digit lengths from order numbers written in full in the store's own pages
        (only where an order is what the text talks about, not a product code)."""
        for text in texts:
            for (start, _), value in _strict(self.entity, text):
                parts = _split(value)
                if parts and _ORDER_CUE.search(text[max(0, start - 160) : start + 40]):
                    self.prefixes.add(parts[0])
                    self.lengths.add(len(parts[1]))
        self.forget()

    def _canonical(self, prefix: str, digits: str) -> str:
        for candidate in (f"{prefix}-{digits}", f"{prefix}{digits}", f"{prefix} {digits}"):
            found = self._strict(candidate)
            if found:
                return found[0][1]
        return f"{prefix}-{digits}"

    def _fits(self, digits: str) -> bool:
        return len(digits) in self.lengths if self.lengths else 4 <= len(digits) <= 10

    def _digits(self, raw: str, repair: bool) -> str | None:
        """The digits of a loose match, trimmed to the store's length when groups run on
        ('AB 480 771 2 pairs'); l/O repaired only when asked."""
        groups = re.split(r"[ -]", raw)
        if not repair and any(not g.isdigit() for g in groups):
            return None
        fixed = [g.translate(_REPAIR) for g in groups]
        if any(not g.isdigit() for g in fixed):
            return None
        if sum(c.isalpha() for c in raw) > 2:
            return None
        acc = ""
        for g in fixed:
            acc += g
            if self._fits(acc) and (not self.lengths or len(acc) == max(self.lengths)):
                return acc
        return acc if self._fits(acc) else None

    def extract(self, text: str, context: Iterable[str] = ()) -> list[str]:
        """Every order number in `text`, canonical, in order of appearance. `context`: order
        numbers already known in this conversation (their prefixes count as known)."""
        if not self.entity.lenient:
            return [v for _, v in self._strict(text)]
        known = set(self.prefixes)
        for value in context:
            parts = _split(value)
            if parts:
                known.add(parts[0])
        # Digits alone: only with exactly one prefix to give them (the chat's own, else the store's).
        chat = [p for p in (_split(v) for v in context) if p]
        prefix = chat[-1][0] if chat else (next(iter(known)) if len(known) == 1 else None)
        # The context counts only through these two, so a reading with the same is the same.
        key = (text, frozenset(known), prefix)
        hit = self._read.get(key)
        if hit is None:
            if len(self._read) >= 256:
                self._read.clear()
            hit = self._read[key] = tuple(self._extract(text, known, prefix))
        return list(hit)

    def _extract(self, text: str, known: set[str], prefix: str | None) -> list[str]:
        found: list[tuple[int, str]] = []
        taken: list[tuple[int, int]] = []
        strict = self._strict(text)

        def strict_at(span: tuple[int, int]) -> bool:
            return any(not (span[1] <= a or span[0] >= b) for (a, b), _ in strict)

        def free(span: tuple[int, int]) -> bool:
            return all(span[1] <= a or span[0] >= b for a, b in taken)

        for m in _LOOSE.finditer(text):
            letters = m.group("prefix").upper()
            if letters not in known:
                # An unknown prefix typed in capitals before digits of the store's own length
                # ("VB - 204518") is an order number too; anything else stays text, and its
                # digits are not read as a bare number either.
                plain = m.group("digits")
                if (
                    m.group("prefix").isupper()
                    and len(letters) >= 2
                    and self.lengths
                    and plain.replace(" ", "").replace("-", "").isdigit()
                    and len(plain.replace(" ", "").replace("-", "")) in self.lengths
                ):
                    digits = plain.replace(" ", "").replace("-", "")
                    found.append((m.start(), self._canonical(letters, digits)))
                    taken.append(m.span())
                elif m.group("prefix").isupper() and not strict_at(m.span()):
                    taken.append(m.span())  # another code ("TX 4711"): its digits stay its own
                continue
            digits = self._digits(m.group("digits"), repair=True)
            if digits:
                found.append((m.start(), self._canonical(letters, digits)))
                taken.append(m.span())
        for span, value in strict:
            if prefix and value.isdigit():
                continue  # read below with the prefix it lacks
            if free(span):
                parts = _split(value)
                if parts is None or parts[0] in known or not parts[1].isdigit():
                    found.append((span[0], value))
                    taken.append(span)
                elif self._fits(parts[1]) or not self.lengths:
                    found.append((span[0], value))
                    taken.append(span)
        if prefix:
            for pattern in (_CUED_DIGITS, _BARE_DIGITS):
                for m in pattern.finditer(text):
                    span = m.span("digits")
                    if not free(span):
                        continue
                    digits = m.group("digits").replace(" ", "")
                    if pattern is _BARE_DIGITS and not self.lengths:
                        continue
                    if self._fits(digits):
                        found.append((span[0], self._canonical(prefix, digits)))
                        taken.append(span)
        return list(dict.fromkeys(v for _, v in sorted(found)))
