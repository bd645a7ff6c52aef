"""A hostile shopper repeating what is cheap for them and costly for the store: floods of new
conversations, messages, sockets and ratings; and history that arrives a page at a time."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select

from storage.models import Conversation, Message, Rating
from tests.conftest import inbox_login, services


async def _count(client: Any, model: Any) -> int:
    async with services(client).core.sessions() as s:
        return int(await s.scalar(select(func.count()).select_from(model)) or 0)


async def test_a_creation_flood_gets_429s_and_the_service_stays_responsive(make_client: Any) -> None:
    client = await make_client(widget_create_limit="30/minute")

    async def create(i: int) -> aiohttp.ClientResponse:
        return await client.post("/api/conversations", json={"name": f"bot {i}"})

    began = time.monotonic()
    answers = await asyncio.gather(*(create(i) for i in range(300)))
    took = time.monotonic() - began
    statuses = [r.status for r in answers]
    created = statuses.count(200)
    # The burst of 30, plus the one a conversation every 2 s brings back while the flood lasts.
    assert 30 <= created <= 30 + int(took / 2) and statuses.count(429) == 300 - created, took
    refused = next(r for r in answers if r.status == 429)
    retry_after = int(refused.headers["Retry-After"])
    assert 1 <= retry_after <= 2  # one new conversation every 2 s
    assert (await refused.json())["retry_after"] == retry_after
    assert await _count(client, Conversation) == created
    start = time.perf_counter()
    health = await client.get("/healthz")
    assert health.status == 200 and time.perf_counter() - start < 0.2
    await inbox_login(client)
    start = time.perf_counter()
    listing = await client.get("/inbox/api/conversations?state=all")
    assert listing.status == 200 and time.perf_counter() - start < 0.5


async def test_forwarded_for_is_believed_only_from_a_trusted_proxy(make_client: Any) -> None:
    # Not trusted: a made-up X-Forwarded-For per request does not make a new client.
    client = await make_client(widget_create_limit="2/minute")
    statuses = [
        (await client.post("/api/conversations", json={}, headers={"X-Forwarded-For": f"198.51.100.{i}"})).status
        for i in range(4)
    ]
    assert statuses == [200, 200, 429, 429]
    # Behind a trusted proxy (the test client's 127.0.0.1), each client address has its own limit.
    proxied = await make_client(widget_create_limit="2/minute", trusted_proxies="127.0.0.1/32")

    async def from_(address: str) -> int:
        headers = {"X-Forwarded-For": f"6.6.6.6, {address}"}  # the client wrote the first one
        return (await proxied.post("/api/conversations", json={}, headers=headers)).status

    assert [await from_("198.51.100.1") for _ in range(3)] == [200, 200, 429]
    assert [await from_("198.51.100.2") for _ in range(2)] == [200, 200]


async def test_messages_per_conversation_are_limited_on_http_and_socket(make_client: Any) -> None:
    client = await make_client(widget_message_limit="3/minute")
    data = await (await client.post("/api/conversations", json={})).json()
    cid, token = data["conversation_id"], data["token"]
    url = f"/api/conversations/{cid}/messages?token={token}"
    for i in range(3):
        assert (await client.post(url, json={"text": f"hello {i}", "client_id": str(i)})).status == 200
    limited = await client.post(url, json={"text": "hello again", "client_id": "3"})
    assert limited.status == 429 and int(limited.headers["Retry-After"]) == 20
    ws = await client.ws_connect(f"/api/conversations/{cid}/ws?token={token}")
    assert (await ws.receive_json(timeout=5))["type"] == "state"
    await ws.send_json({"type": "message", "text": "and on the socket", "client_id": "4"})
    while True:
        frame = await ws.receive_json(timeout=5)
        if frame["type"] == "error":
            break
    assert frame["client_id"] == "4" and frame["retry_after"] == 20
    await ws.close()
    await services(client).core.idle()
    async with services(client).core.sessions() as s:
        shopper = await s.scalar(select(func.count()).where(Message.conversation_id == cid, Message.role == "shopper"))
    assert shopper == 3
    # Another conversation is not held back by this one.
    other = await (await client.post("/api/conversations", json={})).json()
    resp = await client.post(
        f"/api/conversations/{other['conversation_id']}/messages?token={other['token']}",
        json={"text": "hi", "client_id": "x"},
    )
    assert resp.status == 200


async def test_a_socket_that_floods_while_told_to_wait_is_closed(make_client: Any) -> None:
    client = await make_client(widget_message_limit="3/minute")
    data = await (await client.post("/api/conversations", json={})).json()
    cid, token = data["conversation_id"], data["token"]
    ws = await client.ws_connect(f"/api/conversations/{cid}/ws?token={token}")
    assert (await ws.receive_json(timeout=5))["type"] == "state"
    for i in range(200):  # messages and garbage alike
        if ws.closed:
            break
        await ws.send_str("not json" if i % 2 else json.dumps({"type": "message", "text": f"m{i}", "client_id": str(i)}))
    while (await ws.receive(timeout=10)).type not in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
        pass
    assert ws.close_code == aiohttp.WSCloseCode.POLICY_VIOLATION
    await services(client).core.idle()
    async with services(client).core.sessions() as s:
        stored = await s.scalar(select(func.count()).where(Message.conversation_id == cid, Message.role == "shopper"))
    assert stored <= 3


async def test_sockets_per_conversation_are_limited(make_client: Any) -> None:
    client = await make_client(widget_socket_limit=2)
    data = await (await client.post("/api/conversations", json={})).json()
    url = f"/api/conversations/{data['conversation_id']}/ws?token={data['token']}"
    first, second = await client.ws_connect(url), await client.ws_connect(url)
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect(url)
    assert refused.value.status == 429 and refused.value.headers is not None
    assert int(refused.value.headers["Retry-After"]) > 0
    await first.close()
    for _ in range(50):  # the server sees the close a moment later
        try:
            third = await client.ws_connect(url)
            break
        except aiohttp.WSServerHandshakeError:
            await asyncio.sleep(0.05)
    else:
        raise AssertionError("a closed socket's place was not freed")
    await second.close()
    await third.close()


async def test_one_rating_per_conversation(make_client: Any) -> None:
    client = await make_client()
    data = await (await client.post("/api/conversations", json={})).json()
    cid, token = data["conversation_id"], data["token"]
    url = f"/api/conversations/{cid}/rating?token={token}"
    assert (await client.post(url, json={"score": 1})).status == 400  # not resolved yet
    await services(client).core.staff_command(cid, "resolve", actor="Maria")
    answers = await asyncio.gather(*(client.post(url, json={"score": s}) for s in (1, -1, -1, -1, -1)))
    assert sorted(r.status for r in answers) == [200, 409, 409, 409, 409]
    assert await _count(client, Rating) == 1
    for bad in ({"score": 5}, {"score": True}, {"score": "1"}, {"score": 1e999}, {"score": [1]}):
        assert (await client.post(url, json=bad)).status == 400, bad


async def test_history_comes_a_page_at_a_time(make_client: Any) -> None:
    client = await make_client(widget_history_page=4)
    data = await (await client.post("/api/conversations", json={})).json()
    cid, token = data["conversation_id"], data["token"]
    core = services(client).core
    for i in range(5):
        await core.system_message(cid, f"notice {i}")
    for i in range(5):
        await core.staff_reply(cid, f"reply {i}", author="Maria", source="web")
    seen: list[str] = []
    after, pages = 0, 0
    while True:
        page = await (await client.get(f"/api/conversations/{cid}/messages?token={token}&after={after}")).json()
        pages += 1
        assert len(page["messages"]) <= 4
        seen += [m["text"] for m in page["messages"]]
        if not page["more"]:
            break
        after = page["messages"][-1]["id"]
    system = [t for t in seen if t.startswith("notice")]
    replies = [t for t in seen if t.startswith("reply")]
    assert system == [f"notice {i}" for i in range(5)] and replies == [f"reply {i}" for i in range(5)]
    assert pages == 3  # 10 and more messages at 4 a page; the last page says there is no more
    small = await (await client.get(f"/api/conversations/{cid}/messages?token={token}&limit=2")).json()
    assert len(small["messages"]) == 2 and small["more"] is True
    big = await (await client.get(f"/api/conversations/{cid}/messages?token={token}&limit=100000")).json()
    assert len(big["messages"]) == 4  # never more than a page
