"""The part of a passage that answers: its best sentences, list items or table rows.

A passage (a section under one heading) often answers several questions; quoting all of it buries
the answer, quoting a bare table row ("| 27.5 cm | 43 | 8.5 |") says nothing without its header.
So a passage is cut into units (sentences, list items with the line that introduces the list,
table rows with the table's header row), each unit is scored by the question's weighted terms it
contains (a number the shopper gave counts most: the row holding "27.5" is usually the answer),
and the best one to three units are quoted in page order."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from agent.query import Group, Query, stem, words_of
from agent.text import STOPWORDS

MAX_UNITS = 3
MAX_CHARS = 600


@dataclass(frozen=True)
class Unit:
    text: str
    kind: str  # "sentence" | "item" | "row"
    header: str | None  # a table's header row, or the line introducing a list
    stems: frozenset[str]
    numbers: frozenset[str]


_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(*])")
_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
_TABLE_RULE = re.compile(r"^\|?[\s:|-]+\|?$")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")


def _unit(text: str, kind: str, header: str | None) -> Unit:
    # A row is quoted with its header, so the header's words count for it ("| Spain | 4 days |"
    # answers "how long to Spain" through the "Delivery time" column).
    words = words_of(f"{header} {text}" if kind == "row" and header else text)
    stems = frozenset(stem(w) for w in words if w not in STOPWORDS)
    return Unit(text, kind, header, stems, frozenset(_NUMBER.findall(text)))


def split_units(body: str) -> list[Unit]:
    units: list[Unit] = []
    header: str | None = None
    lead: str | None = None
    for raw in body.splitlines():
        line = raw.strip()
        if not line:
            header = None
            continue
        if line.startswith("|"):
            if _TABLE_RULE.fullmatch(line):
                continue
            if header is None:
                header = line
            else:
                units.append(_unit(line, "row", header))
            continue
        header = None
        if _ITEM.match(line):
            units.append(_unit(line, "item", lead))
            continue
        sentences = [s.strip() for s in _SENTENCE.split(line) if s.strip()]
        for s in sentences:
            units.append(_unit(s, "sentence", None))
        lead = line if line.endswith(":") and len(line) < 200 else None
    return units


def quote(units: list[Unit], q: Query, idf: Callable[[Group], float]) -> str:
    """Best units for the question, in page order, each row with its header, each item with its
    lead-in line."""
    if not units:
        return ""

    weights = [g.weight * idf(g) for g in q.groups]
    top = max(weights, default=1.0)

    def gain(u: Unit, covered: set[int]) -> float:
        s = sum(
            w * (0.25 if j in covered else 1.0)
            for j, (g, w) in enumerate(zip(q.groups, weights, strict=True))
            if g.stems & u.stems
        )
        return s + sum(3.0 * top for n in q.numbers if n in u.numbers)

    covered: set[int] = set()
    chosen: list[int] = []
    best_gain = 0.0
    for _ in range(MAX_UNITS):
        scored = [(gain(u, covered), -i) for i, u in enumerate(units) if i not in chosen]
        if not scored:
            break
        g, neg_i = max(scored)
        if g <= 0 or (chosen and g < 0.5 * best_gain):
            break
        best_gain = max(best_gain, g)
        chosen.append(-neg_i)
        covered |= {j for j, g in enumerate(q.groups) if g.stems & units[-neg_i].stems}
    if not chosen:
        chosen = [0]
    else:
        # Table rows that answer exactly as well as the best one are alternatives the shopper
        # needs to see too ("Ireland": the Northern Ireland row and the Republic of Ireland row).
        top_gain = gain(units[chosen[0]], set())
        for i, u in enumerate(units):
            if len(chosen) >= MAX_UNITS:
                break
            if u.kind == "row" and i not in chosen and gain(u, set()) >= top_gain > 0:
                chosen.append(i)
    lines: list[str] = []
    for i in sorted(chosen):
        u = units[i]
        if u.header and u.header not in lines:
            lines.append(u.header)
        if u.text not in lines:
            lines.append(u.text)
        if sum(len(x) for x in lines) > MAX_CHARS:
            break
    return "\n".join(lines)
