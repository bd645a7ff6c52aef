"""The web inbox's "Wrong handoff" button and its retags, in headless Chromium: what a person
clicks becomes a pending example (core/corrections.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import Browser, Dialog, async_playwright, expect

from tests.cli import run_cli
from tests.conftest import services, signed
from tests.test_browser import CHROMIUM, FLAGS, _login  # skips this module as that one skips

pytestmark = pytest.mark.browser


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        await b.close()


async def _handed_off(client: Any, text: str) -> int:
    data = await (await client.post("/api/conversations", json=signed("ann@example.com", name="Ann"))).json()
    await client.post(
        f"/api/conversations/{data['conversation_id']}/messages?token={data['token']}",
        json={"text": text, "client_id": "1"},
    )
    await services(client).core.idle()
    return int(data["conversation_id"])


async def test_the_wrong_handoff_button_and_a_retag_make_pending_examples(
    make_client: Any, browser: Browser, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await make_client()
    monkeypatch.setenv("DATABASE_URL", services(client).settings.database_url)
    asked = await _handed_off(client, "Can I talk to a person please?")
    page = await browser.new_page()
    await _login(page, client)
    await page.locator(f".conv-item[data-id='{asked}']").click()
    await expect(page.locator("#btn-wrong")).to_be_enabled()

    notes: list[str] = []

    async def answer(dialog: Dialog) -> None:
        notes.append(dialog.message)
        await dialog.accept("they only wanted the opening hours")

    page.once("dialog", answer)
    await page.click("#btn-wrong")
    await expect(page.locator("#detail-notice")).to_contain_text(
        "“Can I talk to a person please?” waits for review as an example of 'none'"
    )
    assert "kept as an example for review" in notes[0]
    await expect(page.locator("#detail-state")).to_have_text("queued")  # still with the team

    # A retag with the tag controls: the person's tag names the intent.
    remorse = await _handed_off(
        client, "That charge from last night should never have happened, I changed my mind about the jacket"
    )
    await page.locator(f".conv-item[data-id='{remorse}']").click()
    await expect(page.locator("#detail-tags")).to_contain_text("fraud-review")
    await page.select_option("#tag-select", "cancellation")
    await page.click("#tag-add")
    await page.click("#detail-tags [data-tag=fraud-review] .tag-remove")
    await expect(page.locator("#detail-tags [data-tag=fraud-review]")).to_have_count(0)
    await services(client).core.idle()

    code, out = await run_cli("examples", "list", "--status", "pending", "--json")
    rows = [(e["conversation_id"], e["label"], e["actor"], e["note"]) for e in json.loads(out)]
    assert rows == [
        (asked, "none", "Maria Lopez", "they only wanted the opening hours"),
        (remorse, "cancel", "Maria Lopez", None),
    ]

    # Dismissing the question records nothing.
    page.once("dialog", lambda d: d.dismiss())
    await page.locator(f".conv-item[data-id='{asked}']").click()
    await page.click("#btn-wrong")
    await expect(page.locator("#detail-notice")).to_have_text("")
    assert len(json.loads((await run_cli("examples", "list", "--json"))[1])) == 2
