"""Polling mode: our own getUpdates task on the service's event loop, never PTB's run_polling."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import eventually
from tests.telegram.conftest import history, settle, texts
from tests.telegram.fake_telegram import FakeTelegram, text_update

Start = Callable[..., Awaitable[TestClient]]


async def test_polling_takes_updates_in_order_once_and_confirms_them(
    start_service: Start, tg: FakeTelegram
) -> None:
    client = await start_service(telegram_mode="polling", telegram_poll_timeout=25)
    # No webhook route in polling mode.
    assert (await client.post("/telegram/webhook", json={})).status == 404
    questions = [
        "How long do I have to return shoes?",
        "What payment methods do you accept?",
        "How long does delivery to Austria take?",
    ]
    tg.push(*(text_update(60 + i, 701, q) for i, q in enumerate(questions)))
    got = await texts(tg, 701, 3)
    assert "returns.md" in got[0] and "2–4 working days" in got[2]
    hist = await history(client, 701)
    assert [m.text for m in hist if m.role == "shopper"] == questions

    async def confirmed() -> bool:  # the next getUpdates carries offset = last + 1
        return tg.unconfirmed() == []

    assert await eventually(confirmed)
    allowed = tg.attempts("getUpdates")[-1].args["allowed_updates"]
    assert set(allowed) == {"message", "edited_message", "my_chat_member", "callback_query"}
    # Telegram hands out an update again (not confirmed before a restart, say): taken once.
    tg.push(text_update(62, 701, "How long does delivery to Austria take?"))
    tg.push(text_update(63, 701, "When does the next drop start?"))
    await texts(tg, 701, 4)
    await settle(client)
    assert len(tg.texts(701)) == 4


async def test_the_long_poll_does_not_own_the_loop_and_stops_at_once(
    start_service: Start, tg: FakeTelegram
) -> None:
    client = await start_service(telegram_mode="polling", telegram_poll_timeout=25)

    async def polling() -> bool:
        return tg.polls_open == 1

    await eventually(polling)
    # While a 25-second getUpdates is open, the rest of the service answers.
    t0 = time.monotonic()
    assert (await client.get("/healthz")).status == 200
    assert time.monotonic() - t0 < 1.0
    t0 = time.monotonic()
    await client.close()  # the polling task is cancelled with the app
    assert time.monotonic() - t0 < 5.0


async def test_polling_waits_out_a_webhook_conflict(
    start_service: Start,
    tg: FakeTelegram,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import bridges.telegram.setup as tg_setup

    monkeypatch.setattr(tg_setup, "CONFLICT_PAUSE", 0.05)
    tg.webhook = {"url": "https://old.example.com/telegram/webhook"}
    caplog.set_level(logging.ERROR, logger="handoff.telegram")
    await start_service(telegram_mode="polling", telegram_poll_timeout=1)

    async def conflicted() -> bool:
        return len([c for c in tg.attempts("getUpdates") if c.status == 409]) >= 3

    await eventually(conflicted)
    hints = [r for r in caplog.records if "delete-webhook" in r.getMessage()]
    assert len(hints) == 1  # said once, not at every retry
    tg.webhook = {}  # someone ran `handoff telegram delete-webhook`
    tg.push(text_update(70, 702, "What payment methods do you accept?"))
    await texts(tg, 702, 1)
