"""The hot reads on a SQLite file run on the sqlite3 connection itself (storage/direct.py): what
they return must be exactly what the engine's path returns on the same database, or a turn would
see another conversation than the one stored (a timestamp without its zone, a JSON document
left a string, a note in the agent's history)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import StaticPool

from storage import direct, repo
from storage.db import make_engine, make_sessionmaker
from storage.hotreads import HotReads
from storage.models import Conversation, ConversationTag, Customer, Message
from tests.conftest import migrated_sqlite

T0 = datetime(2026, 11, 27, 9, 30, 15, 123456, tzinfo=UTC)


@pytest.fixture
async def db(tmp_path: Path, sqlite_template: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(migrated_sqlite(sqlite_template, tmp_path / "direct.db"))
    yield make_sessionmaker(engine)
    await engine.dispose()


async def _conversations(sessions: async_sessionmaker[AsyncSession]) -> list[int]:
    """Conversations unlike each other in every column a turn reads."""
    async with sessions() as s, s.begin():
        ann = Customer(
            channel="widget", external_id="w-1", name="Ann Ö'Brien", email="ann@example.com",
            tier="vip", claimed_email="ann@other.example",
        )
        bob = Customer(channel="telegram", external_id="42", username="bob")  # most fields None
        s.add_all([ann, bob])
        await s.flush()
        busy = Conversation(
            channel="widget", customer_id=ann.id, state="bot", priority=2, token_hash="h" * 64,
            memory={"turn": 3, "entities": {"order_number": ["FP-100234"]}, "note": "naïve ✓"},
            context={"wait": {"ahead": 1}}, inbox_ref={"ts": "1700000000.000100"}, sale="black-friday",
            reason="r", summary="s", created_at=T0, handed_off_at=T0 + timedelta(minutes=5),
            blocked=False,
        )
        queued = Conversation(channel="telegram", customer_id=bob.id, state="queued", created_at=T0)
        idle = Conversation(channel="widget", customer_id=bob.id, state="bot", created_at=T0)
        s.add_all([busy, queued, idle])
        await s.flush()
        s.add_all(
            [ConversationTag(conversation_id=busy.id, tag=t) for t in ("vip", "flash-cancellation")]
        )
        rows = [
            ("shopper", "Where is my order FP-100234?", True, {"client_id": "c1"}, "c1", None),
            ("agent", "It ships today.", True, {"sources": ["shipping.md"]}, None, None),
            ("note", "internal: call the carrier", True, {}, None, "Maria"),
            ("human", "Hi, Maria here 👋", True, {}, None, "Maria"),
            ("shopper", "Can I cancel it?", False, {"client_id": "c2"}, "c2", None),
            ("shopper", "Please!", False, {}, None, None),
        ]
        for i, (role, text, handled, meta, pid, author) in enumerate(rows):
            s.add(
                Message(
                    conversation_id=busy.id, role=role, text=text, handled=handled, meta=meta,
                    platform_id=pid, author=author, source="widget",
                    created_at=T0 + timedelta(seconds=i, microseconds=7),
                )
            )
        s.add(Message(conversation_id=queued.id, role="shopper", text="hello", source="telegram",
                      handled=False, created_at=T0))
        return [busy.id, queued.id, idle.id, 999_999]


async def _engine_path(
    sessions: async_sessionmaker[AsyncSession], cid: int, last: int
) -> dict[str, Any]:
    async with sessions() as s:
        conn = await s.connection()
        inputs = await repo.turn_inputs(conn, cid)
        history = (
            await repo.last_messages(conn, cid, inputs.first_unhandled, last)
            if inputs is not None and inputs.first_unhandled is not None
            else None
        )
        return {
            "inputs": inputs,
            "history": history,
            "token": await repo.token_state(conn, cid),
            "page": await repo.page_after(conn, cid, 1, 3),
            "page_all": await repo.page_after(conn, cid, 0, 100),
        }


async def test_direct_reads_return_what_the_engine_returns(
    db: async_sessionmaker[AsyncSession],
) -> None:
    ids = await _conversations(db)
    reads = HotReads(db)
    assert reads._direct is not None, "a SQLite file's hot reads run on the connection itself"
    before = sum(direct.executed.values())
    for cid in ids:
        for last in (1, 2, 10):
            want = await _engine_path(db, cid, last)
            turn = await reads.turn(cid, last)
            if want["inputs"] is None or want["inputs"].first_unhandled is None:
                assert turn is None
            else:
                assert turn is not None
                inputs, history = turn
                assert inputs == want["inputs"]
                expected = want["history"] if inputs.view.state == "bot" else []
                assert history == expected
            assert await reads.token_state(cid) == want["token"]
            assert await reads.page_after(cid, 1, 3) == want["page"]
            assert await reads.page_after(cid, 0, 100) == want["page_all"]
    assert sum(direct.executed.values()) > before
    await reads.close()

    # What a turn sees, spelled out: the zone kept, JSON parsed, notes left out, tags sorted.
    reads = HotReads(db)
    found = await reads.turn(ids[0], 10)
    assert found is not None
    inputs, history = found
    assert inputs.view.created_at == T0 and inputs.view.created_at.tzinfo is not None
    assert inputs.view.memory["note"] == "naïve ✓"
    assert inputs.view.tags == ("flash-cancellation", "vip")
    assert inputs.view.customer.tier == "vip"
    assert inputs.unhandled == 2
    assert [m.role for m in history] == ["shopper", "agent", "human", "shopper"]
    assert history[-1].id == inputs.first_unhandled and history[-1].text == "Can I cancel it?"
    assert all(m.meta == {} for m in history)  # an agent reads who said what, not the meta
    page = await reads.page_after(ids[0], 0, 100)  # a client's catch-up carries it
    assert [m.meta for m in page if m.role == "agent"] == [{"sources": ["shipping.md"]}]
    await reads.close()


async def test_a_failed_read_is_the_engines_error_and_the_next_one_reconnects(
    db: async_sessionmaker[AsyncSession],
) -> None:
    ids = await _conversations(db)
    reads = HotReads(db)
    assert await reads.token_state(ids[0]) == ("h" * 64, "bot")
    assert reads._direct is not None and reads._direct._conn is not None
    reads._direct._conn.close()  # the held connection breaks under it
    with pytest.raises(DBAPIError):
        await reads.token_state(ids[0])
    assert await reads.token_state(ids[0]) == ("h" * 64, "bot")
    await reads.close()


async def test_an_in_memory_database_reads_through_the_engine(tmp_path: Path) -> None:
    for url in ("sqlite+aiosqlite:///:memory:", "sqlite+aiosqlite:///file:x?mode=memory&uri=true"):
        engine = create_async_engine(url, poolclass=StaticPool)
        reads = HotReads(make_sessionmaker(engine))
        assert reads._direct is None  # a second connection would not see the first's database
        await engine.dispose()
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path}/memory/handoff.db")
    assert HotReads(make_sessionmaker(engine))._direct is not None  # a file named "memory" is a file
    await engine.dispose()


async def test_reads_after_close_open_nothing_new(db: async_sessionmaker[AsyncSession]) -> None:
    ids = await _conversations(db)
    reads = HotReads(db)
    assert await reads.token_state(ids[0]) == ("h" * 64, "bot")
    await reads.close()
    assert await reads.token_state(ids[0]) == ("h" * 64, "bot")  # through a session
    assert reads._direct is None
