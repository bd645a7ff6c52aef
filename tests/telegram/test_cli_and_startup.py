"""`handoff telegram …` against the fake Bot API, and how the service starts with Telegram."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import pytest
from aiohttp.test_utils import TestClient

from bot.app import ConfigurationError
from bot.cli import main
from tests.telegram.conftest import SECRET, hook, texts
from tests.telegram.fake_telegram import TOKEN, FakeTelegram, text_update

Start = Callable[..., Awaitable[TestClient]]


async def handoff(*argv: str) -> int:
    # The CLI runs its own event loop: in a thread, so the fake server keeps serving on ours.
    return await asyncio.to_thread(main, list(argv))


async def test_set_webhook_delete_webhook_and_info(
    tg: FakeTelegram, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("TELEGRAM_API_URL", tg.url)
    assert await handoff("telegram", "set-webhook", "https://shop.example.com") == 2
    assert "TELEGRAM_WEBHOOK_SECRET" in capsys.readouterr().err  # no secret, no webhook
    monkeypatch.setenv("TELEGRAM_WEBHOOK_SECRET", "has spaces!")
    assert await handoff("telegram", "set-webhook", "https://shop.example.com") == 2
    assert "A-Z, a-z, 0-9, _ and -" in capsys.readouterr().err  # Telegram's rule, said up front
    assert tg.attempts("setWebhook") == []

    monkeypatch.setenv("TELEGRAM_WEBHOOK_SECRET", SECRET)
    assert await handoff("telegram", "set-webhook", "https://shop.example.com/") == 0
    assert "https://shop.example.com/telegram/webhook" in capsys.readouterr().out
    assert tg.webhook["url"] == "https://shop.example.com/telegram/webhook"
    assert tg.webhook["secret_token"] == SECRET
    assert set(tg.webhook["allowed_updates"]) == {"message", "edited_message", "my_chat_member", "callback_query"}

    assert await handoff("telegram", "info") == 0
    out = capsys.readouterr().out
    assert "@flashpoint_bot" in out and "https://shop.example.com/telegram/webhook" in out

    # Telegram's own refusal is shown, not a traceback.
    assert await handoff("telegram", "set-webhook", "http://plain.example.com") == 1
    assert "https url must be provided" in capsys.readouterr().err.lower()

    assert await handoff("telegram", "delete-webhook") == 0
    assert tg.webhook == {}
    assert "polling" in capsys.readouterr().out
    assert TOKEN not in capsys.readouterr().out + capsys.readouterr().err


async def test_a_rejected_token_stops_the_start_without_showing_it(
    start_service: Start,
) -> None:
    with pytest.raises(ConfigurationError) as info:
        await start_service(telegram_bot_token="999:not-a-real-token")
    assert "TELEGRAM_BOT_TOKEN was rejected" in str(info.value)
    assert "not-a-real-token" not in str(info.value)


async def test_telegram_down_at_start_does_not_stop_the_service(
    start_service: Start, tg: FakeTelegram
) -> None:
    tg.fail("getMe", 502)
    tg.fail("sendMessage", 502, times=2)
    client = await start_service()
    assert (await client.get("/healthz")).status == 200
    assert await hook(client, text_update(1, 801, "What payment methods do you accept?")) == 200
    got = await texts(tg, 801, 1)  # the reply waited in the outbox until Telegram was back
    assert len(got) == 1 and [c.status for c in tg.attempts("sendMessage")] == [502, 502, 200]


async def test_the_bot_token_never_reaches_the_logs(
    start_service: Start, tg: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tg.fail("sendMessage", 500)
    client = await start_service()
    assert await hook(client, text_update(1, 802, "What payment methods do you accept?")) == 200
    await texts(tg, 802, 1)
    assert any("sendMessage" in r.getMessage() for r in caplog.records)  # the calls were logged
    assert "/bot<bot-token>/sendMessage" in caplog.text  # httpx's request line, redacted
    assert TOKEN not in caplog.text
    assert TOKEN.split(":")[1] not in caplog.text


async def test_an_unknown_mode_is_a_configuration_error(start_service: Start) -> None:
    with pytest.raises(ConfigurationError, match="TELEGRAM_MODE"):
        await start_service(telegram_mode="carrier-pigeon")


async def test_add_telegram_commands_plugs_into_any_cli(
    tg: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    import argparse

    from bridges.telegram.cli import add_telegram_commands

    parser = argparse.ArgumentParser(prog="handoff")
    add_telegram_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(
        ["telegram", "set-webhook", "https://shop.example.com", "--drop-pending-updates"]
    )
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("TELEGRAM_API_URL", tg.url)
    monkeypatch.setenv("TELEGRAM_WEBHOOK_SECRET", SECRET)
    tg.push(text_update(1, 803, "old news"))
    assert await asyncio.to_thread(args.func, args) == 0
    assert tg.webhook["url"] == "https://shop.example.com/telegram/webhook"
    assert tg.unconfirmed() == []  # pending updates dropped, as asked
