"""Splitting at 4,096 characters and PTB's errors in the outbox's terms (no network here)."""

from __future__ import annotations

import datetime as dtm
import re

import pytest
from telegram.error import BadRequest, Forbidden, InvalidToken, NetworkError, RetryAfter, TimedOut

from bridges.telegram.channel import split_text, to_delivery_error, utf16_len


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


@pytest.mark.parametrize(
    "text",
    [
        "short",
        "\n".join(f"Line {i}: " + "word " * 30 for i in range(60)),  # lines
        " ".join(f"Sentence number {i} is here!" for i in range(600)),  # sentences, no newlines
        "x" * 9000,  # no bound at all: hard cuts
        "Paragraph one.\n\n" + "a " * 3000 + "\n\n" + "b " * 3000,
        "😀 smile. " * 1200,  # characters outside the BMP count twice for Telegram
    ],
)
def test_parts_fit_and_nothing_is_lost(text: str) -> None:
    parts = split_text(text)
    assert all(1 <= utf16_len(p) <= 4096 for p in parts)
    assert _squash("".join(parts)) == _squash(text)
    assert all(utf16_len(p) >= 2000 for p in parts[:-1])  # a bound is taken only if it is late


def test_cut_prefers_lines_then_sentences_then_spaces() -> None:
    lines = "\n".join(f"Line {i}: " + "word " * 30 for i in range(60))
    assert all(p.endswith("word") for p in split_text(lines)[:-1])  # at line ends
    prose = " ".join(f"Sentence number {i} is here!" for i in range(600))
    assert all(p.endswith("here!") for p in split_text(prose)[:-1])  # after a sentence
    words = "lorem " * 2000
    assert all(p.endswith("lorem") for p in split_text(words)[:-1])  # between words
    emoji = split_text("😀" * 3000)
    assert [utf16_len(p) for p in emoji] == [4096, 1904]  # 2,048 + 952 emoji, none broken


def test_ptb_errors_become_delivery_errors() -> None:
    e = to_delivery_error(RetryAfter(3))
    assert e.retry_after == 3 and not e.permanent
    assert to_delivery_error(RetryAfter(dtm.timedelta(seconds=7))).retry_after == 7
    assert to_delivery_error(RetryAfter(0)).retry_after == 1  # never a busy loop
    blocked = to_delivery_error(Forbidden("Forbidden: bot was blocked by the user"))
    assert blocked.permanent and blocked.blocked
    bad = to_delivery_error(BadRequest("Bad Request: chat not found"))
    assert bad.permanent and not bad.blocked
    for retryable in (
        TimedOut(),
        NetworkError("Bad Gateway"),
        InvalidToken("Unauthorized"),
        OSError("connection reset"),
    ):
        e = to_delivery_error(retryable)
        assert not e.permanent and not e.blocked and e.retry_after is None
    assert "s3cret" not in str(
        to_delivery_error(
            NetworkError("boom at /bots3cret/x"), lambda t: t.replace("s3cret", "<t>")
        )
    )
