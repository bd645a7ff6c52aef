"""The widget as a store uses it: the tag on the store's own site, another origin than the
support service (another aiohttp server, another port), in headless Chromium.

The shopper chats to a handoff and back (a person's reply through the web inbox's API reaches
the widget); a site that is not listed in WIDGET_ORIGINS gets nothing; and when the service
says "too many", the widget says so calmly and carries on by itself."""

from __future__ import annotations

import html
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from playwright.async_api import Browser, Page, expect
from sqlalchemy import func, select

from bot.shop_server import free_port
from bridges.widget.embedding import sign_email
from storage.models import Conversation
from tests.conftest import WIDGET_SECRET, inbox_login, services
from tests.test_browser import CHROMIUM, browser  # noqa: F401  (the fixture)

pytestmark = pytest.mark.browser
assert CHROMIUM

StoreSite = Callable[..., Awaitable[str]]


@pytest.fixture
async def store_site() -> AsyncIterator[StoreSite]:
    """Serve a store's product page, with the widget tag, on a port of its own."""
    runners: list[web.AppRunner] = []

    async def serve(service: str, port: int | None = None, email: str | None = None, signed: bool = True) -> str:
        attrs = ['data-title="Help"', 'data-open="true"']
        if email:
            attrs.append(f'data-email="{html.escape(email)}"')
            if signed:
                attrs.append(f'data-user-hash="{sign_email(WIDGET_SECRET, email)}"')
        page = (
            "<!doctype html><html><head><meta charset='utf-8'><title>Store</title></head><body>"
            "<h1>Volt High, now €119</h1>"
            f"<script src=\"{service}/widget.js\" {' '.join(attrs)} async></script>"
            "</body></html>"
        )

        async def index(request: web.Request) -> web.Response:
            return web.Response(text=page, content_type="text/html")

        app = web.Application()
        app.router.add_get("/", index)
        runner = web.AppRunner(app)
        await runner.setup()
        port = port or free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        return f"http://127.0.0.1:{port}"

    yield serve
    for r in runners:
        await r.cleanup()


async def _conversations(client: Any) -> int:
    async with services(client).core.sessions() as s:
        return int(await s.scalar(select(func.count()).select_from(Conversation)) or 0)


async def _say(page: Page, text: str) -> None:
    await page.fill("#hw-input", text)
    await page.press("#hw-input", "Enter")


async def test_widget_on_the_stores_own_site_chats_to_a_handoff_and_back(
    make_client: Any, browser: Browser, store_site: StoreSite  # noqa: F811
) -> None:
    store_port = free_port()
    client = await make_client(widget_origins=f"http://127.0.0.1:{store_port}")
    service = str(client.make_url("")).rstrip("/")
    store = await store_site(service, port=store_port, email="ann@example.com")
    assert store.split(":")[-1] != service.split(":")[-1]  # another origin

    shopper = await browser.new_page(viewport={"width": 390, "height": 800})
    failed: list[str] = []
    shopper.on("requestfailed", lambda r: failed.append(r.url))
    await shopper.goto(store + "/")
    await expect(shopper.locator("#hw-panel")).to_be_visible()
    # The signed email is the shopper's: the order is theirs without asking.
    await _say(shopper, "Where is my order FP-100234?")
    await expect(shopper.locator(".hw-msg[data-role=agent]").last).to_contain_text("FP-100234 is shipped")
    await _say(shopper, "Can I talk to a person please?")
    await expect(shopper.locator("#hw-status")).to_contain_text("Handed to a person")

    cid = int(await shopper.evaluate("JSON.parse(localStorage.getItem('handoff.conversation')).id"))
    await inbox_login(client)  # Maria, a named staff account (the client keeps her session)
    detail = await (await client.get(f"/inbox/api/conversations/{cid}")).json()
    assert detail["conversation"]["customer"]["email"] == "ann@example.com"
    reply = await client.post(
        f"/inbox/api/conversations/{cid}/reply", json={"text": "Hi Ann, Maria here."}
    )
    assert reply.status == 200, await reply.text()
    human = shopper.locator(".hw-msg[data-role=human]").last
    await expect(human).to_contain_text("Hi Ann, Maria here.")
    await expect(shopper.locator("#hw-status")).to_contain_text("chatting with our team")

    # And back to the AI: the agent answers on the store's page again.
    back = await client.post(f"/inbox/api/conversations/{cid}/command", json={"command": "bot"})
    assert back.status == 200, await back.text()
    await expect(shopper.locator("#hw-status")).to_be_hidden()
    await _say(shopper, "How long do I have to return shoes?")
    await expect(shopper.locator(".hw-msg[data-role=agent]").last).to_contain_text("Source: returns.md")
    await expect(shopper.locator("#hw-note")).to_be_hidden()
    assert not [u for u in failed if u.startswith(service)]
    assert await _conversations(client) == 1


async def test_a_site_not_listed_gets_nothing(
    make_client: Any, browser: Browser, store_site: StoreSite  # noqa: F811
) -> None:
    listed = free_port()
    client = await make_client(widget_origins=f"http://127.0.0.1:{listed}")
    service = str(client.make_url("")).rstrip("/")
    other = await store_site(service, email="ann@example.com")  # a site that copied the tag
    page = await browser.new_page()
    blocked: list[str] = []
    page.on("requestfailed", lambda r: blocked.append(r.url) if "/api/conversations" in r.url else None)
    await page.goto(other + "/")
    await expect(page.locator("#hw-panel")).to_be_visible()  # the script itself is public
    await _say(page, "Where is my order FP-100234?")
    await expect(page.locator("#hw-note")).to_contain_text("Not sent")
    assert await _conversations(client) == 0
    assert blocked  # the browser itself refused the call (the preflight got a 403, no CORS)
    own = await client.post("/api/conversations", json={}, headers={"Origin": other})
    assert own.status == 403


async def test_limits_are_shown_calmly_and_the_widget_carries_on(
    make_client: Any, browser: Browser, store_site: StoreSite  # noqa: F811
) -> None:
    store_port = free_port()
    client = await make_client(
        widget_origins=f"http://127.0.0.1:{store_port}", widget_create_limit="1/8s", widget_message_limit="2/8s"
    )
    service = str(client.make_url("")).rstrip("/")
    store = await store_site(service, port=store_port)
    first = await browser.new_page()
    await first.goto(store + "/")
    await _say(first, "hello")
    await expect(first.locator(".hw-msg[data-role=shopper]")).to_have_count(1)

    # A second shopper (another browser profile) right after: creation is limited for a moment
    # (windows of 8 s, so that a loaded machine still reaches each check before a token is back).
    context = await browser.new_context()
    second = await context.new_page()
    await second.goto(store + "/")
    note = second.locator("#hw-note")
    await expect(note).to_contain_text("Lots of people are chatting right now")
    await expect(note).not_to_contain_text("connection")
    assert "hw-calm" in (await note.get_attribute("class") or "")
    await _say(second, "How long does delivery to Austria take?")
    await expect(second.locator(".hw-msg[data-role=agent]").last).to_contain_text("Source: shipping.md", timeout=30000)

    # Too many messages at once: the extra one waits, is said to wait, and then goes, once.
    for i in range(4):
        await _say(first, f"message {i}")
    await expect(first.locator("#hw-note")).to_contain_text("sending messages quickly")
    await expect(first.locator(".hw-msg.hw-pending")).to_have_count(0, timeout=30000)
    await expect(first.locator("#hw-note")).to_be_hidden()  # said once it had gone
    sent = first.locator(".hw-msg[data-role=shopper]")
    await expect(sent).to_have_count(5)
    history = await services(client).core.history(
        int(await first.evaluate("JSON.parse(localStorage.getItem('handoff.conversation')).id"))
    )
    assert sorted(m.text for m in history if m.role == "shopper") == ["hello"] + [f"message {i}" for i in range(4)]
    await context.close()
