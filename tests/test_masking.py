"""Card numbers as shoppers really type or paste them, and what they write beside them.

Each case is one a hostile-shopper review found getting through: the number must never reach
the database, the inbox, Slack or an LLM, so the masking itself is checked here and its use on
every field at intake in tests/test_hostile_intake.py."""

from __future__ import annotations

import time

import pytest

from domain.masking import luhn_ok, mask_sensitive

VISA = "4111111111111111"


@pytest.mark.parametrize(
    "text",
    [
        "4111.1111.1111.1111",
        "4111  1111  1111  1111",  # double spaces
        "4111\u200b1111\u200b1111\u200b1111",  # zero-width spaces
        "4111\u200d1111\u20601111\ufeff1111",  # other invisible joiners
        "4111_1111_1111_1111",
        "4111/1111/1111/1111",
        "4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1",
        "4111 - 1111 - 1111 - 1111",
        "4111\u00a01111\u00a01111\u00a01111",  # no-break spaces
        "４１１１ １１１１ １１１１ １１１１",  # full-width digits
    ],
)
def test_a_card_number_with_any_separator_is_masked(text: str) -> None:
    masked = mask_sensitive(f"my card is {text} thanks")
    assert masked.startswith("my card is [card ending ") and masked.endswith("] thanks")
    digits = "".join(ch for ch in masked if ch.isdigit())
    assert len(digits) == 4  # only the last four are left


@pytest.mark.parametrize(
    ("text", "gone"),
    [
        ("4111 1111 1111 1111 exp 12/27 cvv 123", ["12/27", "123"]),
        ("4111111111111111, 12/2027, 123", ["12/2027", "123"]),
        ("4111-1111-1111-1111 09/28 4321", ["09/28", "4321"]),
        ("card: 4111 1111 1111 1111 (expiry 1/29, security code 777)", ["1/29", "777"]),
        ("exp 03/30 cvc 555 number 5500 0000 0000 0004", ["03/30", "555"]),
        ("the CVV is 246", ["246"]),
    ],
)
def test_a_security_code_or_expiry_beside_the_number_is_masked(text: str, gone: list[str]) -> None:
    masked = mask_sensitive(text)
    for part in gone:
        assert part not in masked, masked


@pytest.mark.parametrize(
    "text",
    [
        "4111 1111 1111 1112",  # fails Luhn: not a card
        "order FP-100234, 2 items, total 89.00, placed 2026-11-20",
        "the offer expires 12/25 and my order is 100234",
        "call me on +31 20 123 4567",
        "tracking 9400 1000 0000 0000 0000 00",
        "I'd like 123 of them",
    ],
)
def test_ordinary_numbers_are_left_alone(text: str) -> None:
    assert mask_sensitive(text) == text


def test_the_card_inside_a_longer_run_of_digits_is_found() -> None:
    masked = mask_sensitive("order 100234 4111 1111 1111 1111")
    assert masked == "order 100234 [card ending 1111]"


def test_masking_is_stable_when_applied_again() -> None:
    once = mask_sensitive(f"{VISA} 12/27 123, IBAN DE44500105175407324931", [r"\bDE\d{20}\b"])
    assert mask_sensitive(once, [r"\bDE\d{20}\b"]) == once
    assert "DE44" not in once and "4111" not in once


def test_hostile_input_costs_milliseconds() -> None:
    # A 4,000-character message of separated digits has thousands of candidate windows.
    for text in ("4 " * 2000, "1." * 2000, "4111 1111 1111 1111 " * 200, "cvv " * 1000):
        start = time.perf_counter()
        mask_sensitive(text)
        assert time.perf_counter() - start < 0.5


def test_luhn() -> None:
    assert luhn_ok(VISA) and luhn_ok("378282246310005") and not luhn_ok("4111111111111112")
