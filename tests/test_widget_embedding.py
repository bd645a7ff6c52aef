"""The widget on a store's own site (another origin than the service), over real HTTP.

What a browser does on the store's page: a CORS preflight before a JSON POST, the `Origin` of
every call and of the socket's handshake. A listed store gets answers it may read; any other
site is refused, and its pages cannot post anything a browser would send without asking."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from core.bridge import ConfigurationError
from tests.conftest import services

SHOP = "https://shop.example.com"
EVIL = "https://evil.example.net"


async def _start(client: Any, origin: str | None = SHOP) -> tuple[int, str]:
    headers = {"Origin": origin} if origin else {}
    resp = await client.post("/api/conversations", json={}, headers=headers)
    assert resp.status == 200, await resp.text()
    data = await resp.json()
    return data["conversation_id"], data["token"]


async def test_a_listed_origin_gets_preflight_and_cors_headers_on_every_endpoint(make_client: Any) -> None:
    client = await make_client(widget_origins=f"{SHOP}, https://www.shop.example.com:8443")
    pre = await client.options(
        "/api/conversations",
        headers={"Origin": SHOP, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type"},
    )
    assert pre.status == 204
    assert pre.headers["Access-Control-Allow-Origin"] == SHOP
    assert "POST" in pre.headers["Access-Control-Allow-Methods"]
    assert "content-type" in pre.headers["Access-Control-Allow-Headers"].lower()

    headers = {"Origin": SHOP}
    created = await client.post("/api/conversations", json={}, headers=headers)
    assert created.headers["Access-Control-Allow-Origin"] == SHOP
    assert created.headers["Vary"] == "Origin"
    data = await created.json()
    cid, token = data["conversation_id"], data["token"]
    for path in (f"/api/conversations/{cid}/messages", f"/api/conversations/{cid}/rating"):
        pre = await client.options(path, headers={"Origin": SHOP, "Access-Control-Request-Method": "POST"})
        assert pre.status == 204 and pre.headers["Access-Control-Allow-Origin"] == SHOP
    sent = await client.post(
        f"/api/conversations/{cid}/messages?token={token}",
        json={"text": "How long does shipping to Austria take?", "client_id": "a"},
        headers=headers,
    )
    assert sent.status == 200 and sent.headers["Access-Control-Allow-Origin"] == SHOP
    hist = await client.get(f"/api/conversations/{cid}/messages?token={token}", headers=headers)
    assert hist.headers["Access-Control-Allow-Origin"] == SHOP
    # Errors too: a refusal the page cannot read would look like a dead connection.
    wrong = await client.get(f"/api/conversations/{cid}/messages?token=nope", headers=headers)
    assert wrong.status == 403 and wrong.headers["Access-Control-Allow-Origin"] == SHOP
    # The second listed origin, written with its port, matches what a browser sends.
    other = await client.post("/api/conversations", json={}, headers={"Origin": "https://WWW.shop.example.com:8443"})
    assert other.status == 200
    assert other.headers["Access-Control-Allow-Origin"] == "https://WWW.shop.example.com:8443"


async def test_an_unlisted_origin_is_refused_on_http_and_on_the_socket(make_client: Any) -> None:
    client = await make_client(widget_origins=SHOP)
    cid, token = await _start(client)
    pre = await client.options(
        "/api/conversations", headers={"Origin": EVIL, "Access-Control-Request-Method": "POST"}
    )
    assert pre.status == 403 and "Access-Control-Allow-Origin" not in pre.headers
    created = await client.post("/api/conversations", json={}, headers={"Origin": EVIL})
    assert created.status == 403 and "Access-Control-Allow-Origin" not in created.headers
    read = await client.get(f"/api/conversations/{cid}/messages?token={token}", headers={"Origin": EVIL})
    assert read.status == 403
    for origin in (EVIL, "null", "https://shop.example.com.evil.example.net", "http://shop.example.com"):
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await client.ws_connect(f"/api/conversations/{cid}/ws?token={token}", origin=origin)
        assert refused.value.status == 403, origin
    ws = await client.ws_connect(f"/api/conversations/{cid}/ws?token={token}", origin=SHOP)
    assert (await ws.receive_json(timeout=5))["type"] == "state"
    await ws.close()
    async with services(client).core.sessions() as s:
        from sqlalchemy import func, select

        from storage.models import Conversation

        assert await s.scalar(select(func.count()).select_from(Conversation)) == 1


async def test_the_services_own_pages_and_non_browser_clients_need_no_listing(make_client: Any) -> None:
    client = await make_client()  # WIDGET_ORIGINS unset
    own = f"http://{client.host}:{client.port}"
    cid, token = await _start(client, origin=own)
    ws = await client.ws_connect(f"/api/conversations/{cid}/ws?token={token}", origin=own)
    assert (await ws.receive_json(timeout=5))["type"] == "state"
    await ws.close()
    await _start(client, origin=None)  # curl, a server, the test client: no Origin
    assert (await client.post("/api/conversations", json={}, headers={"Origin": SHOP})).status == 403


async def test_any_origin_only_in_demo_mode(make_client: Any) -> None:
    with pytest.raises(ConfigurationError, match="WIDGET_ORIGINS"):
        await make_client(widget_origins="*")
    with pytest.raises(ConfigurationError, match="not an origin"):
        await make_client(widget_origins="https://shop.example.com/help")
    client = await make_client(widget_origins="*", demo=True)
    assert (await client.post("/api/conversations", json={}, headers={"Origin": EVIL})).status == 200


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/plain", json.dumps({"text": "hello", "client_id": "x"})),
        ("application/x-www-form-urlencoded", "text=hello&client_id=x"),
        ("multipart/form-data; boundary=b", '--b\r\nContent-Disposition: form-data; name="text"\r\n\r\nhi\r\n--b--'),
    ],
)
async def test_bodies_only_as_json(make_client: Any, content_type: str, body: str) -> None:
    # The three content types a page may post to any site without a preflight.
    client = await make_client()
    cid, token = await _start(client, origin=None)
    for path in ("/api/conversations", f"/api/conversations/{cid}/messages?token={token}",
                 f"/api/conversations/{cid}/rating?token={token}"):
        resp = await client.post(path, data=body, headers={"Content-Type": content_type})
        assert resp.status == 415, (path, resp.status)
    assert await services(client).core.history(cid) == []


async def test_the_demo_shop_page_only_in_demo_mode(make_client: Any) -> None:
    client = await make_client()
    assert (await client.get("/")).status == 404
    assert (await client.get("/widget.js")).status == 200
    demo = await make_client(demo=True)
    page = await demo.get("/")
    assert page.status == 200 and "widget.js" in await page.text()


async def test_the_widget_calls_the_service_it_was_loaded_from() -> None:
    # The script is served to other origins: every URL it builds starts from its own src.
    from bridges.widget.routes import STATIC

    script = (STATIC / "widget.js").read_text()
    assert "new URL(script.src, location.href).origin" in script
    for call in ('api("")', 'api("/" + conv.id'):
        assert call in script
    assert "fetch(\"/api" not in script and "fetch('/api" not in script
    assert "user_hash: opts.userHash" in script


async def test_a_socket_from_a_listed_origin_chats(make_client: Any) -> None:
    client = await make_client(widget_origins=SHOP)
    cid, token = await _start(client)
    ws = await client.ws_connect(f"/api/conversations/{cid}/ws?token={token}", origin=SHOP)
    assert (await ws.receive_json(timeout=5))["type"] == "state"
    await ws.send_json({"type": "message", "text": "How long does shipping to Austria take?", "client_id": "w1"})
    roles = []
    while "agent" not in roles:
        frame = await asyncio.wait_for(ws.receive_json(), 10)
        if frame["type"] == "message":
            roles.append(frame["role"])
    assert roles[0] == "shopper"
    await ws.close()
