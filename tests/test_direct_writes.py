"""The writer's batch statements on SQLite run on the sqlite3 connection itself (storage/direct.py).
What they store must be byte for byte what the engine's path stores (a timestamp in the same text
form, JSON in the same serialisation, defaults filled in), and they must return the same ids and
rows, or a reply would go to the wrong message or a message be answered twice."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from storage import direct, repo
from storage.db import make_engine, make_sessionmaker
from storage.models import Conversation, Customer
from tests.conftest import migrated_sqlite

NOW = datetime(2026, 11, 27, 21, 0, 3, 250001, tzinfo=UTC)


@pytest.fixture
async def engines(tmp_path: Path, sqlite_template: Path) -> AsyncIterator[dict[str, AsyncEngine]]:
    """Two databases alike: one written through the direct path (the service's engine), one
    through SQLAlchemy's (a plain aiosqlite engine, whose connection lives in its own thread)."""
    made = {
        "direct": make_engine(migrated_sqlite(sqlite_template, tmp_path / "direct.db")),
        "engine": create_async_engine(migrated_sqlite(sqlite_template, tmp_path / "engine.db")),
    }
    yield made
    for e in made.values():
        await e.dispose()


def _dump(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    conn = sqlite3.connect(path)
    try:
        return {
            t: conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall()  # noqa: S608
            for t in ("conversations", "messages")
        }
    finally:
        conn.close()


async def _scenario(engine: AsyncEngine) -> dict[str, Any]:
    """One batch of intake and one of turns, as core/lifecycle.py's bulk operations write them."""
    sessions = make_sessionmaker(engine)
    async with sessions() as s, s.begin():
        ann = Customer(channel="widget", external_id="w-1", name="Ann", created_at=NOW)
        s.add(ann)
        await s.flush()
        convs = [
            Conversation(channel="widget", customer_id=ann.id, created_at=NOW, updated_at=NOW)
            for _ in range(3)
        ]
        s.add_all(convs)
        await s.flush()
        ids = [c.id for c in convs]
    out: dict[str, Any] = {}
    async with sessions() as s, s.begin():
        conn = await s.connection()
        out["direct"] = await direct.sqlite_of(conn) is not None
        later = NOW + timedelta(seconds=1)
        out["touched"] = await repo.touch_conversations(s, {ids[0], ids[2], 999}, later)
        rows = [
            {
                "conversation_id": cid, "role": "shopper", "text": text, "source": "widget",
                "platform_id": pid, "handled": False, "meta": meta, "created_at": later,
            }
            for cid, text, pid, meta in [
                (ids[0], "Where is FP-1? ünïcode ✓", "c1", {"client_id": "c1"}),
                (ids[2], "Hello", "c2", {}),
                (ids[0], "no id", None, {"k": [1, 2.5, None]}),
            ]
        ]
        out["first"] = await repo.insert_messages_once(s, rows)
        out["again"] = await repo.insert_messages_once(s, rows[:2])  # a resend: stored before
    async with sessions() as s, s.begin():
        mids = [m for m in out["first"] if m is not None]
        out["states"] = {
            k: tuple(v) for k, v in (await repo.lock_states(s, {ids[0], ids[2]})).items()
        }
        out["taken"] = await repo.take_unhandled(s, mids[:2])
        out["taken_again"] = await repo.take_unhandled(s, mids[:2])
        await repo.set_memories(
            s, [(ids[0], {"turn": 1, "entities": {"order_number": ["FP-1"]}}), (ids[2], None)], NOW
        )
        replies = [
            {
                "conversation_id": cid, "role": "agent", "text": f"reply {n}", "author": None,
                "source": "core", "platform_id": None, "handled": True,
                "meta": {"sources": ["faq.md"], "reply_to": mid}, "tokens_in": n,
                "tokens_out": 2 * n, "latency_ms": 3, "created_at": NOW,
            }
            for n, (cid, mid) in enumerate([(ids[0], mids[0]), (ids[2], mids[1]), (ids[0], 0)])
        ]
        out["reply_ids"] = await repo.insert_messages(s, replies)
    return out


async def test_direct_writes_store_what_the_engine_stores(
    engines: dict[str, AsyncEngine], tmp_path: Path
) -> None:
    got = {name: await _scenario(e) for name, e in engines.items()}
    assert got["direct"].pop("direct") is True
    assert got["engine"].pop("direct") is False  # the comparison is between the two paths
    assert got["direct"] == got["engine"]
    assert got["direct"]["again"] == [None, None]
    assert got["direct"]["taken_again"] == set()
    assert got["direct"]["reply_ids"] == sorted(got["direct"]["reply_ids"])
    assert _dump(tmp_path / "direct.db") == _dump(tmp_path / "engine.db")


async def test_a_batch_of_hundreds_is_one_statement_per_chunk_with_ids_in_order(
    engines: dict[str, AsyncEngine],
) -> None:
    sessions = make_sessionmaker(engines["direct"])
    async with sessions() as s, s.begin():
        ann = Customer(channel="widget", external_id="w-1")
        s.add(ann)
        await s.flush()
        conv = Conversation(channel="widget", customer_id=ann.id)
        s.add(conv)
        await s.flush()
        rows = [
            {"conversation_id": conv.id, "role": "agent", "text": f"#{i}", "created_at": NOW}
            for i in range(1200)  # more than one chunk
        ]
        before = direct.executed.get("INSERT", 0)
        ids = await repo.insert_messages(s, rows)
        assert direct.executed.get("INSERT", 0) - before == 3
        texts = dict(
            (await (await s.connection()).exec_driver_sql("SELECT id, text FROM messages")).all()
        )
    assert [texts[i] for i in ids] == [r["text"] for r in rows]


async def test_a_failed_direct_write_is_the_engines_error(
    engines: dict[str, AsyncEngine],
) -> None:
    sessions = make_sessionmaker(engines["direct"])
    row = {"conversation_id": 12345, "role": "agent", "text": "x", "created_at": NOW}
    with pytest.raises(IntegrityError):  # no such conversation (foreign keys are on)
        async with sessions() as s, s.begin():
            await repo.insert_messages(s, [row])
