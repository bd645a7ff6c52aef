"""What the web inbox says about a shopper: only proved identity as theirs. An order named but
not proved may be a stranger's (a VIP's): its owner's details are shown apart, as not verified."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update

from storage.models import Conversation
from tests.conftest import inbox_login, services, signed


async def _chat(client: Any, text: str, **body: Any) -> int:
    data = await (await client.post("/api/conversations", json=body)).json()
    cid = data["conversation_id"]
    await client.post(
        f"/api/conversations/{cid}/messages?token={data['token']}", json={"text": text, "client_id": "1"}
    )
    await services(client).core.idle()
    return cid


async def test_a_strangers_chat_naming_a_vips_order_does_not_show_as_that_vip(
    make_client: Any, shop: Any
) -> None:
    shop[0].orders["FP-100999"] = {
        "number": "FP-100999", "email": "vera@example.com", "status": "pending", "payment_status": "failed",
        "sale": None, "total": 990.0, "currency": "EUR", "placed_at": "2026-11-21T10:00:00Z", "items": [],
    }
    client = await make_client()
    cid = await _chat(client, "My payment for order FP-100999 failed, please help")
    maria = await inbox_login(client)
    detail = await (await client.get(f"/inbox/api/conversations/{cid}", headers=maria)).json()
    listing = await (await client.get("/inbox/api/conversations?state=all", headers=maria)).json()
    for customer in (detail["conversation"]["customer"], listing["conversations"][0]["customer"]):
        assert customer["email"] is None and customer["tier"] is None
        owner = customer["order_owner"]
        assert owner is None or owner["verified"] is False


async def test_an_unproved_lookup_is_the_order_owner_not_verified_and_a_proved_one_is_the_shopper(
    make_client: Any,
) -> None:
    client = await make_client()
    cid = await _chat(client, "hello")
    maria = await inbox_login(client)

    async def customer_with(context: dict[str, Any]) -> dict[str, Any]:
        async with services(client).core.sessions() as s, s.begin():
            await s.execute(update(Conversation).where(Conversation.id == cid).values(context=context))
        detail = await (await client.get(f"/inbox/api/conversations/{cid}", headers=maria)).json()
        return detail["conversation"]["customer"]

    vip = {"name": None, "email": "vera@example.com", "tier": "vip"}
    unproved = await customer_with({"customer": {**vip, "verified": False}})
    assert unproved["email"] is None and unproved["tier"] is None
    assert unproved["order_owner"] == {"email": "vera@example.com", "tier": "vip", "verified": False}
    proved = await customer_with({"customer": {**vip, "verified": True}})
    assert proved["email"] == "vera@example.com" and proved["tier"] == "vip" and proved["order_owner"] is None
    odd = await customer_with({"customer": "not verified"})  # whatever an agent leaves there
    assert odd["email"] is None and odd["order_owner"] is None


async def test_an_unsigned_email_is_a_claim_and_a_signed_one_is_the_shoppers(make_client: Any) -> None:
    client = await make_client()
    claimed = await _chat(client, "hello", email="someone@example.com")
    vouched = await _chat(client, "hello", **signed("ann@example.com"))
    maria = await inbox_login(client)
    rows = {c["id"]: c["customer"] for c in (
        await (await client.get("/inbox/api/conversations?state=all", headers=maria)).json())["conversations"]}
    assert rows[claimed]["email"] is None and rows[claimed]["claimed_email"] == "someone@example.com"
    assert rows[vouched]["email"] == "ann@example.com" and rows[vouched]["claimed_email"] is None
