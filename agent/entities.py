"""Picking the store's identifiers (order numbers, emails) out of what a shopper types."""

from __future__ import annotations

import re

from domain.storeconfig import Entity
from domain.templating import render

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")


def extract(entity: Entity, text: str) -> list[str]:
    """Every value of `entity` in `text`, normalised by its `format` (so '#kd 318877' and
    'KD-318877' are the same order), in order of appearance, without repeats."""
    out: list[str] = []
    for m in re.finditer(entity.pattern, text, flags=re.IGNORECASE):
        groups = {k: v or "" for k, v in m.groupdict().items()}
        value = render(entity.format, match=m.group(0), **groups).strip()
        if entity.upper:
            value = value.upper()
        if value and value not in out:
            out.append(value)
    return out


def extract_emails(text: str) -> list[str]:
    return list(dict.fromkeys(e.lower().rstrip(".") for e in EMAIL.findall(text)))
