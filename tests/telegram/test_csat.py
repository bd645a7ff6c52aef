"""CSAT on Telegram: the message that resolves a conversation carries 👍/👎 buttons (sent through
the outbox like every reply); a tap is answered, counted once per conversation through the core,
and the buttons are removed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from storage.models import OutboxRow, Rating
from tests.conftest import eventually, services
from tests.telegram.conftest import hook, settle, texts
from tests.telegram.fake_telegram import FakeTelegram, callback_update, text_update
from tests.telegram.test_delivery import handed_off


async def ratings(client: TestClient) -> list[tuple[int, int, str]]:
    async with services(client).core.sessions() as s:
        rows = await s.execute(select(Rating.conversation_id, Rating.score, Rating.channel))
        return [tuple(r) for r in rows]  # type: ignore[misc]


async def resolve(client: TestClient, cid: int) -> None:
    resp = await client.post(f"/inbox/api/conversations/{cid}/command", json={"command": "resolve"})
    assert resp.status == 200, await resp.text()


def buttons(message: dict[str, Any]) -> list[tuple[str, str]]:
    markup = message["reply_markup"] or {}
    return [(b["text"], b["callback_data"]) for row in markup.get("inline_keyboard", []) for b in row]


@pytest.mark.usefixtures("quick_pace")
async def test_resolving_asks_for_one_rating_with_buttons_and_a_tap_is_counted_once(
    client: TestClient, tg: FakeTelegram
) -> None:
    cid = await handed_off(client, tg, 801, 1)
    assert all(not m["reply_markup"] for m in tg.sent)  # no buttons before it is resolved
    await resolve(client, cid)
    await texts(tg, 801, 2)
    prompt = tg.sent[-1]
    assert "resolved" in prompt["text"]
    assert buttons(prompt) == [
        ("👍 Helpful", f"csat:{cid}:1"),
        ("👎 Not helpful", f"csat:{cid}:-1"),
    ]
    # The prompt was a row of the outbox, delivered like any reply.
    await settle(client)
    async with services(client).core.sessions() as s:
        rows = await s.scalars(select(OutboxRow).where(OutboxRow.conversation_id == cid))
        asks = [r for r in rows if r.payload.get("message", {}).get("ask_rating")]
    assert [(r.kind, r.status) for r in asks] == [("send", "sent")]

    # Thumbs down, tapped twice quickly (a double tap) and redelivered by Telegram.
    tap = callback_update(20, 801, prompt, f"csat:{cid}:-1")
    again = callback_update(21, 801, prompt, f"csat:{cid}:-1")
    for u in (tap, again):
        tg.expect_query(u)
    statuses = await asyncio.gather(hook(client, tap), hook(client, again), hook(client, tap))
    assert statuses == [200, 200, 200]
    assert await ratings(client) == [(cid, -1, "telegram")]
    # Each tap answered once (the spinner stops), saying what happened.
    assert sorted(a["text"] for a in tg.answered.values()) == [
        "Thanks for your feedback!",
        "This conversation has already been rated. Thank you!",
    ]
    # The buttons are gone from the message; its text stays.
    assert tg.message(801, prompt["message_id"])["reply_markup"] is None
    assert tg.message(801, prompt["message_id"])["text"] == prompt["text"]
    assert len(tg.attempts("editMessageReplyMarkup")) >= 1

    # Writing again reopens the chat with the agent; resolving it again does not ask again:
    # a conversation is rated once.
    assert await hook(client, text_update(22, 801, "Can I talk to a person?")) == 200
    await settle(client)
    await resolve(client, cid)
    await settle(client)
    with_buttons = [c for c in tg.attempts("sendMessage", 801) if c.args.get("reply_markup")]
    assert len(with_buttons) == 1
    assert "resolved" in tg.sent[-1]["text"] and not tg.sent[-1]["reply_markup"]


@pytest.mark.usefixtures("quick_pace")
async def test_a_tap_rates_only_its_own_chat_and_only_a_resolved_conversation(
    client: TestClient, tg: FakeTelegram
) -> None:
    mine = await handed_off(client, tg, 811, 1)
    other = await handed_off(client, tg, 812, 2)
    # Forged callback data: chat 811 naming chat 812's conversation.
    sent = tg.sent[-1]
    forged = tg.expect_query(callback_update(30, 811, None, f"csat:{other}:1"))
    assert await hook(client, forged) == 200
    assert tg.answered["q30"]["text"] == "This button is not for this chat."
    # Not resolved yet: refused with the core's reason, nothing counted.
    early = tg.expect_query(callback_update(31, 811, None, f"csat:{mine}:1"))
    assert await hook(client, early) == 200
    assert "after a conversation is resolved" in tg.answered["q31"]["text"]
    # Nonsense data is answered (no endless spinner) and ignored.
    for i, data in enumerate(("csat:x:1", f"csat:{mine}:5", "other")):
        u = tg.expect_query(callback_update(32 + i, 811, sent, data))
        assert await hook(client, u) == 200
        assert f"q{32 + i}" in tg.answered
    assert await ratings(client) == []


@pytest.mark.usefixtures("quick_pace")
async def test_rating_through_polling(start_service: Any, tg: FakeTelegram) -> None:
    client = await start_service(telegram_mode="polling", telegram_poll_timeout=1)
    tg.push(text_update(40, 821, "Can I talk to a person?"))
    await texts(tg, 821, 1)
    cid = (await services(client).core.conversation_for_channel("telegram", "821", "821")).id
    await resolve(client, cid)
    await texts(tg, 821, 2)
    prompt = tg.sent[-1]
    tg.push(callback_update(41, 821, prompt, f"csat:{cid}:1"))

    async def rated() -> bool:
        return tg.message(821, prompt["message_id"])["reply_markup"] is None

    await eventually(rated)
    assert await ratings(client) == [(cid, 1, "telegram")]
    assert tg.answered["q41"]["text"] == "Thanks for your feedback!"
