"""Prepared writes through the web inbox's HTTP API with signed-in staff sessions, against the
sample shop API (which counts every write and honours its Idempotency-Key): the rules prepare a
flash-sale cancellation and a capped price-difference refund, an approver's click runs the write
once and the shopper is told, a failing store API is shown with its error, deny needs a note and
tells the shopper nothing, and someone not on the approvers list is refused."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from bot.shop_server import ShopData
from storage.models import PreparedAction
from tests.approval_orders import CANCEL_KEY, DROPPED, FLASH, add_orders, approval_config, cancels
from tests.conftest import inbox_login, services, signed


@pytest.fixture
async def client(make_client: Any, shop: tuple[ShopData, str]) -> TestClient:
    add_orders(shop[0])
    return await make_client(approval_config(inbox_staff=["Maria Lopez", "Sam Chen"]))


async def handed_off(client: TestClient, text: str, email: str | None = "ann@example.com") -> tuple[int, str]:
    body = signed(email, name="Ann")
    data = await (await client.post("/api/conversations", json=body)).json()
    cid, token = data["conversation_id"], data["token"]
    resp = await client.post(f"/api/conversations/{cid}/messages?token={token}", json={"text": text, "client_id": "1"})
    assert resp.status in (200, 201)
    await services(client).core.idle()
    assert (await services(client).core.get(cid)).state == "queued"
    return cid, token


async def prepared(client: TestClient, cid: int, who: dict[str, str]) -> list[dict[str, Any]]:
    resp = await client.get(f"/inbox/api/conversations/{cid}", headers=who)
    assert resp.status == 200
    return list((await resp.json())["conversation"]["context"]["prepared"])


async def history(client: TestClient, cid: int, who: dict[str, str]) -> list[tuple[str, str]]:
    data = await (await client.get(f"/inbox/api/conversations/{cid}", headers=who)).json()
    return [(m["role"], m["text"]) for m in data["messages"]]


async def shopper_sees(client: TestClient, cid: int, token: str) -> list[str]:
    data = await (await client.get(f"/api/conversations/{cid}/messages?token={token}")).json()
    return [m["text"] for m in data["messages"]]


async def decide(client: TestClient, cid: int, pid: int, verdict: str, who: dict[str, str], **body: Any) -> tuple[int, dict[str, Any]]:
    resp = await client.post(f"/inbox/api/conversations/{cid}/prepared/{pid}/{verdict}", json=body, headers=who)
    return resp.status, await resp.json()


async def test_an_approver_approves_and_the_shop_cancels_and_refunds_once(client: TestClient, shop: Any) -> None:
    cid, token = await handed_off(client, f"Please cancel my order {FLASH}, I ordered the wrong size")
    maria = await inbox_login(client, "Maria Lopez")
    [action] = await prepared(client, cid, maria)
    assert action["summary"] == f"Cancel order {FLASH} and refund 120.00 EUR"
    assert action["state"] == "prepared" and action["can_decide"] is True and action["seq"] == 1
    assert not shop[0].writes  # nothing runs before a person approves

    status, body = await decide(client, cid, action["id"], "approve", maria)
    assert status == 200 and body["text"].startswith(f"Approved #{cid}:1")
    await services(client).worker.drain()

    [write] = cancels(shop[0])
    assert write.key == CANCEL_KEY and write.status == 200
    assert shop[0].orders[FLASH]["status"] == "cancelled"
    assert [(r["order"], r["amount"]) for r in shop[0].refunds] == [(FLASH, 120.0)]
    [action] = await prepared(client, cid, maria)
    assert action["state"] == "done" and action["by"] == "Maria Lopez" and "re_0001" in action["result"]
    notes = [t for r, t in await history(client, cid, maria) if r == "note"]
    assert notes == [
        f"✅ Done: Cancel order {FLASH} and refund 120.00 EUR (approved by Maria Lopez). "
        "The store's API answered: refund re_0001, refunded 120.0."
    ]
    assert (await shopper_sees(client, cid, token))[-1].startswith(f"Your order {FLASH} is cancelled, and 120.00 EUR")

    # A second click finds it decided: nothing more reaches the shop.
    status, body = await decide(client, cid, action["id"], "approve", maria)
    assert status == 409 and "already approved and done by Maria Lopez" in body["error"]
    await services(client).worker.drain()
    assert len(cancels(shop[0])) == 1 and len(shop[0].refunds) == 1


async def test_two_people_approving_at_once_run_it_once(client: TestClient, shop: Any) -> None:
    cid, _ = await handed_off(client, f"Please cancel my order {FLASH}")
    maria = await inbox_login(client, "Maria Lopez")
    sam = await inbox_login(client, "Sam Chen")
    [action] = await prepared(client, cid, maria)
    results = await asyncio.gather(
        *(decide(client, cid, action["id"], "approve", who) for who in (maria, sam, maria, sam))
    )
    assert sorted(status for status, _ in results) == [200, 409, 409, 409]
    await services(client).worker.drain()
    assert len(cancels(shop[0])) == 1 and len(shop[0].refunds) == 1
    async with services(client).core.sessions() as s:
        assert await s.scalar(select(func.count()).select_from(PreparedAction)) == 1


async def test_a_5xx_is_retried_with_the_same_idempotency_key(client: TestClient, shop: Any) -> None:
    shop[0].write_failures = [503]
    cid, _ = await handed_off(client, f"Please cancel my order {FLASH}")
    maria = await inbox_login(client, "Maria Lopez")
    [action] = await prepared(client, cid, maria)
    assert (await decide(client, cid, action["id"], "approve", maria))[0] == 200
    await services(client).worker.drain()
    assert [(w.status, w.key) for w in cancels(shop[0])] == [(503, CANCEL_KEY), (200, CANCEL_KEY)]
    assert len(shop[0].refunds) == 1
    [action] = await prepared(client, cid, maria)
    assert action["state"] == "done" and action["attempts"] == 2


async def test_a_store_refusal_fails_at_once_with_the_store_apis_error(client: TestClient, shop: Any) -> None:
    cid, token = await handed_off(client, f"Please cancel my order {FLASH}")
    maria = await inbox_login(client, "Maria Lopez")
    [action] = await prepared(client, cid, maria)
    shop[0].orders[FLASH]["status"] = "shipped"  # the warehouse was faster than the approval
    assert (await decide(client, cid, action["id"], "approve", maria))[0] == 200
    await services(client).worker.drain()
    assert [w.status for w in cancels(shop[0])] == [409]  # a 4xx is not retried
    [action] = await prepared(client, cid, maria)
    assert action["state"] == "failed"
    assert action["error"] == f"HTTP 409: already_shipped: Order {FLASH} has shipped and can no longer be cancelled"
    notes = [t for r, t in await history(client, cid, maria) if r == "note"]
    assert notes[-1].startswith(f"❌ Failed: Cancel order {FLASH} and refund 120.00 EUR (approved by Maria Lopez).")
    assert "already_shipped" in notes[-1]
    assert "couldn't cancel order" in (await shopper_sees(client, cid, token))[-1]
    assert not shop[0].refunds


async def test_retries_exhausted_fail_with_the_last_error(client: TestClient, shop: Any) -> None:
    services(client).config.actions["cancel_order"].attempts = 2
    shop[0].write_failures = [503, 502]
    cid, _ = await handed_off(client, f"Please cancel my order {FLASH}")
    maria = await inbox_login(client, "Maria Lopez")
    [action] = await prepared(client, cid, maria)
    await decide(client, cid, action["id"], "approve", maria)
    await services(client).worker.drain()
    assert [w.status for w in cancels(shop[0])] == [503, 502]
    [action] = await prepared(client, cid, maria)
    assert action["state"] == "failed" and action["attempts"] == 2
    assert action["error"] == "HTTP 502: unavailable: Try again later"
    notes = [t for r, t in await history(client, cid, maria) if r == "note"]
    assert notes[-1].startswith("❌ Failed after 2 attempts:")
    assert shop[0].orders[FLASH]["status"] == "paid"


async def test_deny_needs_a_note_and_tells_the_shopper_nothing(client: TestClient, shop: Any) -> None:
    cid, token = await handed_off(client, f"Please cancel my order {FLASH}")
    seen = await shopper_sees(client, cid, token)
    maria = await inbox_login(client, "Maria Lopez")
    [action] = await prepared(client, cid, maria)
    status, body = await decide(client, cid, action["id"], "deny", maria, note="   ")
    assert status == 400 and "Say why" in body["error"]
    status, _ = await decide(client, cid, action["id"], "deny", maria, note="Already packed, offering a return instead")
    assert status == 200
    await services(client).worker.drain()
    [action] = await prepared(client, cid, maria)
    assert action["state"] == "denied" and action["note"] == "Already packed, offering a return instead"
    assert (
        "note",
        f"🚫 Denied by Maria Lopez: Cancel order {FLASH} and refund 120.00 EUR. "
        "Note: Already packed, offering a return instead",
    ) in await history(client, cid, maria)
    assert await shopper_sees(client, cid, token) == seen  # the YAML says nothing on deny
    status, body = await decide(client, cid, action["id"], "approve", maria)
    assert status == 409 and "already denied by Maria Lopez" in body["error"]
    assert not shop[0].writes


async def test_someone_not_on_the_approvers_list_is_refused(client: TestClient, shop: Any) -> None:
    cid, _ = await handed_off(client, f"Please cancel my order {FLASH}")
    eve = await inbox_login(client, "Eve Stone")
    [action] = await prepared(client, cid, eve)
    assert action["can_decide"] is False
    for verdict, body in (("approve", {}), ("deny", {"note": "no"})):
        status, answer = await decide(client, cid, action["id"], verdict, eve, **body)
        assert status == 403
        assert "not on the approvers list for cancel_order" in answer["error"] and "nothing was run" in answer["error"]
    await services(client).worker.drain()
    [action] = await prepared(client, cid, eve)
    assert action["state"] == "prepared" and not shop[0].writes


async def test_an_order_the_shopper_has_not_proved_gets_nothing_prepared(client: TestClient, shop: Any) -> None:
    cid, _ = await handed_off(client, f"Please cancel order {FLASH}", email=None)
    conv = await services(client).core.get(cid)
    assert "cancellation" in conv.tags and conv.context["prepared"] == []
    async with services(client).core.sessions() as s:
        assert await s.scalar(select(func.count()).select_from(PreparedAction)) == 0


async def test_a_price_difference_refund_is_prepared_up_to_the_yamls_cap(client: TestClient, shop: Any) -> None:
    cid, token = await handed_off(
        client, f"I paid full price for {DROPPED} and now it's in the sale. Can you refund me the difference?"
    )
    maria = await inbox_login(client, "Maria Lopez")
    [action] = await prepared(client, cid, maria)
    assert action["action"] == "refund_price_difference"
    assert action["summary"] == f"Refund 25.00 EUR price difference on {DROPPED}"
    assert action["notes"] == ["amount 30 capped at 25"]
    await decide(client, cid, action["id"], "approve", maria)
    await services(client).worker.drain()
    [write] = [w for w in shop[0].writes if w.path == f"/orders/{DROPPED}/refunds"]
    assert write.body == {"amount": 25.0, "currency": "EUR", "reason": "price difference"}
    assert write.key == f"handoff-price-difference-{DROPPED}"
    assert [r["amount"] for r in shop[0].refunds] == [25.0]
    assert "we've refunded 25.00 EUR" in (await shopper_sees(client, cid, token))[-1]
