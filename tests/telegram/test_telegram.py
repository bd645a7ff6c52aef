"""Telegram as a shopper channel: python-telegram-bot against a fake Bot API on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bot.cli import main
from bridges.telegram.channel import split_text
from tests.conftest import eventually, services
from tests.telegram.fake_telegram import TOKEN, FakeTelegram, text_update

SECRET = "tg-webhook-secret"
AUTH = {"Authorization": "Bearer inbox-secret"}


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    fake = await FakeTelegram().start()
    yield fake
    await fake.close()


@pytest.fixture
async def client(make_client: Any, tg: FakeTelegram) -> TestClient:
    return await make_client(
        telegram_bot_token=TOKEN, telegram_webhook_secret=SECRET, telegram_api_url=tg.url
    )


async def hook(client: TestClient, update: dict[str, Any], secret: str | None = SECRET) -> int:
    headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret is not None else {}
    resp = await client.post("/telegram/webhook", json=update, headers=headers)
    return resp.status


async def _texts(tg: FakeTelegram, chat: int, n: int) -> list[str] | None:
    texts = tg.texts(chat)
    return texts if len(texts) >= n else None


async def test_webhook_good_and_bad_secret_welcome_and_answer(
    client: TestClient, tg: FakeTelegram
) -> None:
    assert await hook(client, text_update(1, 501, "/start")) == 200
    assert await hook(client, text_update(2, 501, "How long does delivery to Austria take?")) == 200
    texts = await eventually(lambda: _texts(tg, 501, 2))
    assert "assistant" in texts[0].lower()
    assert "2–4 working days" in texts[1] and "shipping.md" in texts[1]
    assert any(m == "sendChatAction" for m, _, _ in tg.calls)
    # wrong or missing secret: 401, and nothing is taken in
    assert await hook(client, text_update(3, 501, "forged"), secret="nope") == 401
    assert await hook(client, text_update(4, 501, "forged"), secret=None) == 401
    await services(client).worker.drain()
    conv = await services(client).core.conversation_for_channel("telegram", "501", "501")
    hist = await services(client).core.history(conv.id)
    assert "forged" not in [m.text for m in hist]
    assert (
        conv.customer.name == "Lena"
        and conv.customer.username == "lena"
        and conv.customer.email is None
    )
    resp = await client.post(
        "/telegram/webhook", data=b"{nope", headers={"X-Telegram-Bot-Api-Secret-Token": SECRET}
    )
    assert resp.status == 400


async def test_duplicate_update_ids_processed_once(client: TestClient, tg: FakeTelegram) -> None:
    upd = text_update(10, 502, "What payment methods do you accept?")
    assert await hook(client, upd) == 200
    assert await hook(client, upd) == 200  # Telegram redelivers
    await services(client).core.idle()
    await services(client).worker.drain()
    assert len(tg.texts(502)) == 1
    conv = await services(client).core.conversation_for_channel("telegram", "502", "502")
    assert [m.role for m in await services(client).core.history(conv.id)] == ["shopper", "agent"]


async def test_media_and_edits(client: TestClient, tg: FakeTelegram) -> None:
    photo = {
        "update_id": 20,
        "message": {
            "message_id": 1,
            "date": 1,
            "chat": {"id": 503, "type": "private"},
            "from": {"id": 503, "is_bot": False, "first_name": "Ola"},
            "photo": [{"file_id": "x"}],
        },
    }
    assert await hook(client, photo) == 200
    edit = {
        "update_id": 21,
        "edited_message": {
            "message_id": 1,
            "date": 1,
            "edit_date": 2,
            "chat": {"id": 503, "type": "private"},
            "from": {"id": 503, "is_bot": False, "first_name": "Ola"},
            "text": "fixed typo",
        },
    }
    assert await hook(client, edit) == 200
    await services(client).core.idle()
    texts = await eventually(lambda: _texts(tg, 503, 1))
    assert "only read text" in texts[0]
    conv = await services(client).core.conversation_for_channel("telegram", "503", "503")
    hist = [(m.role, m.text) for m in await services(client).core.history(conv.id)]
    assert ("shopper", "[photo]") in hist and ("shopper", "(edited) fixed typo") in hist
    assert not any(r == "agent" for r, _ in hist)  # neither was answered by the agent


async def test_handoff_and_human_reply_reach_the_chat_long_reply_split(
    client: TestClient, tg: FakeTelegram
) -> None:
    await hook(client, text_update(30, 504, "Can I talk to a person please?"))
    await eventually(lambda: _texts(tg, 504, 1))
    conv = await services(client).core.conversation_for_channel("telegram", "504", "504")
    assert (await services(client).core.get(conv.id)).state == "queued"
    long_reply = ("We checked everything about your order. " * 150).strip()  # ~6,000 characters
    resp = await client.post(
        f"/inbox/api/conversations/{conv.id}/reply",
        json={"text": "Hi Lena, Maria here.", "author": "Maria Lopez"},
        headers=AUTH,
    )
    assert resp.status == 200
    # the inbox caps replies at 4,000 characters, so a long one is sent in two replies here
    await client.post(
        f"/inbox/api/conversations/{conv.id}/reply",
        json={"text": long_reply[:3990], "author": "Maria Lopez"},
        headers=AUTH,
    )
    texts = await eventually(lambda: _texts(tg, 504, 3))
    assert texts[1] == "Maria: Hi Lena, Maria here."
    parts = split_text("x " * 3000 + "\n" + "y. " * 1000)
    assert all(len(p) <= 4096 for p in parts) and "".join(parts).replace(" ", "").replace(
        "\n", ""
    ) == ("x" * 3000 + "y." * 1000)


async def test_long_agent_answer_split_on_bounds(tg: FakeTelegram) -> None:
    from datetime import UTC, datetime

    from bot.ports import ConversationView, CustomerView
    from bot.settings import Settings
    from bridges.telegram.channel import TelegramChannel
    from bridges.telegram.setup import make_bot

    bot = make_bot(Settings(_env_file=None, telegram_bot_token=TOKEN, telegram_api_url=tg.url))
    async with bot:
        channel = TelegramChannel(bot)
        conv = ConversationView(
            1,
            "telegram",
            "505",
            "bot",
            None,
            0,
            (),
            None,
            None,
            {},
            {},
            None,
            None,
            False,
            CustomerView(1, "telegram", "505"),
            datetime.now(UTC),
        )
        text = "\n".join(f"Line {i}: " + "word " * 30 for i in range(60))  # ~9,600 characters
        result = await channel.send(conv, {"id": 7, "role": "agent", "text": text})
    assert result["parts"] == 3
    sent = tg.texts(505)
    assert len(sent) == 3 and all(len(p) <= 4096 for p in sent)
    assert all(p.rstrip().endswith("word") for p in sent[:-1])  # cut at line ends, not mid-word
    assert "\n".join(sent).count("Line ") == 60


async def test_rate_limit_recovery_and_blocked_bot(make_client: Any, tg: FakeTelegram) -> None:
    tg.per_chat_interval = 0.5
    tg.retry_after = 1
    client = await make_client(
        telegram_bot_token=TOKEN, telegram_webhook_secret=SECRET, telegram_api_url=tg.url
    )
    # our own pacing allows short bursts of 3 per chat; the fake is stricter, so 429s happen
    for i, q in enumerate(
        [
            "What payment methods do you accept?",
            "How long do I have to return shoes?",
            "When does the next drop start?",
            "How long does delivery to Austria take?",
        ]
    ):
        await hook(client, text_update(40 + i, 506, q))
    await services(client).core.idle()
    await services(client).worker.drain(timeout=30)
    assert any(status == 429 for _, _, status in tg.calls)
    assert len(tg.texts(506)) == 4  # every answer once, none lost, none twice
    # A shopper who blocked the bot: marked, no retry storm, the inbox shows it.
    tg.blocked_chats.add(507)
    await hook(client, text_update(50, 507, "What payment methods do you accept?"))
    await services(client).core.idle()
    await services(client).worker.drain(timeout=30)
    attempts = [c for c in tg.calls if c[0] == "sendMessage" and int(c[1]["chat_id"]) == 507]
    assert len(attempts) == 1
    conv = await services(client).core.conversation_for_channel("telegram", "507", "507")
    assert (await services(client).core.get(conv.id)).blocked
    listing = await (await client.get("/inbox/api/conversations?state=all", headers=AUTH)).json()
    assert next(c for c in listing["conversations"] if c["id"] == conv.id)["blocked"] is True


async def test_polling_mode(make_client: Any, tg: FakeTelegram) -> None:
    tg.updates = [
        text_update(60, 508, "How long do I have to return shoes?"),
        text_update(61, 508, "Thanks!"),
    ]
    client = await make_client(
        telegram_bot_token=TOKEN,
        telegram_mode="polling",
        telegram_api_url=tg.url,
        telegram_poll_timeout=1,
    )
    texts = await eventually(lambda: _texts(tg, 508, 2), timeout=15)
    assert "returns.md" in texts[0]

    async def confirmed() -> bool:
        return 62 in [int(a.get("offset") or 0) for m, a, _ in tg.calls if m == "getUpdates"]

    assert await eventually(confirmed)  # the next getUpdates confirms the last update
    assert (
        await client.post("/telegram/webhook", json={})
    ).status == 404  # no webhook while polling


async def test_set_webhook_command(
    tg: FakeTelegram, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("TELEGRAM_API_URL", tg.url)
    # the CLI runs its own event loop: in a thread, so the fake server keeps serving on ours
    assert (
        await asyncio.to_thread(main, ["telegram", "set-webhook", "https://shop.example.com"]) == 2
    )  # no secret yet
    monkeypatch.setenv("TELEGRAM_WEBHOOK_SECRET", SECRET)
    assert (
        await asyncio.to_thread(main, ["telegram", "set-webhook", "https://shop.example.com"]) == 0
    )
    assert tg.webhook["url"] == "https://shop.example.com/telegram/webhook"
    assert tg.webhook["secret_token"] == SECRET
    assert "webhook set" in capsys.readouterr().out
