"""Order numbers as shoppers type them: one order however it is written, and never an order
made out of a price, a postcode, a phone number, a size or a product name."""

from __future__ import annotations

import pytest

from agent.entities import OrderNumbers, extract_emails
from domain.storeconfig import load_config

HELP_PAGE = "Where is my order? Your order number looks like AB-123456; it is in the confirmation email."


@pytest.fixture()
def reader() -> OrderNumbers:
    r = OrderNumbers(load_config().entities["order_number"])
    r.learn([HELP_PAGE])
    return r


@pytest.mark.parametrize(
    "typed",
    ["AB 477 015", "#AB477015", "ab 477 015", "Order 477015", "AB-477O15", "AB-4770l5",
     "AB - 477015", "ab477015", "#477015", "my order is 477015, thanks"],
)
def test_one_order_however_it_is_typed(reader: OrderNumbers, typed: str) -> None:
    assert reader.extract(typed) == ["AB-477015"]


@pytest.mark.parametrize(
    "text",
    [
        "it cost 129.99 and now 89.00",
        "I live at 10115 Berlin",
        "call me on +49 170 1234567",
        "size 42 please",
        "is the iPhone 15 case in stock?",
        "in 2024 I ordered twice",
        "the SKU is TX-12 in red",
        "I paid €129 on 12.11.2026",
    ],
)
def test_no_order_made_out_of_other_numbers(reader: OrderNumbers, text: str) -> None:
    assert reader.extract(text) == []


def test_prefix_learned_from_the_chat_reads_digits_later() -> None:
    r = OrderNumbers(load_config().entities["order_number"])  # nothing learned from pages
    assert r.extract("order 318877") == []  # no prefix known: digits alone are not an order
    assert r.extract("it's KD-318877") == ["KD-318877"]
    assert r.extract("and order 318878 too", context=["KD-318877"]) == ["KD-318878"]
    assert r.extract("kd 318 879", context=["KD-318877"]) == ["KD-318879"]


def test_prefix_from_the_yaml() -> None:
    entity = load_config().entities["order_number"].model_copy(update={"prefixes": ["ZX"]})
    assert OrderNumbers(entity).extract("zx 400 100 and #400101") == ["ZX-400100", "ZX-400101"]


def test_two_orders_stay_two(reader: OrderNumbers) -> None:
    assert reader.extract("AB 477 015 and ab-477016") == ["AB-477015", "AB-477016"]


def test_emails_as_typed() -> None:
    assert extract_emails("it's Ann.Lee@Example.com.") == ["ann.lee@example.com"]
    assert extract_emails("ann @ example.com") == ["ann@example.com"]
