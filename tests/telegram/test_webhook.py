"""Updates in through the webhook: the secret, once each, /start, text, media, edits."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp.test_utils import TestClient

from domain.ports import ConversationView, MessageView, Turn
from domain.storeconfig import StoreConfig
from tests.conftest import eventually, services
from tests.telegram.conftest import SECRET, conversation, history, hook, settle, texts
from tests.telegram.fake_telegram import FakeTelegram, message_update, text_update


async def test_wrong_or_missing_secret_is_refused_and_nothing_is_taken_in(
    client: TestClient, tg: FakeTelegram
) -> None:
    forged = text_update(1, 501, "Refund me now")
    assert await hook(client, forged, secret="not-the-secret") == 401
    assert await hook(client, forged, secret=None) == 401
    assert await hook(client, forged, secret=SECRET + "x") == 401
    await settle(client)
    assert tg.attempts("sendMessage") == [] and tg.attempts("sendChatAction") == []
    listing = await client.get("/inbox/api/conversations?state=all")
    assert (await listing.json())["conversations"] == []
    # The same update with the right secret is taken in: the refusals did not mark it as seen.
    assert await hook(client, forged) == 200
    assert [m.text for m in await history(client, 501)][0] == "Refund me now"


async def test_malformed_bodies_are_400(client: TestClient) -> None:
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
    for body in (b"{nope", b"\xff\xfe", b"[1, 2]", b'{"no_update_id": true}'):
        resp = await client.post("/telegram/webhook", data=body, headers=headers)
        assert resp.status == 400, body


async def test_start_greets_and_a_question_is_answered_while_typing(
    client: TestClient, tg: FakeTelegram, store_config: StoreConfig
) -> None:
    assert await hook(client, text_update(1, 502, "/start")) == 200
    assert await hook(client, text_update(2, 502, "How long does delivery to Austria take?")) == 200
    got = await texts(tg, 502, 2)
    assert got[0] == store_config.messages.welcome
    assert "2–4 working days" in got[1]
    # "typing…" was shown in that chat before the answer went out
    typing = tg.attempts("sendChatAction", 502)
    answer = [c for c in tg.attempts("sendMessage", 502) if c.status == 200][1]
    assert typing and typing[0].args["action"] == "typing" and typing[0].at < answer.at
    # The Telegram user is the customer: name and username, no email until they give one.
    conv = await conversation(client, 502)
    assert (conv.customer.name, conv.customer.username, conv.customer.email) == (
        "Lena Novak",
        "lena_n",
        None,
    )
    assert conv.customer.external_id == "502" and conv.channel == "telegram"
    roles = [(m.role, m.text) for m in await history(client, 502)]
    assert roles[:2] == [("shopper", "/start"), ("system", store_config.messages.welcome)]


async def test_duplicate_update_ids_are_processed_once(
    client: TestClient, tg: FakeTelegram
) -> None:
    update = text_update(10, 503, "What payment methods do you accept?")
    # Telegram redelivers (a timeout on its side), even while the first delivery is in progress.
    statuses = await asyncio.gather(*(hook(client, update) for _ in range(3)))
    assert statuses == [200, 200, 200]
    await settle(client)
    assert await hook(client, update) == 200  # and again, later
    start = text_update(11, 503, "/start")
    assert [await hook(client, start) for _ in range(2)] == [200, 200]
    await settle(client)
    assert len(tg.texts(503)) == 2  # one answer, one welcome
    assert [m.role for m in await history(client, 503)] == ["shopper", "agent", "shopper", "system"]


async def test_updates_of_one_chat_are_answered_in_order(
    client: TestClient, tg: FakeTelegram
) -> None:
    questions = [
        "What payment methods do you accept?",
        "How long do I have to return shoes?",
        "How long does delivery to Austria take?",
    ]
    for i, q in enumerate(questions):
        assert await hook(client, text_update(20 + i, 504, q)) == 200
    got = await texts(tg, 504, 3)
    hist = [m for m in await history(client, 504)]
    assert [m.text for m in hist if m.role == "shopper"] == questions
    assert [m.role for m in hist] == ["shopper", "agent"] * 3
    assert got == [m.text for m in hist if m.role == "agent"]
    assert "2–4 working days" in got[2]
    assert len(services(client).bridges["telegram"].intake.locks) == 0  # no lock kept per chat


async def test_photos_stickers_voice_get_text_only_and_edits_are_recorded_not_answered(
    client: TestClient, tg: FakeTelegram
) -> None:
    photo = message_update(
        30,
        505,
        photo=[{"file_id": "p1", "file_unique_id": "u1", "width": 90, "height": 90}],
        caption="my broken zip",
    )
    sticker = message_update(
        31,
        505,
        sticker={
            "file_id": "s1",
            "file_unique_id": "u2",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
            "type": "regular",
        },
    )
    voice = message_update(32, 505, voice={"file_id": "v1", "file_unique_id": "u3", "duration": 3})
    edit = message_update(33, 505, text="Where is my order FP-100234?", edited=True)
    for u in (photo, sticker, voice, edit):
        assert await hook(client, u) == 200
    got = await texts(tg, 505, 3)
    await settle(client)
    assert len(tg.texts(505)) == 3 and all("only read text" in t for t in got)
    hist = [(m.role, m.text) for m in await history(client, 505)]
    shopper = [t for r, t in hist if r == "shopper"]
    assert shopper == [
        "[photo] my broken zip",
        "[sticker]",
        "[voice]",
        "(edited) Where is my order FP-100234?",
    ]
    assert not any(r == "agent" for r, _ in hist)  # none of them was answered by the agent


async def test_group_chats_and_bots_are_ignored(client: TestClient, tg: FakeTelegram) -> None:
    group = text_update(40, -100777, "hello everyone", chat_type="supergroup")
    assert await hook(client, group) == 200
    from_bot = text_update(41, 506, "beep")
    from_bot["message"]["from"]["is_bot"] = True
    assert await hook(client, from_bot) == 200
    await settle(client)
    assert tg.attempts("sendMessage") == []
    listing = await client.get("/inbox/api/conversations?state=all")
    assert (await listing.json())["conversations"] == []


async def test_a_message_too_long_for_the_core_is_explained(
    client: TestClient, tg: FakeTelegram
) -> None:
    assert services(client).core.max_text == 4000
    assert await hook(client, text_update(50, 507, "a" * 4050)) == 200
    got = await texts(tg, 507, 1)
    assert "too long" in got[0]


async def test_typing_is_kept_up_while_the_agent_thinks_and_stops_with_the_answer(
    client: TestClient, tg: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bridges.telegram.channel as tg_channel

    monkeypatch.setattr(tg_channel, "TYPING_EVERY", 0.1)
    core = services(client).core
    inner = core.agent

    class SlowAgent:  # an LLM taking its time
        async def respond(self, conversation: ConversationView, hist: list[MessageView]) -> Turn:
            await asyncio.sleep(0.6)
            return await inner.respond(conversation, hist)

    monkeypatch.setattr(core, "agent", SlowAgent())
    assert await hook(client, text_update(60, 508, "What payment methods do you accept?")) == 200
    await texts(tg, 508, 1)
    answer = tg.attempts("sendMessage", 508)[0]
    before = [c for c in tg.attempts("sendChatAction", 508) if c.at < answer.at]
    assert len(before) >= 3  # refreshed, as Telegram shows it for 5 seconds only
    channel = services(client).bridges["telegram"]

    async def stopped() -> bool:
        return not channel._typing

    await eventually(stopped)
    after = [c for c in tg.attempts("sendChatAction", 508) if c.at > answer.at]
    assert len(after) <= 1  # at most one already on its way when the answer went out
