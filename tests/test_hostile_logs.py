"""A failed statement must not put shoppers' data in the logs: SQLAlchemy's error message carries
the statement's parameters (names, emails, message text) unless the engine hides them, and that
message is what a logged traceback prints. Provoked on SQLite and (with TEST_DATABASE_URL)
PostgreSQL, through the engine the service itself makes."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.exc import DBAPIError

from core.logs import setup_logging
from storage.db import make_engine, make_sessionmaker
from storage.migrate import upgrade_async
from storage.models import Customer, Message

BACKENDS = ["sqlite"] + (["postgresql"] if os.environ.get("TEST_DATABASE_URL") else [])
SECRETS = ("Annabel Secretname", "annabel.secret@example.com", "my parcel never came, call me")


@pytest.fixture(params=BACKENDS)
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path}/logs.db"
        await upgrade_async(url)
        yield url
        return
    from tests.test_core_delivery import fresh_pg_database

    async with fresh_pg_database() as url:
        await upgrade_async(url)
        yield url


async def test_a_failed_insert_logs_no_parameters(
    database_url: str, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = make_engine(database_url)
    sessions = make_sessionmaker(engine)
    log = logging.getLogger("handoff.core")
    async with sessions.begin() as s:
        s.add(Customer(channel="widget", external_id=SECRETS[1], name=SECRETS[0], email=SECRETS[1]))
    bad_rows = [
        # A message for a conversation that does not exist: a foreign-key violation.
        Message(conversation_id=987654, role="shopper", text=SECRETS[2], source="widget"),
        # The same customer again: a unique violation (PostgreSQL's DETAIL names the key's values).
        Customer(channel="widget", external_id=SECRETS[1], name=SECRETS[0], email=SECRETS[1]),
        # A missing column: PostgreSQL's DETAIL shows the whole failing row.
        Customer(channel=None, external_id="x", name=SECRETS[0], email=SECRETS[1]),
        # What intake now cleans, should it ever get this far (asyncpg quotes the value).
        Message(conversation_id=987654, role="shopper", text=SECRETS[2] + " \ud800", source="widget"),
        Message(conversation_id=987654, role="shopper", text=SECRETS[2] + " \x00", source="widget"),
    ]
    failures: list[Exception] = []
    try:
        for row in bad_rows:
            with pytest.raises(Exception) as failed:  # noqa: PT011
                async with sessions.begin() as s:
                    s.add(row)
            failures.append(failed.value)
    finally:
        await engine.dispose()
    assert any(isinstance(f, DBAPIError) for f in failures)
    setup_logging("INFO")  # the service's JSON log lines, as `handoff run` writes them
    with caplog.at_level(logging.ERROR):
        for exc in failures:
            try:
                raise exc
            except Exception:
                log.exception("processing conversation 1 failed")
    written = caplog.text + capsys.readouterr().err
    assert "INSERT INTO" in written  # the failures were logged, statement and all
    for secret in SECRETS:
        assert secret not in written
