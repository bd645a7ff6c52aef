"""Handoff judgment on conversations written for these tests (a different store and wording from
the evaluation data), played through the real core by the same harness as `handoff eval`."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agent.rules import Decision, Match, expectation_message
from bot.evaluate import run_eval
from domain.storeconfig import Rule, StoreConfig

KNOWLEDGE = Path(__file__).resolve().parent.parent / "examples" / "flash-sale" / "knowledge"


def order(
    number: str,
    email: str,
    *,
    status: str = "paid",
    pay: str = "paid",
    sale: str | None = None,
    stock: int = 5,
) -> dict[str, Any]:
    return {
        "number": number,
        "email": email,
        "status": status,
        "payment_status": pay,
        "sale": sale,
        "total": 80.0,
        "currency": "EUR",
        "placed_at": "2026-11-21T10:00:00Z",
        "items": [{"sku": "S1", "name": "Arc Low", "qty": 1, "stock": stock}],
    }


def customer(email: str, tier: str = "regular") -> dict[str, Any]:
    return {"email": email, "tier": tier, "lifetime_orders": 3, "lifetime_value": 300.0}


def scenario(
    sid: str,
    turns: list[str],
    *,
    tags: list[str],
    by_turn: int | None = None,
    orders: list[dict[str, Any]] = (),
    email: str | None = "max@example.com",
    tier: str = "regular",
    channel: str = "widget",
    kb: str | None = None,
) -> dict[str, Any]:
    owner = "max@example.com"
    return {
        "id": sid,
        "channel": channel,
        "customer": {"name": "Max", **({"email": email} if email else {})},
        "shop": {
            "orders": {o["number"]: o for o in orders},
            "customers": {owner: customer(owner, tier)},
        },
        "turns": turns,
        "expect": {
            "escalate": bool(tags),
            "tags": tags,
            "by_turn": by_turn if tags else None,
            "kb_source": kb,
        },
    }


M = "max@example.com"
SCENARIOS = [
    scenario(
        "payment-declined",
        ["My card keeps getting declined for order fp-200001, what's wrong?"],
        tags=["payment-failure"],
        by_turn=1,
        orders=[order("FP-200001", M, status="pending", pay="failed")],
    ),
    scenario(
        "payment-reported-asks-order",
        ["The payment failed but my bank still took the money", "it's FP-200002"],
        tags=["payment-failure"],
        by_turn=2,
        orders=[order("FP-200002", M, status="pending", pay="failed")],
        email=None,
        channel="telegram",
    ),
    scenario(
        "cancel-typo",
        ["pls cancle order FP-200003, ordered twice by mistake"],
        tags=["cancellation"],
        by_turn=1,
        orders=[order("FP-200003", M)],
    ),
    scenario(
        "cancel-drop-order",
        ["Could you cancel FP-200004? I bought it in the Friday drop but changed my mind"],
        tags=["flash-cancellation", "cancellation"],
        by_turn=1,
        orders=[order("FP-200004", M, sale="friday-drop-48")],
    ),
    scenario(
        "cancel-asks-order-first",
        ["I want to cancel my order", "FP-200005"],
        tags=["cancellation"],
        by_turn=2,
        orders=[order("FP-200005", M)],
    ),
    scenario(
        "out-of-stock",
        ["Why is FP-200006 still not shipped?"],
        tags=["out-of-stock"],
        by_turn=1,
        orders=[order("FP-200006", M, stock=0)],
    ),
    scenario(
        "price-honour",
        [
            "The drop ended five minutes ago, I was still in checkout",
            "Could you honour the drop price for me?",
        ],
        tags=["price-override"],
        by_turn=2,
    ),
    scenario(
        "fraud-hacked",
        ["Someone hacked my account and placed an order I never made"],
        tags=["fraud-review"],
        by_turn=1,
    ),
    scenario(
        "identity-check",
        ["The courier says you need to verify my identity before delivery"],
        tags=["fraud-review"],
        by_turn=1,
    ),
    scenario(
        "dispute-fact",
        ["What's happening with FP-200007?"],
        tags=["fraud-review"],
        by_turn=1,
        orders=[order("FP-200007", M, status="shipped", pay="disputed")],
    ),
    scenario(
        "vip-order",
        ["Hi, can you check FP-200008 for me?"],
        tags=["vip"],
        by_turn=1,
        orders=[order("FP-200008", M)],
        tier="vip",
    ),
    scenario(
        "vip-plus-problem",
        ["Payment for FP-200009 was rejected"],
        tags=["vip", "payment-failure"],
        by_turn=1,
        orders=[order("FP-200009", M, status="pending", pay="failed")],
        tier="vip",
    ),
    scenario(
        "two-orders",
        ["Both FP-200010 and FP-200011 are stuck, neither shipped"],
        tags=["multi-order", "out-of-stock"],
        by_turn=1,
        orders=[order("FP-200010", M, stock=0), order("FP-200011", M, stock=0)],
    ),
    scenario(
        "person", ["connect me with a human agent please"], tags=["human-requested"], by_turn=1
    ),
    scenario(
        "person-after-faq",
        ["How long do I have to return shoes?", "ok, I'd like to speak to someone from your team"],
        tags=["human-requested"],
        by_turn=2,
        kb="returns.md",
    ),
    # Conversations that must stay with the AI.
    scenario(
        "no-cancel-negated",
        ["I don't want to cancel anything, just tell me when FP-200012 ships"],
        tags=[],
        orders=[order("FP-200012", M, sale="friday-drop-48")],
    ),
    scenario(
        "payment-question",
        ["Did the payment for FP-200013 go through?"],
        tags=[],
        orders=[order("FP-200013", M)],
    ),
    scenario(
        "hypothetical-payment",
        ["What happens if my payment fails during a drop?"],
        tags=[],
        kb="payments.md",
    ),
    # This store's pages say nothing about student discounts: the agent says it is not sure and
    # offers a person rather than quoting a passage that merely mentions drops; "yes" hands off.
    scenario(
        "discount-policy",
        ["Does the student discount apply to drop items?", "yes please"],
        tags=["human-requested"],
        by_turn=2,
    ),
    scenario("faq-shipping", ["How much is shipping to Belgium?"], tags=[], kb="shipping.md"),
    scenario("faq-size", ["My foot is 26 cm long, which size?"], tags=[], kb="sizing.md"),
    scenario(
        "status-unproved",
        ["where is my order?", "FP-200014"],
        tags=[],
        orders=[order("FP-200014", M, status="shipped")],
        email=None,
        channel="telegram",
    ),
    scenario("vip-faq-only", ["How do I reset my password?"], tags=[], tier="vip", kb="account.md"),
]


@pytest.fixture(scope="module")
def report(store_config_module: StoreConfig) -> Any:
    import asyncio

    return asyncio.run(run_eval(SCENARIOS, KNOWLEDGE, store_config_module))


@pytest.fixture(scope="module")
def store_config_module() -> StoreConfig:
    from domain.storeconfig import load_config

    return load_config()


@pytest.mark.parametrize("sc", SCENARIOS, ids=[s["id"] for s in SCENARIOS])
def test_handoff_judgment(report: Any, sc: dict[str, Any]) -> None:
    result = next(r for r in report.results if r.id == sc["id"])
    transcript = "\n".join(f"{role}: {text}" for role, text in result.transcript)
    assert result.failures == [], transcript


def test_unproved_order_reveals_nothing(report: Any) -> None:
    result = next(r for r in report.results if r.id == "status-unproved")
    replies = " ".join(t for role, t in result.transcript if role == "agent")
    assert "shipped" not in replies and "email" in replies.lower()


def test_handoff_carries_summary_and_context(report: Any) -> None:
    result = next(r for r in report.results if r.id == "vip-plus-problem")
    assert result.escalated_turn == 1


def _decision(*rules: Rule) -> Decision:
    return Decision(matches=[Match(r, "x") for r in rules])


def test_expectation_message_uses_sla_and_business_hours(store_config: StoreConfig) -> None:
    cfg = store_config.model_copy(deep=True)
    cfg.store.hours.days = ["mon", "tue", "wed", "thu", "fri"]
    cfg.store.hours.timezone = "UTC"
    vip = Rule.model_validate({"name": "vip", "if": "true", "tags": ["vip"], "sla_minutes": 5})
    plain = Rule.model_validate({"name": "p", "if": "true", "tags": ["cancellation"]})
    tuesday_noon = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    text, sla = expectation_message(cfg, _decision(plain), {}, tuesday_noon)
    assert sla == cfg.store.sla_minutes and f"{sla} minutes" in text
    text, sla = expectation_message(cfg, _decision(plain, vip), {}, tuesday_noon)
    assert sla == 5 and "5 minutes" in text
    saturday = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    text, _ = expectation_message(cfg, _decision(plain), {}, saturday)
    assert "offline" in text and "Monday" in text
