"""Correction that teaches, outside Slack: which tag stands for which intent (read from the rule
pack), which message a correction labels, retags in the web inbox, and accepted examples joining
the classifier at the next start."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from agent.classifier import shipped_intents
from core.corrections import Prompts, condition_intents, request_message, tag_intents
from domain.ports import MessageView
from domain.storeconfig import load_config
from tests.cli import run_cli
from tests.conftest import inbox_login, services, signed

REMORSE = "That charge from last night should never have happened, I changed my mind about the jacket"


def test_a_tag_stands_for_the_intents_its_rules_cannot_match_without() -> None:
    assert tag_intents(load_config()) == {
        "cancellation": ("cancel",),
        "flash-cancellation": ("cancel",),
        "fraud-review": ("fraud", "identity"),  # either: the reviewer sees both
        # its order-data rule teaches nothing; `payment_at_checkout` is read from a payment
        # problem's sentence (agent/intent_data/payment_stage), no intent of the classifier
        "payment-failure": ("payment_at_checkout", "payment_problem"),
        "price-override": ("price_override",),
        "human-requested": ("human",),
        # vip: "orders or orders_named or 'human' in intents or tags" holds without an intent
    }
    assert condition_intents("'cancel' in order.intents and not order.sale") == ("cancel",)
    assert condition_intents("'fraud' in intents or 'identity' in intents") == ("fraud", "identity")
    assert condition_intents("orders or 'human' in intents") is None
    assert condition_intents("'cancel' not in intents") is None
    # With the classifier's intents (as the service builds it), a correction to payment-failure
    # labels the message a payment problem.
    assert tag_intents(load_config(), known=shipped_intents())["payment-failure"] == (
        "payment_problem",
    )
    assert tag_intents(load_config(), known={"cancel"}) == {
        "cancellation": ("cancel",),
        "flash-cancellation": ("cancel",),
    }


def _history(*turns: tuple[str, str]) -> list[MessageView]:
    start = datetime(2026, 11, 25, 11, 0, tzinfo=UTC)
    return [
        MessageView(i, 1, role, text, None, start + timedelta(seconds=i))
        for i, (role, text) in enumerate(turns, 1)
    ]


def test_the_example_is_the_request_not_an_answer_to_the_agents_question() -> None:
    config = load_config()
    prompts = Prompts.of(config)
    order_prompt = config.entities["order_number"].prompt
    later = datetime(2026, 11, 26, tzinfo=UTC)

    offered = _history(
        ("shopper", "Do you sell gift cards?"),
        ("agent", config.messages.offer_human),
        ("shopper", "yes please, that would be great, thank you so much"),
        ("agent", "Thanks for your patience."),
    )
    assert request_message(offered, later, prompts).text == "Do you sell gift cards?"

    asked = _history(
        ("shopper", "I want to swap the size of my trainers"),
        ("agent", order_prompt),
        ("shopper", "it's FP-100234"),
        ("agent", "Thanks for your patience."),
    )
    assert request_message(asked, later, prompts).text == "I want to swap the size of my trainers"

    # An answer that says more than the number asked for is the request itself.
    said_more = _history(
        ("shopper", "where is my order?"),
        ("agent", order_prompt),
        ("shopper", "FP-100234, and actually please cancel it, I found it cheaper"),
        ("agent", "Thanks for your patience."),
    )
    assert request_message(said_more, later, prompts).text.startswith("FP-100234, and actually")

    # The agent's reply in the handoff turn names the message it answered, even when the
    # shopper wrote again while the agent was still thinking.
    raced = _history(
        ("shopper", "Can I talk to a person please?"),
        ("shopper", "hello?"),
        ("agent", "Thanks for your patience."),
    )
    raced[2] = MessageView(3, 1, "agent", raced[2].text, None, raced[2].created_at, {"reply_to": 1})
    assert request_message(raced, later, prompts).text == "Can I talk to a person please?"


async def _shopper(client: TestClient, *texts: str, email: str = "ann@example.com") -> int:
    data = await (await client.post("/api/conversations", json=signed(email, name="Ann"))).json()
    cid, token = data["conversation_id"], data["token"]
    for i, text in enumerate(texts):
        resp = await client.post(
            f"/api/conversations/{cid}/messages?token={token}", json={"text": text, "client_id": f"c{i}"}
        )
        assert resp.status in (200, 201)
        await services(client).core.idle()
    return int(cid)


async def _command(client: TestClient, who: dict[str, str], cid: int, command: str, *args: str) -> Any:
    resp = await client.post(
        f"/inbox/api/conversations/{cid}/command", json={"command": command, "args": list(args)}, headers=who
    )
    return resp.status, await resp.json()


async def _examples(status: str = "all") -> list[dict[str, Any]]:
    code, out = await run_cli("examples", "list", "--status", status, "--json")
    assert code == 0
    return list(json.loads(out))


async def test_a_retag_in_the_web_inbox_teaches_the_agent_from_its_next_start(
    make_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await make_client()
    monkeypatch.setenv("DATABASE_URL", services(client).settings.database_url)
    maria = await inbox_login(client)
    cid = await _shopper(client, REMORSE)
    assert (await services(client).core.get(cid)).tags == ("fraud-review",)

    status, _ = await _command(client, maria, cid, "tag", "+cancellation", "-fraud-review")
    assert status == 200
    [example] = await _examples()
    assert (example["text"], example["label"], example["actor"]) == (REMORSE, "cancel", "Maria Lopez")
    assert example["change"] == ["-fraud-review", "+cancellation"]

    # Until someone accepts it, a restart changes nothing. A restart stops the old service
    # first: left running on the one SQLite file, its sweep (every 5 s) could take up the next
    # service's message with the old classifier, as it did once on a loaded machine.
    await client.close()
    restarted = await make_client()
    again = await _shopper(restarted, REMORSE, email="bo@example.com")
    assert (await services(restarted).core.get(again)).tags == ("fraud-review",)

    assert (await run_cli("examples", "accept", str(example["id"])))[0] == 0
    await restarted.close()
    restarted = await make_client()
    taught = await _shopper(restarted, REMORSE, "It's FP-100234")
    conv = await services(restarted).core.get(taught)
    assert conv.tags == ("cancellation",) and conv.state == "queued"
    said = [m.text for m in await services(restarted).core.history(taught) if m.role == "agent"]
    assert said[0] == load_config().entities["order_number"].prompt  # asked, as for any cancellation


async def test_which_retags_teach_and_which_do_not(make_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    client = await make_client()
    monkeypatch.setenv("DATABASE_URL", services(client).settings.database_url)
    maria = await inbox_login(client)

    asked = await _shopper(client, "Can I talk to a person please?")
    assert (await _command(client, maria, asked, "tag", "+vip"))[0] == 200
    assert await _examples() == []  # a routing tag says nothing about the shopper's words
    await _command(client, maria, asked, "tag", "-human-requested")
    [example] = await _examples()
    assert (example["label"], example["status"]) == ("none", "pending")
    await _command(client, maria, asked, "tag", "+human-requested")  # changed their mind
    assert [e["status"] for e in await _examples()] == ["superseded"]

    # Two requests, one tag taken off: the message still asks for the other, so it is no
    # example of "none".
    both = await _shopper(client, "Can I talk to a person please? Also I want to cancel FP-100234")
    tags = (await services(client).core.get(both)).tags
    assert {"cancellation"} <= set(tags)
    await _command(client, maria, both, "tag", "-cancellation")
    assert len(await _examples()) == 1

    # Nothing to correct where the assistant never handed off; the button is refused.
    chat = await _shopper(client, "How long does delivery to Germany take?")
    status, body = await _command(client, maria, chat, "wrong")
    assert status == 409 and body["error"] == f"The assistant did not hand off #{chat}."
