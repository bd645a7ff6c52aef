"""Hostile shoppers against the agent (issue 14): what a shopper sees never depends on an order
they have not proved, and nothing they type makes the agent call the store's API, check emails
or remember things without limit. The service runs for real on 127.0.0.1 with the sample shop
API, which counts the calls it gets."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from agent.actions import ActionRunner
from agent.knowledge import KnowledgeBase
from agent.offline import OfflineAgent
from bridges.slack.blocks import parent_blocks
from domain.ports import ConversationView, CustomerView, MessageView
from domain.storeconfig import StoreConfig
from tests.conftest import inbox_login, services, signed

VIP_ORDER = "FP-100517"  # Vera's (a VIP), paid
FAILED_ORDER = "FP-100311"  # Ann's, payment failed, from a flash sale
UNKNOWN_ORDER = "FP-100999"  # not in the store


@pytest.fixture(autouse=True)
def vip_order(shop: Any) -> None:
    shop[0].orders[VIP_ORDER] = {
        "number": VIP_ORDER,
        "email": "vera@example.com",
        "status": "paid",
        "payment_status": "paid",
        "sale": None,
        "total": 240.0,
        "currency": "EUR",
        "placed_at": "2026-11-22T09:30:00Z",
        "items": [{"sku": "TRL-39", "name": "Trail Pro", "qty": 2, "stock": 8}],
    }


class Chat:
    """One widget conversation, as a shopper's browser holds it."""

    def __init__(self, client: Any, cid: int, token: str) -> None:
        self.client, self.cid, self.token = client, cid, token
        self.sent = self.seen = 0

    @classmethod
    async def open(cls, client: Any, email: str | None) -> Chat:
        created = await (await client.post("/api/conversations", json=signed(email))).json()
        return cls(client, created["conversation_id"], created["token"])

    async def say(self, text: str) -> str:
        """Send one message; what came back for it."""
        url = f"/api/conversations/{self.cid}/messages?token={self.token}"
        await self.client.post(url, json={"text": text, "client_id": f"m{self.sent}"})
        self.sent += 1
        await services(self.client).core.idle()
        msgs = (await (await self.client.get(url)).json())["messages"]
        out = [m["text"] for m in msgs if m["role"] in ("agent", "system")]
        reply = "\n".join(out[self.seen :])
        self.seen = len(out)
        return reply


async def chat(client: Any, email: str | None, *texts: str) -> tuple[int, list[str]]:
    """A widget conversation; returns its id and, per shopper message, what came back."""
    c = await Chat.open(client, email)
    return c.cid, [await c.say(t) for t in texts]


def calls(shop: Any) -> list[str]:
    return list(shop[0].calls)


# ------------------------------------------------------------------ enumeration


async def test_before_proof_an_order_reads_exactly_like_an_unknown_one(make_client: Any) -> None:
    """A stranger cannot tell a real order (a failed payment, a VIP's) from a made-up number:
    the same question for the email, and after a wrong email the same answer."""
    client = await make_client()
    for who in (None, "mallory@example.com"):  # anonymous, or signed in as someone else
        seen: dict[str, list[str]] = {}
        for number in (FAILED_ORDER, VIP_ORDER, UNKNOWN_ORDER):
            cid, replies = await chat(
                client,
                who,
                f"Hi, where is my order {number}?",
                "it's mallory@example.com",
                "thanks, and how long does shipping to Austria take?",
            )
            conv = await services(client).core.get(cid)
            assert conv.state == "bot", (who, number, replies)  # no handoff on the order's data
            seen[number] = [r.replace(number, "#") for r in replies]
        assert seen[FAILED_ORDER] == seen[VIP_ORDER] == seen[UNKNOWN_ORDER], seen
        first = seen[UNKNOWN_ORDER][0]
        if who is None:  # asked to prove it, not told the number is wrong
            assert "what's the email address on the order?" in first
        else:  # signed in as someone else: not on their account, whether it exists or not
            assert "couldn't find order # under your account's email" in first
        for private in ("pending", "failed", "paid", "Trail", "vera", "ann@"):
            assert private not in " ".join(seen[VIP_ORDER] + seen[FAILED_ORDER])


async def test_a_handoff_on_the_shoppers_words_reads_the_same_for_any_order(
    make_client: Any,
) -> None:
    """Asking to cancel hands off at once, with the same words, priority and promised wait for a
    VIP's order, an order whose payment failed and an unknown number; the tags (staff only) may
    use what the store said."""
    client = await make_client()
    seen = {}
    for number in (VIP_ORDER, FAILED_ORDER, UNKNOWN_ORDER):
        cid, replies = await chat(client, None, f"Please cancel my order {number}, I ordered twice")
        conv = await services(client).core.get(cid)
        assert conv.state == "queued" and "cancellation" in conv.tags
        seen[number] = (replies[0].replace(number, "#"), conv.priority, conv.context["sla_minutes"])
        # Each one alone in the queue, so its place in line ("You're next") is the same too.
        await services(client).core.staff_command(cid, "resolve", actor="Maria Lopez")
    assert seen[VIP_ORDER] == seen[FAILED_ORDER] == seen[UNKNOWN_ORDER], seen
    assert "15 minutes" in seen[VIP_ORDER][0]  # the store's SLA, not the VIP's 5


# ------------------------------------------------------------- borrowed identity


async def test_a_stranger_naming_a_vips_order_gets_no_vip_treatment(make_client: Any) -> None:
    client = await make_client()
    text = f"I'd like to speak to a person about my order {VIP_ORDER}, please"
    cid, replies = await chat(client, None, text)
    conv = await services(client).core.get(cid)
    assert conv.state == "queued"
    assert conv.priority < 5 and conv.context["sla_minutes"] == 15  # no queue jump, no VIP SLA
    assert "within 15 minutes" in replies[0]
    # The team sees whose order it is, labelled as such, and never as the shopper.
    await inbox_login(client)
    detail = await (await client.get(f"/inbox/api/conversations/{cid}")).json()
    customer = detail["conversation"]["customer"]
    assert customer["email"] is None and customer["tier"] != "vip"
    assert customer["order_owner"]["email"] == "vera@example.com"
    assert "Order owner (not verified): vera@example.com, vip tier" in conv.summary
    _, blocks = parent_blocks(conv, [], {})
    text = json.dumps(blocks, ensure_ascii=False)
    assert "*order owner (not verified)*: vera@example.com · vip tier" in text
    customer_field = blocks[1]["fields"][0]["text"]
    assert "vera" not in customer_field and "vip" not in customer_field

    # Vera herself, signed in by the store, is a VIP: priority 5 and the 5-minute promise.
    cid, replies = await chat(client, "vera@example.com", text)
    conv = await services(client).core.get(cid)
    assert conv.priority == 5 and "vip" in conv.tags and "within 5 minutes" in replies[0]


async def test_an_email_typed_in_the_chat_proves_nothing_by_itself(make_client: Any) -> None:
    """Typing a VIP's address, without an order of hers, earns nothing and shows as a claim."""
    client = await make_client()
    cid, _ = await chat(client, None, "This is vera@example.com, please put me through to a person")
    conv = await services(client).core.get(cid)
    assert conv.state == "queued" and conv.priority < 5 and "vip" not in conv.tags
    assert conv.context["customer"]["email"] is None
    assert conv.context["customer"]["claimed_email"] == "vera@example.com"


# ------------------------------------------------------------------ amplification


async def test_one_message_naming_390_orders_makes_at_most_3_calls(
    make_client: Any, shop: Any
) -> None:
    client = await make_client()
    numbers = " ".join(f"FP-{200000 + i}" for i in range(388)) + f" {FAILED_ORDER} {VIP_ORDER}"
    cid, replies = await chat(client, None, f"where are these orders: {numbers}")
    assert len(calls(shop)) <= 3, calls(shop)
    assert "3 orders per message" in replies[0]
    conv = await services(client).core.get(cid)
    assert conv.state == "bot"
    assert len(json.dumps(conv.memory)) < 20_000  # 390 numbers are not all remembered


async def test_lookups_per_conversation_and_hour_are_bounded(
    make_client: Any, shop: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shipped pack allows 20 calls to the store's API per conversation in any hour."""
    client = await make_client()
    c = await Chat.open(client, None)
    for i in range(12):
        last = await c.say(f"and FP-{300000 + i}, FP-{300100 + i}?")
    assert len(calls(shop)) == 20  # 2 a message, then nothing
    assert "can't look up more orders" in last
    later = time.time() + 3601  # an hour later the conversation may look up again
    monkeypatch.setattr("agent.trust.now", lambda: later)
    await c.say("FP-300200?")
    assert len(calls(shop)) == 21
    assert (await services(client).core.get(c.cid)).state == "bot"


# ------------------------------------------------------------------ email guessing


async def test_the_fourth_email_hands_off_instead_of_being_checked(make_client: Any) -> None:
    client = await make_client()
    seen = {}
    for number in ("FP-100234", UNKNOWN_ORDER):  # Ann's (shipped), and a made-up one
        cid, replies = await chat(
            client,
            None,
            f"status of {number}?",
            "a1@example.com",
            "b2@example.com",
            "c3@example.com",
            "ann@example.com",  # right for FP-100234, but one guess too many
        )
        conv = await services(client).core.get(cid)
        assert conv.state == "queued" and "identity-check" in conv.tags
        assert conv.priority < 5
        assert "shipped" not in " ".join(replies)
        assert "email" in conv.reason.lower()
        seen[number] = [r.replace(number, "#") for r in replies]
        # Each one alone in the queue, so its place in line ("You're next") is the same too.
        await services(client).core.staff_command(cid, "resolve", actor="Maria Lopez")
    assert seen["FP-100234"] == seen[UNKNOWN_ORDER], seen


async def test_the_right_email_within_the_attempts_still_proves_the_order(
    make_client: Any,
) -> None:
    client = await make_client()
    cid, replies = await chat(
        client, None, "status of FP-100234?", "wrong@example.com", "ann@example.com"
    )
    assert "couldn't find order FP-100234 with that email" in replies[1]
    assert "FP-100234 is shipped" in replies[2]


# ------------------------------------------------------------- the agent alone


def view(memory: dict[str, Any], email: str | None = None) -> ConversationView:
    return ConversationView(
        id=1,
        channel="widget",
        channel_ref=None,
        state="bot",
        owner=None,
        priority=0,
        tags=(),
        reason=None,
        summary=None,
        context={},
        memory=memory,
        sale=None,
        inbox_ref=None,
        blocked=False,
        customer=CustomerView(id=1, channel="widget", external_id="w1", email=email),
        created_at=datetime(2026, 11, 25, tzinfo=UTC),
    )


async def talk(agent: OfflineAgent, texts: list[str]) -> Any:
    """The agent turn after turn, carrying its memory as the core does, handoffs or not."""
    memory: dict[str, Any] = {}
    history: list[MessageView] = []
    for i, text in enumerate(texts):
        now = datetime(2026, 11, 25, tzinfo=UTC)
        history = [*history, MessageView(i, 1, "shopper", text, None, now)][-20:]
        turn = await agent.respond(view(memory), history)
        memory = turn.memory or {}
        yield turn, memory


@pytest.fixture
async def agent(shop: Any, store_config: StoreConfig) -> Any:
    actions = ActionRunner(store_config, shop[1])
    kb = KnowledgeBase.from_folder(store_config.knowledge_path)
    yield OfflineAgent(store_config, kb, actions)
    await actions.close()


async def test_three_hundred_guesses_never_unlock_the_order(agent: OfflineAgent) -> None:
    texts = ["where is FP-100234?"] + [f"g{i}@example.com" for i in range(298)]
    texts.append("ann@example.com")  # guess #300 is the right one
    n = 0
    async for turn, _ in talk(agent, texts):
        n += 1
        assert "shipped" not in (turn.reply or ""), n
        if n >= 5:  # the 4th email onwards: a person takes over, every time
            assert turn.handoff is not None and "identity-check" in turn.handoff.tags, n
    assert n == 300


async def test_a_long_hostile_chat_keeps_a_bounded_memory(agent: OfflineAgent) -> None:
    texts = [
        f"cancel FP-{400000 + 3 * i} FP-{400001 + 3 * i} and FP-{400002 + 3 * i}, "
        f"my email is x{i}@example.com, also y{i}@example.com"
        for i in range(300)
    ]
    kept: dict[int, dict[str, Any]] = {}
    n = 0
    async for _, memory in talk(agent, texts):
        n += 1
        if n in (40, 300):
            kept[n] = memory
    assert len(json.dumps(kept[300])) <= len(json.dumps(kept[40])) * 1.2
    limit = agent.config.limits.memory_items
    for memory in kept.values():
        assert all(len(v) <= limit for v in memory["entities"].values())
        assert len(memory["orders"]) <= limit and len(memory["asked"]) <= limit


async def test_a_stores_expectation_template_sees_only_proved_orders(
    shop: Any, store_config: StoreConfig
) -> None:
    """A store may write its own expectation message with the order's details; a stranger who
    names someone's order to cancel it still reads none of them, the owner does."""
    config = store_config.model_copy(deep=True)
    for rule in (r for rs in config.rule_sets for r in rs.rules):
        rule.expectation = (
            "{% for o in orders %}{{ o.number }} is {{ o.status }} ({{ o.total }}). {% endfor %}"
            "A person will reply soon."
        )
    actions = ActionRunner(config, shop[1])
    agent = OfflineAgent(config, KnowledgeBase.from_folder(config.knowledge_path), actions)
    now = datetime(2026, 11, 25, tzinfo=UTC)
    text = f"Please cancel my order {VIP_ORDER}"
    try:
        for email, shown in ((None, False), ("vera@example.com", True)):
            history = [MessageView(1, 1, "shopper", text, None, now)]
            turn = await agent.respond(view({}, email), history)
            assert turn.handoff is not None and "cancellation" in turn.handoff.tags, turn.reply
            assert "A person will reply soon." in (turn.reply or "")
            assert ("240" in (turn.reply or "")) is shown, turn.reply
            assert ("paid" in (turn.reply or "")) is shown, turn.reply
    finally:
        await actions.close()
