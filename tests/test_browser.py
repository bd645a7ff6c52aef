"""The widget and the web inbox in headless Chromium (Debian's package, driven by Playwright).

Skipped when no Chromium is installed, unless HANDOFF_REQUIRE_BROWSER=1 (CI sets it), so a
missing browser can never pass silently in CI."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if not CHROMIUM:
    if os.environ.get("HANDOFF_REQUIRE_BROWSER") == "1":
        raise RuntimeError("HANDOFF_REQUIRE_BROWSER=1 but no chromium is installed")
    pytest.skip("no chromium installed (apt-get install chromium)", allow_module_level=True)

from playwright.async_api import Browser, Page, async_playwright, expect  # noqa: E402

from tests.conftest import services  # noqa: E402

pytestmark = pytest.mark.browser
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        await b.close()


async def _login(page: Page, base: str, name: str = "Maria Lopez") -> None:
    await page.goto(base + "/inbox")
    await page.fill("#login-token", "inbox-secret")
    await page.fill("#login-name", name)
    await page.click("#login-submit")


async def test_shopper_and_person_chat_through_widget_and_inbox(make_client: Any, browser: Browser) -> None:
    client = await make_client()
    base = str(client.make_url("")).rstrip("/")
    shopper = await browser.new_page(viewport={"width": 390, "height": 800})  # a phone
    await shopper.goto(base + "/")
    await expect(shopper.locator("#hw-panel")).to_be_visible()
    await shopper.fill("#hw-input", "How long does delivery to Austria take?")
    await shopper.press("#hw-input", "Enter")
    answer = shopper.locator(".hw-msg[data-role=agent]").last
    await expect(answer).to_contain_text("Source: shipping.md")
    await expect(answer).to_contain_text("2–4 working days")

    await shopper.fill("#hw-input", "<img src=x onerror=alert(1)> can I talk to a person please?")
    await shopper.click("#hw-send")
    await expect(shopper.locator("#hw-status")).to_contain_text("Handed to a person")
    assert await shopper.locator("#hw-messages img").count() == 0

    person = await browser.new_page()
    await _login(person, base)
    item = person.locator(".conv-item").first
    await expect(item).to_contain_text("human-requested")
    await item.click()
    await expect(person.locator("#detail-messages .msg[data-role=shopper]").last).to_contain_text("<img src=x")
    assert await person.locator("#detail-messages img").count() == 0  # shown as text, never as HTML
    await person.click("#btn-claim")
    await expect(person.locator("#detail-state")).to_have_text("claimed")
    await person.fill("#reply-text", "Hi! Maria here, happy to help.")
    await person.click("#reply-send")

    human = shopper.locator(".hw-msg[data-role=human]").last
    await expect(human).to_contain_text("Hi! Maria here, happy to help.")
    await expect(human).to_contain_text("Maria")
    await expect(shopper.locator("#hw-status")).to_contain_text("chatting with our team")

    # A reload keeps the conversation and its history.
    await shopper.reload()
    await expect(shopper.locator(".hw-msg[data-role=human]")).to_have_count(1)
    await expect(shopper.locator(".hw-msg[data-role=agent]").first).to_contain_text("Source: shipping.md")

    # Back to the AI from the inbox: the agent answers again.
    await person.click("#btn-bot")
    await expect(shopper.locator("#hw-status")).to_be_hidden()
    await shopper.fill("#hw-input", "How long do I have to return shoes?")
    await shopper.press("#hw-input", "Enter")
    await expect(shopper.locator(".hw-msg[data-role=agent]").last).to_contain_text("Source: returns.md")
    assert not services(client).inboxes["web"].alerts


async def test_stats_page_shows_known_tags(make_client: Any, browser: Browser) -> None:
    client = await make_client()
    base = str(client.make_url("")).rstrip("/")
    for text in ("I want to talk to a person", "Can I speak to a human?", "My payment for FP-100311 failed"):
        data = await (await client.post("/api/conversations", json={"email": "ann@example.com"})).json()
        await client.post(f"/api/conversations/{data['conversation_id']}/messages?token={data['token']}", json={"text": text, "client_id": "1"})
    await services(client).core.idle()
    page = await browser.new_page(viewport={"width": 390, "height": 800})
    await _login(page, base)
    await expect(page.locator(".conv-item")).to_have_count(3)
    await page.goto(base + "/inbox/stats")
    await expect(page.locator("#tag-table tr[data-tag=human-requested] td").nth(1)).to_have_text("2")
    await expect(page.locator("#tag-table tr[data-tag=payment-failure] td").nth(1)).to_have_text("1")
    bars = page.locator("#chart rect[data-tag=human-requested]")
    await expect(bars).to_have_count(1)
    assert await bars.first.get_attribute("data-count") == "2"
    await expect(page.locator("#legend")).to_contain_text("payment-failure")
