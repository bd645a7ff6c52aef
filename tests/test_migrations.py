"""The migrations build exactly the schema the code expects, on SQLite and PostgreSQL: a model
change without its migration would pass every other test (they run on the migrated template) and
only fail on an operator's upgraded database, or silently lack an index there."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from storage.migrate import upgrade_async
from storage.models import Base
from tests.conftest import PG, fresh_pg_database


def _differences(sync_conn: Any) -> list[Any]:
    return list(compare_metadata(MigrationContext.configure(sync_conn), Base.metadata))


async def _schema_diff(url: str) -> list[Any]:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_differences)
    finally:
        await engine.dispose()


async def test_sqlite_migrations_match_the_models(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
    await upgrade_async(url)
    assert await _schema_diff(url) == []


async def test_the_waits_recent_claims_are_read_through_an_index(tmp_path: Path) -> None:
    """Every handoff reads the last hour's claims; a full scan grows with every state change."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'plan.db'}"
    await upgrade_async(url)
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            plan = (
                await conn.execute(
                    text(
                        "EXPLAIN QUERY PLAN SELECT conversation_id, at FROM state_events "
                        "WHERE new = 'claimed' AND at >= '2026-01-01' AND kind = 'state'"
                    )
                )
            ).all()
    finally:
        await engine.dispose()
    assert any("ix_state_events_new_at" in str(row[-1]) for row in plan), plan


@pytest.mark.postgres
@pytest.mark.skipif(not PG, reason="needs TEST_DATABASE_URL")
async def test_postgresql_migrations_match_the_models() -> None:
    async with fresh_pg_database() as url:
        assert await _schema_diff(url) == []
