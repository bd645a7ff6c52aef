"""What a shopper notices when the store's pages have no answer, and when they change their mind:
the agent says plainly it could not find it and offers a person; "yes" in any of five languages
hands off as their request (the rule pack's tag, `vip` for a VIP), "no" keeps the chat with the
agent, a second unanswered question in a row hands off as `unanswered`; a request still waiting
for the order number is taken back by "actually, never mind". Thresholds come from the YAML.
Conversations written for these tests (another order prefix and other wording than the
evaluation data), played through the real core with the default rule pack."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from bot.evaluate import run_eval
from domain.storeconfig import DEFAULT_CONFIG, StoreConfig, load_config, parse_config
from tests.test_rules import order, scenario

KNOWLEDGE = Path(__file__).resolve().parent.parent / "examples" / "flash-sale" / "knowledge"
M = "max@example.com"
# Nothing in the sneaker store's pages answers these.
UNANSWERED = "Do you offer gift wrapping with a handwritten card?"
UNANSWERED_2 = "Is there a loyalty card for students?"
OFFER = "Shall I get someone from the team?"


def play(scenarios: list[dict[str, Any]], config: StoreConfig | None = None) -> dict[str, Any]:
    report = asyncio.run(run_eval(scenarios, KNOWLEDGE, config or load_config()))
    return {r.id: r for r in report.results}


def replies(result: Any) -> list[str]:
    return [t for role, t in result.transcript if role == "agent"]


def with_yaml(extra: str) -> StoreConfig:
    return parse_config(DEFAULT_CONFIG.read_text(encoding="utf-8") + extra, DEFAULT_CONFIG)


@pytest.mark.parametrize("yes", ["yes please", "Ja, gerne", "sí", "oui, merci", "ja graag"])
def test_the_agent_offers_a_person_and_yes_hands_off_as_asked(yes: str) -> None:
    sc = scenario("accept", [UNANSWERED, yes], tags=["human-requested"], by_turn=2)
    result = play([sc])["accept"]
    assert result.failures == [], result.transcript
    first = replies(result)[0]
    assert OFFER in first and "help pages" in first


def test_no_thanks_keeps_the_chat_with_the_agent() -> None:
    sc = scenario("decline", [UNANSWERED, "no thanks", "How much is shipping to Belgium?"], tags=[])
    result = play([sc])["decline"]
    assert not result.escalated, result.transcript
    said = replies(result)
    assert OFFER in said[0] and "No problem" in said[1] and "(Source: shipping.md)" in said[2]


def test_a_second_unanswered_question_in_a_row_hands_off_as_unanswered() -> None:
    sc = scenario("twice", [UNANSWERED, UNANSWERED_2], tags=["unanswered"], by_turn=2)
    result = play([sc])["twice"]
    assert result.failures == [], result.transcript
    assert OFFER in replies(result)[0]


def test_a_store_can_hand_off_at_the_first_miss() -> None:
    from_yaml = parse_config(
        DEFAULT_CONFIG.read_text(encoding="utf-8").replace(
            "  handoff_after_misses: 2\n", "  handoff_after_misses: 1\n", 1
        ),
        DEFAULT_CONFIG,
    )
    assert from_yaml.knowledge.handoff_after_misses == 1
    sc = scenario("at-once", [UNANSWERED], tags=["unanswered"], by_turn=1)
    assert play([sc], from_yaml)["at-once"].failures == []


def test_a_vip_who_accepts_is_tagged_vip_not_unanswered() -> None:
    sc = scenario("vip", [UNANSWERED, "yes"], tags=["vip"], by_turn=2, tier="vip")
    result = play([sc])["vip"]
    assert result.failures == [], result.transcript


def test_a_request_after_the_offer_gets_its_rules_tag() -> None:
    sc = scenario(
        "then-cancel",
        [UNANSWERED, "Then please cancel ZQ-710001, I'll order elsewhere."],
        tags=["cancellation"],
        by_turn=2,
        orders=[order("ZQ-710001", M)],
    )
    result = play([sc])["then-cancel"]
    assert result.failures == [], result.transcript


@pytest.mark.parametrize(
    "take_back",
    [
        "actually never mind, I'll keep it",
        "Hat sich erledigt, ich behalte sie doch",
        "Olvídalo, al final me lo quedo",
    ],
)
def test_a_cancellation_taken_back_before_the_order_number_is_dropped(take_back: str) -> None:
    sc = scenario(
        "retract",
        ["I want to cancel my order", take_back, "it's ZQ-710002 by the way, where is it now?"],
        tags=[],
        orders=[order("ZQ-710002", M, status="shipped")],
    )
    result = play([sc])["retract"]
    assert not result.escalated, result.transcript
    said = replies(result)
    assert "order number" in said[0] and "leave it as it is" in said[1]
    assert "ZQ-710002 is shipped" in said[2]


def test_a_bare_no_to_the_order_number_question_takes_nothing_back() -> None:
    sc = scenario(
        "no-number",
        ["My card was charged but the checkout said the payment failed", "no, I don't have it"],
        tags=["payment-failure"],
        by_turn=2,
    )
    result = play([sc])["no-number"]
    assert result.failures == [], result.transcript


def test_per_intent_thresholds_are_read_from_the_yaml() -> None:
    story = ["Please cancel ZQ-710003, I ordered the wrong size."]
    orders = [order("ZQ-710003", M)]
    strict = with_yaml("\nintents:\n  cancel:\n    threshold: 0.999\n    fallback_threshold: 1.0\n")
    assert play([scenario("strict", story, tags=[], orders=orders)], strict)["strict"].failures == []
    default = scenario("default", story, tags=["cancellation"], by_turn=1, orders=orders)
    assert play([default])["default"].failures == []


def test_below_its_bar_a_request_names_the_handoff_after_two_misses() -> None:
    """With the cancel bar out of reach, the cancellation the unanswered messages hinted at (over
    its fallback bar, used only when a handoff happens anyway) explains the handoff instead of
    `unanswered`: the rule asks for the order number it needs and hands off with its tag."""
    story = [
        "I ordered the wrong size and want to cancel my order.",
        "Can you do that?",
        "ZQ-710004",
    ]
    orders = [order("ZQ-710004", M)]
    yaml = "\nintents:\n  cancel:\n    threshold: 0.999\n    fallback_threshold: {}\n"
    weak = with_yaml(yaml.format(0.2))
    weak.knowledge.min_confidence = 1.0  # no page answers
    sc = scenario("fallback", story, tags=["cancellation"], by_turn=3, orders=orders)
    result = play([sc], weak)["fallback"]
    assert result.failures == [], result.transcript
    assert "order number" in replies(result)[1]
    off = with_yaml(yaml.format(1.0))
    off.knowledge.min_confidence = 1.0
    sc = scenario("off", story, tags=["unanswered"], by_turn=2, orders=orders)
    result = play([sc], off)["off"]
    assert result.failures == [], result.transcript
