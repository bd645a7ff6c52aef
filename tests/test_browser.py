"""The widget and the web inbox in headless Chromium (Debian's package, driven by Playwright).

Skipped when no Chromium is installed, unless HANDOFF_REQUIRE_BROWSER=1 (CI sets it), so a
missing browser can never pass silently in CI."""

from __future__ import annotations

import os
import re
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

from tests.conftest import INBOX_TOKEN, services, signed  # noqa: E402

pytestmark = pytest.mark.browser
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        await b.close()


async def _login(page: Page, client: Any, name: str = "Maria Lopez") -> None:
    """Sign in as a team member does: open the one-time link `handoff staff add NAME` printed.
    Afterwards no token is left in the address bar, the history or the page's storage, and the
    session is an HttpOnly, SameSite=Strict cookie."""
    base = str(client.make_url("")).rstrip("/")
    invite = await services(client).staff.add(name)
    await page.goto(invite.link(base))
    await expect(page.locator("#me")).to_have_text(name)
    assert page.url == base + "/inbox"
    assert invite.token not in await page.evaluate("JSON.stringify([location.href, localStorage, sessionStorage])")
    [cookie] = await page.context.cookies()
    assert cookie["name"] == "handoff_inbox" and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert invite.token not in cookie["value"]


async def test_shopper_and_person_chat_through_widget_and_inbox(make_client: Any, browser: Browser) -> None:
    client = await make_client(demo=True)  # the sample shop page is served in demo mode only
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
    await _login(person, client)
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
    assert not services(client).bridges["web"].alerts


async def test_stats_page_shows_known_tags(make_client: Any, browser: Browser) -> None:
    client = await make_client()
    base = str(client.make_url("")).rstrip("/")
    for text in ("I want to talk to a person", "Can I speak to a human?", "My payment for FP-100311 failed"):
        data = await (await client.post("/api/conversations", json=signed("ann@example.com"))).json()
        await client.post(f"/api/conversations/{data['conversation_id']}/messages?token={data['token']}", json={"text": text, "client_id": "1"})
    await services(client).core.idle()
    page = await browser.new_page(viewport={"width": 390, "height": 800})
    await _login(page, client)
    await expect(page.locator(".conv-item")).to_have_count(3)
    await page.goto(base + "/inbox/stats")
    await expect(page.locator("#tag-table tr[data-tag=human-requested] td").nth(1)).to_have_text("2")
    await expect(page.locator("#tag-table tr[data-tag=payment-failure] td").nth(1)).to_have_text("1")
    bars = page.locator("#chart rect[data-tag=human-requested]")
    await expect(bars).to_have_count(1)
    assert await bars.first.get_attribute("data-count") == "2"
    await expect(page.locator("#legend")).to_contain_text("payment-failure")


async def test_admin_adds_a_person_whose_inbox_updates_live_until_they_are_removed(
    make_client: Any, browser: Browser
) -> None:
    client = await make_client()
    services(client).bridges["web"].routes.session_recheck_seconds = 0.2
    base = str(client.make_url("")).rstrip("/")
    blocked: list[str] = []  # anything the CSP refused (an inline script or style left behind)

    def watch(page: Page) -> Page:
        page.on("console", lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None)
        return page

    admin = watch(await browser.new_page())
    await admin.goto(base + "/inbox")
    await admin.fill("#login-token", INBOX_TOKEN)  # the bootstrap token signs in as admin
    await admin.click("#login-submit")
    await expect(admin.locator("#me")).to_have_text("admin (admin)")
    await admin.click("#team-link")
    await admin.fill("#staff-name", "Lee Chan")
    await admin.click("#staff-add")
    await expect(admin.locator("#staff-link")).to_have_value(re.compile("^" + re.escape(base + "/inbox#login=") + r"\S{40,}$"))
    link = await admin.locator("#staff-link").input_value()
    await expect(admin.locator("tr[data-name='Lee Chan']")).to_contain_text("link not used yet")

    lee = watch(await (await browser.new_context()).new_page())
    urls: list[str] = []
    lee.on("request", lambda r: urls.append(r.url))
    await lee.goto(link)
    await expect(lee.locator("#me")).to_have_text("Lee Chan")
    await expect(lee.locator("#queue")).to_contain_text("Nothing here.")
    await expect(lee.locator("#filters [data-count=open]")).to_have_text("0")
    reloads = len([u for u in urls if "/inbox/api/conversations?state=" in u])

    # A shopper is handed off meanwhile: Lee's list gains the row and its count, patched from
    # the live event (one small request for that id), without reloading the list.
    data = await (await client.post("/api/conversations", json={"email": "who@example.com"})).json()  # unsigned
    cid = data["conversation_id"]
    await client.post(f"/api/conversations/{cid}/messages?token={data['token']}",
                      json={"text": "Can I talk to a person please?", "client_id": "1"})
    await expect(lee.locator(f".conv-item[data-id='{cid}']")).to_contain_text("human-requested")
    await expect(lee.locator("#filters [data-count=open]")).to_have_text("1")
    await expect(lee.locator("#filters [data-count=waiting]")).to_have_text("1")
    assert len([u for u in urls if "/inbox/api/conversations?state=" in u]) == reloads
    assert any(f"/inbox/api/conversations?ids={cid}" in u for u in urls)

    await expect(lee.locator(f".conv-item[data-id='{cid}']")).to_contain_text("who@example.com (not verified)")

    # Lee claims it: it moves to Lee's "Mine", under Lee's name.
    await lee.locator(f".conv-item[data-id='{cid}']").click()
    await expect(lee.locator("#detail-title")).to_contain_text("<who@example.com> (not verified)")
    await lee.click("#btn-claim")
    await expect(lee.locator("#detail-owner")).to_have_text("owned by Lee Chan")
    await expect(lee.locator("#filters [data-count=mine]")).to_have_text("1")
    await expect(lee.locator("#filters [data-count=waiting]")).to_have_text("0")

    # The link worked once: a second browser opening it is not signed in.
    stranger = await (await browser.new_context()).new_page()
    await stranger.goto(link)
    await expect(stranger.locator("#login-error")).to_contain_text("not valid")

    # Removed by the admin: Lee's open inbox returns to the sign-in form by itself.
    async def accept(dialog: Any) -> None:
        await dialog.accept()

    admin.once("dialog", accept)
    await admin.locator("tr[data-name='Lee Chan'] button.remove").click()
    await expect(admin.locator("tr[data-name='Lee Chan']")).to_have_count(0)
    await expect(lee.locator("#login")).to_be_visible()
    await expect(lee.locator("#login-error")).to_contain_text("session has ended")
    assert blocked == []
