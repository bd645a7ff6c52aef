"""Card numbers (and store-configured patterns) are masked at intake, before the text is stored,
shown in Slack or sent to an LLM: the raw number never exists anywhere after this."""

from __future__ import annotations

import re
from functools import lru_cache

# 13-19 digits, optionally grouped by spaces or dashes.
_CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")


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


def _mask_card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    if not 13 <= len(digits) <= 19 or not luhn_ok(digits):
        return match.group(0)
    return f"[card ending {digits[-4:]}]"


@lru_cache(maxsize=64)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def mask_sensitive(text: str, extra_patterns: list[str] | tuple[str, ...] = ()) -> str:
    text = _CARD.sub(_mask_card, text)
    for pattern in extra_patterns:
        text = _compiled(pattern).sub("[redacted]", text)
    return text
