"""The web inbox's lists: queried in SQL a page at a time with every tab's count, the latest
message per row in one query, the same on SQLite and PostgreSQL; and a service holding a few
thousand conversations (what a creation flood leaves) still answers its lists and /healthz fast."""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.queue import QueueReader
from storage.db import make_engine, make_sessionmaker
from storage.migrate import upgrade_async
from storage.models import Conversation, ConversationTag, Customer, Message
from tests.conftest import inbox_login, services
from tests.test_core_delivery import fresh_pg_database

BACKENDS = ["sqlite"] + (["postgresql"] if os.environ.get("TEST_DATABASE_URL") else [])
T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
STATES = ("bot", "queued", "claimed", "resolved")


def _state(i: int) -> str:
    return STATES[i % 4]


def _owner(i: int) -> str | None:
    return ("Maria Lopez" if i % 8 == 2 else "Lee Chan") if _state(i) in ("claimed", "resolved") else None


async def bulk_conversations(sessions: async_sessionmaker[AsyncSession], n: int) -> list[int]:
    """`n` conversations in a mix of states, priorities and waiting times, each with a customer,
    a shopper message and an answer (and an internal note after it on every fifth), inserted
    in bulk, as a flood of anonymous chats would leave them."""
    async with sessions() as s, s.begin():
        first = (await s.scalar(select(Conversation.id).order_by(Conversation.id.desc()).limit(1))) or 0
        await s.execute(insert(Customer), [
            {"id": first + i + 1, "channel": "widget", "external_id": f"bulk-{first + i}", "name": f"Shopper {i}",
             "created_at": T0} for i in range(n)
        ])
        await s.execute(insert(Conversation), [
            {"id": first + i + 1, "channel": "widget", "customer_id": first + i + 1, "state": _state(i),
             "owner": _owner(i), "priority": i % 3, "context": {}, "memory": {}, "blocked": False,
             "handed_off_at": None if _state(i) == "bot" else T0 + timedelta(seconds=(i * 7919) % 1000),
             "created_at": T0, "updated_at": T0} for i in range(n)
        ])
        await s.execute(insert(Message), [
            {"conversation_id": first + i + 1, "role": role, "text": f"{text} {first + i + 1}", "source": "core",
             "handled": True, "meta": {}, "tokens_in": 0, "tokens_out": 0, "latency_ms": 0, "created_at": T0}
            for i in range(n)
            for role, text in [("shopper", "hello"), ("agent", "answer"), *([("note", "internal")] if i % 5 == 0 else [])]
        ])
        await s.execute(insert(ConversationTag), [
            {"conversation_id": first + i + 1, "tag": "vip"} for i in range(n) if i % 6 == 1
        ])
    return [first + i + 1 for i in range(n)]


def _expected(ids: list[int], tab: str, me: str) -> list[int]:
    """Each tab's members in the order the team sees them, worked out without SQL."""
    first = ids[0]
    rows = [(cid, _state(cid - first), _owner(cid - first), (cid - first) % 3,
             None if _state(cid - first) == "bot" else (cid - first) * 7919 % 1000) for cid in ids]
    members = {
        "open": lambda r: r[1] in ("queued", "claimed"),
        "waiting": lambda r: r[1] == "queued",
        "mine": lambda r: r[1] == "claimed" and r[2] == me,
        "bot": lambda r: r[1] == "bot",
        "resolved": lambda r: r[1] == "resolved",
        "all": lambda r: True,
    }[tab]
    chosen = [r for r in rows if members(r)]
    if tab in ("open", "waiting", "mine"):
        chosen.sort(key=lambda r: (-r[3], r[4], r[0]))
    else:
        chosen.sort(key=lambda r: -r[0])
    return [r[0] for r in chosen]


@contextlib.asynccontextmanager
async def _database(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    if backend == "postgresql":
        async with fresh_pg_database() as url:
            yield url
    else:
        yield f"sqlite+aiosqlite:///{tmp_path}/lists.db"


@pytest.fixture(params=BACKENDS)
async def sessions(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    async with _database(request.param, tmp_path) as url:
        await upgrade_async(url)
        engine = make_engine(url)
        yield make_sessionmaker(engine)
        await engine.dispose()


async def test_every_tab_pages_through_its_conversations_once_each_in_order(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    ids = await bulk_conversations(sessions, 237)
    reader = QueueReader(sessions)
    for tab in ("open", "waiting", "mine", "bot", "resolved", "all"):
        seen: list[int] = []
        offset = 0
        while True:
            page = await reader.page(tab, me="Maria Lopez", offset=offset, limit=50)
            assert page.counts[tab] == len(_expected(ids, tab, "Maria Lopez"))
            if not page.conversations:
                break
            assert len(page.conversations) <= 50
            for view in page.conversations:
                assert page.last_texts[view.id] == f"answer {view.id}"  # the latest, not the note
                assert view.tags == (("vip",) if (view.id - ids[0]) % 6 == 1 else ())
            seen += [v.id for v in page.conversations]
            offset += 50
        assert seen == _expected(ids, tab, "Maria Lopez"), tab
    counts = (await reader.page("all", me="Lee Chan")).counts
    assert counts["all"] == 237 and counts["open"] == counts["waiting"] + sum(
        1 for i in range(237) if _state(i) == "claimed"
    )
    assert counts["mine"] == sum(1 for i in range(237) if _state(i) == "claimed" and _owner(i) == "Lee Chan")


async def test_a_page_costs_the_same_few_queries_however_long_it_is(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await bulk_conversations(sessions, 300)
    reader = QueueReader(sessions)
    engine = sessions.kw["bind"].sync_engine
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        per_page = {}
        for limit in (5, 200):
            statements.clear()
            page = await reader.page("all", me="Maria Lopez", limit=limit)
            assert len(page.conversations) == limit
            per_page[limit] = len([s for s in statements if s.lstrip().upper().startswith("SELECT")])
    finally:
        event.remove(engine, "before_cursor_execute", count)
    # the page, its customers, its tags, its latest messages, the counts
    assert per_page[5] == per_page[200] <= 5, per_page


async def test_the_list_endpoint_pages_counts_and_patches_by_id(make_client: Any) -> None:
    client = await make_client()
    ids = await bulk_conversations(services(client).core.sessions, 120)
    maria = await inbox_login(client, "Maria Lopez")
    resp = await client.get("/inbox/api/conversations?state=all&offset=50&limit=50", headers=maria)
    body = await resp.json()
    assert body["total"] == 120 and body["offset"] == 50 and body["limit"] == 50
    assert [c["id"] for c in body["conversations"]] == _expected(ids, "all", "Maria Lopez")[50:100]
    assert body["counts"] == {tab: len(_expected(ids, tab, "Maria Lopez")) for tab in body["counts"]}
    assert body["conversations"][0]["last_text"] == f"answer {body['conversations'][0]['id']}"
    mine = await (await client.get("/inbox/api/conversations?state=mine", headers=maria)).json()
    assert [c["id"] for c in mine["conversations"]] == _expected(ids, "mine", "Maria Lopez") != []
    # What a live event names comes back alone, saying which of this person's tabs it is in.
    claimed_by_lee = next(cid for cid in ids if _state(cid - ids[0]) == "claimed" and _owner(cid - ids[0]) == "Lee Chan")
    patch = await (await client.get(f"/inbox/api/conversations?ids={ids[1]},{claimed_by_lee}", headers=maria)).json()
    assert {c["id"]: c["tabs"] for c in patch["conversations"]} == {
        ids[1]: ["open", "waiting", "all"], claimed_by_lee: ["open", "all"],
    }
    assert patch["counts"]["all"] == 120
    assert (await client.get("/inbox/api/conversations?state=nope", headers=maria)).status == 400
    assert (await client.get("/inbox/api/conversations?limit=x", headers=maria)).status == 400
    huge = await (await client.get("/inbox/api/conversations?state=all&limit=100000", headers=maria)).json()
    assert huge["limit"] == 200 and len(huge["conversations"]) == 120  # pages are capped


async def _timed(call: Any) -> float:
    start = time.perf_counter()
    resp = await call()
    assert resp.status == 200, await resp.text()
    await resp.read()
    return time.perf_counter() - start


async def test_a_few_thousand_conversations_keep_lists_and_healthz_fast(make_client: Any) -> None:
    """The issue's black-box check: after a creation flood, people paging through the inbox's
    lists must not stall the service. /healthz (which queries the outbox through the same single
    SQLite connection) is timed while four clients load lists back to back; the median must stay
    under 500 ms (the old inbox loaded every conversation one by one: seconds per list). The bar
    is wall-clock on a shared machine: quiet, the median is ~20-60 ms; with the suite's parallel
    workers and other people's jobs on 2 cores (load 6-7) it reached 267 ms, so 200 ms failed a
    correct service while 500 ms still fails the seconds the old inbox took."""
    client = await make_client()
    n = 4000
    await bulk_conversations(services(client).core.sessions, n)
    maria = await inbox_login(client, "Maria Lopez")
    list_times: list[float] = []
    stop = asyncio.Event()

    async def browse(k: int) -> None:
        tabs = ["all", "bot", "open", "resolved", "waiting", "mine"]
        i = k
        while not stop.is_set():
            tab = tabs[i % len(tabs)]
            offset = (i * 50) % 1000
            list_times.append(await _timed(lambda tab=tab, offset=offset: client.get(
                f"/inbox/api/conversations?state={tab}&offset={offset}&limit=50", headers=maria)))
            i += 1

    browsers = [asyncio.create_task(browse(k)) for k in range(4)]
    health: list[float] = []
    try:
        await asyncio.sleep(0.2)
        for _ in range(25):
            health.append(await _timed(lambda: client.get("/healthz")))
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await asyncio.gather(*browsers)
    p50 = statistics.median(health)
    print(f"\n{n} conversations: healthz p50 {p50 * 1000:.1f} ms, max {max(health) * 1000:.1f} ms; "
          f"list p50 {statistics.median(list_times) * 1000:.1f} ms over {len(list_times)} pages")
    assert len(list_times) >= 20  # the lists really were being loaded meanwhile
    assert p50 < 0.5, health
