"""What a hostile shopper can put in a request: malformed and deeply nested JSON, NUL bytes, lone
surrogates, numbers too big for a database column, card numbers in every field. Each is a 400 or
cleaned text, never a 500 with a traceback; on SQLite and (with TEST_DATABASE_URL) PostgreSQL,
where a NUL or a lone surrogate used to fail the insert."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from storage.models import Customer, Message
from tests.conftest import inbox_login, services

BACKENDS = ["sqlite"] + (["postgresql"] if os.environ.get("TEST_DATABASE_URL") else [])


@pytest.fixture(params=BACKENDS)
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/intake.db"
        return
    from storage.migrate import upgrade_async
    from tests.test_core_delivery import fresh_pg_database

    async with fresh_pg_database() as url:
        await upgrade_async(url)
        yield url


@pytest.fixture
async def client(make_client: Any, database_url: str) -> Any:
    return await make_client(database_url=database_url)


async def _start(client: Any, **body: Any) -> tuple[int, str]:
    resp = await client.post("/api/conversations", json=body)
    assert resp.status == 200, await resp.text()
    data = await resp.json()
    return data["conversation_id"], data["token"]


def _nested(depth: int) -> str:
    return '{"text": ' + "[" * depth + "]" * depth + "}"


@pytest.mark.parametrize(
    "body",
    [
        _nested(30_000),  # deeper than Python's recursion limit, inside the 64 KB body limit
        _nested(50),
        '{"text": "hi", "client_id": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": 1}}}}}}}}}',
        '{"text": "unterminated',
        "[1, 2, 3]",
        '{"text": "\\ud800 half", "client_id": "\\udfff"}',  # valid JSON, not encodable as UTF-8
        b'{"text": "\xff\xfe not utf-8"}',
        '{"text": "hi", "client_id": 1' + "0" * 5000 + "}",  # longer than Python will parse
        "{}",
    ],
)
async def test_malformed_bodies_are_400s_or_cleaned_never_500s(client: Any, body: str | bytes) -> None:
    cid, token = await _start(client)
    headers = {"Content-Type": "application/json"}
    for path in ("/api/conversations", f"/api/conversations/{cid}/messages?token={token}",
                 f"/api/conversations/{cid}/rating?token={token}"):
        resp = await client.post(path, data=body, headers=headers)
        assert resp.status in (200, 400, 409), (path, resp.status, await resp.text())
        assert "Traceback" not in await resp.text()
    # The socket answers a bad frame with an error frame and stays open.
    ws = await client.ws_connect(f"/api/conversations/{cid}/ws?token={token}")
    assert (await ws.receive_json(timeout=5))["type"] == "state"
    await ws.send_str(body if isinstance(body, str) else body.decode("latin-1"))
    await ws.send_json({"type": "message", "text": "still here?", "client_id": "after"})
    frames = []
    while not any(f.get("client_id") == "after" and f["type"] == "message" for f in frames):
        frames.append(await ws.receive_json(timeout=10))
    await ws.close()


async def test_nul_bytes_and_lone_surrogates_are_cleaned_in_every_field(client: Any) -> None:
    raw = (
        '{"name": "Ann\\u0000 \\ud83d", "email": "ann\\u0000@example.com\\udc00", '
        '"user_hash": "\\ud800"}'
    )
    resp = await client.post("/api/conversations", data=raw, headers={"Content-Type": "application/json"})
    assert resp.status == 200, await resp.text()
    data = await resp.json()
    cid, token = data["conversation_id"], data["token"]
    msg = '{"text": "hello\\u0000 there \\ud800!", "client_id": "c\\u0000\\udfff"}'
    resp = await client.post(
        f"/api/conversations/{cid}/messages?token={token}", data=msg, headers={"Content-Type": "application/json"}
    )
    assert resp.status == 200, await resp.text()
    stored = (await resp.json())["message"]
    assert stored["text"] == "hello there \ufffd!" and stored["client_id"] == "c\ufffd"
    conv = await services(client).core.get(cid)
    assert conv.customer.name == "Ann \ufffd" and conv.customer.claimed_email == "ann@example.com\ufffd"
    # A NUL or surrogate in the token is just a wrong token.
    assert (await client.get(f"/api/conversations/{cid}/messages?token=%00%ED%A0%80")).status == 403


@pytest.mark.parametrize(
    "path",
    [
        "/api/conversations/99999999999999999999/messages?token=x",
        "/api/conversations/2147483648/messages?token=x",
        "/api/conversations/-1/messages?token=x",
        "/api/conversations/1e3/messages?token=x",
    ],
)
async def test_out_of_range_ids_are_refused_not_500(client: Any, path: str) -> None:
    assert (await client.get(path)).status == 403


async def test_out_of_range_after_is_not_a_500(client: Any) -> None:
    cid, token = await _start(client)
    for after in ("99999999999999999999", "-5", "2147483648"):
        resp = await client.get(f"/api/conversations/{cid}/messages?token={token}&after={after}")
        assert resp.status == 200, (after, await resp.text())
    assert (await client.get(f"/api/conversations/{cid}/messages?token={token}&after=x")).status == 400


async def test_card_numbers_are_masked_in_every_field_and_in_staff_replies(client: Any) -> None:
    card = "4111.1111.1111.1111"
    cid, token = await _start(
        client, name=f"Ann {card}", email="5500 0000 0000 0004@example.com"
    )
    resp = await client.post(
        f"/api/conversations/{cid}/messages?token={token}",
        json={"text": "card 4111\u200b1111\u200b1111\u200b1111 exp 12/27 cvv 123, please charge it",
              "client_id": "4111_1111_1111_1111"},
    )
    assert resp.status == 200
    await services(client).core.idle()
    await inbox_login(client)
    reply = await client.post(
        f"/inbox/api/conversations/{cid}/reply", json={"text": "Got it: 4111/1111/1111/1111, 09/28"}
    )
    assert reply.status == 200, await reply.text()
    await services(client).core.idle()
    async with services(client).core.sessions() as s:
        rows = list(await s.scalars(select(Message).where(Message.conversation_id == cid)))
        customer = (await s.scalars(select(Customer))).one()
    stored = " ".join(
        [customer.name or "", customer.claimed_email or ""]
        + [f"{m.text} {m.platform_id}" for m in rows if m.role in ("shopper", "human")]
    )
    digits = "".join(ch for ch in re.sub(r"\[card ending \d{4}\]", "", stored) if ch.isdigit())
    assert digits == "", stored  # no number, code or expiry left anywhere
    assert "[card ending 1111]" in customer.name and "[card ending 0004]" in customer.claimed_email
    human = next(m for m in rows if m.role == "human")
    assert human.text == "Got it: [card ending 1111], [expiry]"
    # What the shopper's widget receives is the masked reply.
    hist = await (await client.get(f"/api/conversations/{cid}/messages?token={token}")).json()
    assert "4111" not in str(hist)


async def test_a_resend_of_a_stored_message_is_confirmed_to_the_socket_that_resent_it(
    client: Any,
) -> None:
    """The widget keeps a message pending until its socket sees it stored. A first socket's
    confirmation is lost on a reconnect; the new socket resends with the same client_id and must
    hear that it is stored (once), or the widget would keep resending it."""
    cid, token = await _start(client)
    url = f"/api/conversations/{cid}/ws?token={token}"
    first = await client.ws_connect(url)
    assert (await first.receive_json(timeout=5))["type"] == "state"
    await first.send_json({"type": "message", "text": "is it stored?", "client_id": "k1"})
    while True:
        frame = await first.receive_json(timeout=10)
        if frame.get("client_id") == "k1" and frame["type"] == "message":
            break
    await first.close()
    second = await client.ws_connect(url)  # after the confirmation went out
    assert (await second.receive_json(timeout=5))["type"] == "state"
    await second.send_json({"type": "message", "text": "is it stored?", "client_id": "k1"})
    while True:
        again = await second.receive_json(timeout=10)
        if again.get("client_id") == "k1" and again["type"] == "message":
            break
    assert again["id"] == frame["id"]  # the stored one, not a second message
    history = await services(client).core.history(cid)
    assert [m.text for m in history if m.role == "shopper"] == ["is it stored?"]
    await second.close()
