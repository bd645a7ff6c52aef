"""Polling is one instance's job at a time: two services on one database (SQLite, and PostgreSQL
when TEST_DATABASE_URL is set), each configured to poll; only the holder of the lease in the
database calls getUpdates; a stopped holder hands over at once, a dead one once its lease
expires; no update is answered twice across the handovers."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from storage.models import Lease
from tests.conftest import eventually, fresh_pg_database, services
from tests.telegram.conftest import history, settle, texts
from tests.telegram.fake_telegram import FakeTelegram, text_update

Start = Callable[..., Awaitable[TestClient]]
LEASE = 4.0  # seconds: renewed every 4/3 s, asked for every 2/3 s by an instance without it
CHAT = 901
QUESTIONS = [
    "How long do I have to return shoes?",
    "What payment methods do you accept?",
    "How long does delivery to Austria take?",
    "When does the next drop start?",
]


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(request: pytest.FixtureRequest) -> AsyncIterator[dict[str, Any]]:
    if request.param == "sqlite":
        yield {}  # every service of the test on the test's one SQLite file
        return
    if not os.environ.get("TEST_DATABASE_URL"):
        pytest.skip("needs TEST_DATABASE_URL (PostgreSQL)")
    async with fresh_pg_database() as url:
        yield {"database_url": url}


def polling(client: TestClient) -> bool:
    return bool(services(client).bridges["telegram"].polling)  # type: ignore[attr-defined]


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    async def probe() -> bool:
        return check()

    await eventually(probe, timeout=timeout)


async def test_one_instance_polls_and_another_takes_over_when_it_stops_or_dies(
    start_service: Start, tg: FakeTelegram, database: dict[str, Any]
) -> None:
    settings = dict(
        telegram_mode="polling",
        telegram_poll_timeout=1,
        telegram_poll_lease_seconds=LEASE,
        **database,
    )
    first = await start_service(**settings)
    await until(lambda: polling(first))
    second = await start_service(**settings)
    core = services(second).core
    # The second asks for the lease and is refused while the first holds it.
    assert not await core.hold_lease("telegram-polling", "someone-else", LEASE)
    tg.push(text_update(1, CHAT, QUESTIONS[0]))
    await texts(tg, CHAT, 1)
    started = time.monotonic()
    while time.monotonic() - started < LEASE * 1.25:  # past one whole term: it was renewed
        assert polling(first) and not polling(second)
        await until(lambda: tg.polls_open <= 1)
        await settle(first)
        # Looked at every 50 ms through the term (~100 looks), not in a tight loop of queries:
        # that spent ~3 s of CPU per run and starved the suite's other workers.
        await asyncio.sleep(0.05)
    assert tg.poll_conflicts == 0

    # Stopped: the lease is released and the other instance polls at once, not a term later.
    await first.close()
    stopped = time.monotonic()
    async with core.sessions() as s:  # released, not left to expire
        holders = list(await s.scalars(select(Lease.holder)))
    assert holders in ([], [core.instance_id])
    await until(lambda: polling(second))
    assert time.monotonic() - stopped < LEASE
    tg.push(text_update(2, CHAT, QUESTIONS[1]))
    await texts(tg, CHAT, 2)
    # Telegram hands update 1 out again (the first stopped before confirming it): skipped.
    tg.push(text_update(1, CHAT, QUESTIONS[0]), text_update(3, CHAT, QUESTIONS[2]))
    await texts(tg, CHAT, 3)

    # Dies: no release, no renewal. A third instance takes over only once the lease expired.
    third = await start_service(**settings)
    await until(lambda: tg.unconfirmed() == [] and tg.polls_open == 1)
    services(second).bridges["telegram"].poller.cancel()  # type: ignore[attr-defined]
    died = time.monotonic()
    await until(lambda: polling(third), timeout=LEASE * 5)
    assert time.monotonic() - died >= LEASE / 3  # at least the lease's last renewal's rest
    tg.push(text_update(3, CHAT, QUESTIONS[2]), text_update(4, CHAT, QUESTIONS[3]))
    got = await texts(tg, CHAT, 4)
    for client in (second, third):
        await settle(client)
    assert tg.poll_conflicts == 0
    # Every update answered once, whoever polled it.
    assert len(tg.texts(CHAT)) == 4 and "2–4 working days" in got[2]
    shopper = [m.text for m in await history(third, CHAT) if m.role == "shopper"]
    assert shopper == QUESTIONS
