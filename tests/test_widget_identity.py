"""Signed identity: a `data-email` counts as the shopper's only when the store's server signed it
(`data-user-hash` = hex HMAC-SHA256 of the email under WIDGET_IDENTITY_SECRET). Anyone's page
can set `data-email`: unsigned, it is a claim the inbox shows as such, never proof."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from tests.conftest import WIDGET_SECRET, inbox_login, services, signed


async def _chat(client: Any, body: dict[str, Any], text: str) -> tuple[int, dict[str, Any], list[str]]:
    created = await (await client.post("/api/conversations", json=body)).json()
    cid, token = created["conversation_id"], created["token"]
    await client.post(f"/api/conversations/{cid}/messages?token={token}", json={"text": text, "client_id": "1"})
    await services(client).core.idle()
    hist = (await (await client.get(f"/api/conversations/{cid}/messages?token={token}")).json())["messages"]
    return cid, created, [m["text"] for m in hist if m["role"] == "agent"]


async def test_an_unsigned_email_is_not_proof_of_the_order(make_client: Any) -> None:
    client = await make_client()
    # A stranger's page (or devtools) sets data-email to the owner's address.
    cid, created, replies = await _chat(client, {"email": "ann@example.com"}, "Where is my order FP-100234?")
    assert created["verified"] is False
    assert "shipped" not in replies[-1] and "email" in replies[-1].lower()  # asked to prove it
    conv = await services(client).core.get(cid)
    assert conv.customer.email is None and conv.customer.claimed_email == "ann@example.com"


async def test_a_wrong_or_foreign_signature_is_not_proof(make_client: Any) -> None:
    client = await make_client()
    other_key = hmac.new(b"another-store", b"ann@example.com", hashlib.sha256).hexdigest()
    for user_hash in (other_key, signed("mallory@example.com")["user_hash"], "", "zz" * 32, "ä" * 64):
        cid, created, replies = await _chat(
            client, {"email": "ann@example.com", "user_hash": user_hash}, "Where is my order FP-100234?"
        )
        assert created["verified"] is False and "shipped" not in replies[-1]
        assert (await services(client).core.get(cid)).customer.email is None


async def test_a_signed_email_is_the_shoppers(make_client: Any) -> None:
    client = await make_client()
    body = signed("ann@example.com")
    body["user_hash"] = body["user_hash"].upper()  # hex in either case
    cid, created, replies = await _chat(client, body, "Where is my order FP-100234?")
    assert created["verified"] is True
    assert "FP-100234 is shipped" in replies[-1]
    conv = await services(client).core.get(cid)
    assert conv.customer.email == "ann@example.com" and conv.customer.claimed_email is None


async def test_without_a_secret_no_email_is_proof(make_client: Any) -> None:
    client = await make_client(widget_identity_secret=None)
    cid, created, replies = await _chat(client, signed("ann@example.com"), "Where is my order FP-100234?")
    assert created["verified"] is False and "shipped" not in replies[-1]


async def test_the_inbox_sees_a_claim_labelled_as_one(make_client: Any) -> None:
    client = await make_client()
    cid, _, _ = await _chat(client, {"email": "vera@example.com", "name": "Vera"}, "Can I talk to a person?")
    await inbox_login(client)
    detail = await (await client.get(f"/inbox/api/conversations/{cid}")).json()
    customer = detail["conversation"]["customer"]
    assert customer["email"] is None and customer["claimed_email"] == "vera@example.com"
    assert customer["tier"] != "vip"  # a claimed VIP address earns no VIP treatment
    assert detail["conversation"]["priority"] < 5
    from bridges.webinbox.routes import STATIC

    assert "(not verified)" in (STATIC / "inbox.js").read_text()


def test_the_readme_snippets_sign_as_the_service_verifies() -> None:
    """The Python snippet in the README, run as written, makes a hash the service accepts."""
    import re
    from pathlib import Path

    from bridges.widget.embedding import WidgetPolicy

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    snippet = re.search(r"```python\n(.*?WIDGET_IDENTITY_SECRET.*?)```", readme, re.S)
    assert snippet, "README has no Python signing snippet"
    scope: dict[str, Any] = {}
    exec(snippet.group(1), scope)  # defines user_hash(email, secret)
    policy = WidgetPolicy(identity_secret=WIDGET_SECRET.encode())
    assert policy.verified_email("ann@example.com", scope["user_hash"]("ann@example.com", WIDGET_SECRET))
    assert "createHmac('sha256'" in readme or 'createHmac("sha256"' in readme
