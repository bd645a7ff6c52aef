"""Strings from outside are cleaned before anything stores or shows them.

A NUL cannot be stored in PostgreSQL text, and a lone surrogate (JSON's `"\\ud800"`) cannot be
encoded as UTF-8 by asyncpg or sqlite3: either turned a shopper's message into a 500 with a
traceback. Other control characters (but tab, newline and carriage return) only ever hide text
from the person reading it."""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def clean_string(text: str) -> str:
    """Control characters dropped, lone surrogates replaced by U+FFFD (the "unknown character")."""
    return _SURROGATE.sub("\ufffd", _CONTROL.sub("", text))


def clean_optional(text: str | None, limit: int) -> str | None:
    """A short optional field (a name, an email): cleaned, trimmed, at most `limit` characters."""
    if text is None:
        return None
    return clean_string(str(text)).strip()[:limit] or None
