"""Engine and session factory; SQLite gets WAL and a busy timeout so readers never block the writer."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Generator
from typing import Any, cast

import aiosqlite
from sqlalchemy import CursorResult, Result, event
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session, SessionTransaction

log = logging.getLogger("handoff.db")
_AFTER_COMMIT = "after_commit_callbacks"


class AppSession(Session):
    """A Session that runs callbacks registered with `after_commit` once its transaction has
    committed, and drops them if it rolls back: a live event must never announce a change that a
    rollback undid, nor wait for a worker to pick it up from a table."""


@event.listens_for(AppSession, "after_commit")
def _run_after_commit(session: Session) -> None:
    if session.in_nested_transaction():  # a SAVEPOINT released: the outer one may still roll back
        return
    for callback in session.info.pop(_AFTER_COMMIT, []):
        try:
            callback()
        except Exception:  # the change is committed; a failed notification must not undo that
            log.exception("after-commit callback failed")


@event.listens_for(AppSession, "after_transaction_end")
def _drop_after_rollback(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # the outer transaction ended without a commit
        session.info.pop(_AFTER_COMMIT, None)


def after_commit(session: AsyncSession, callback: Callable[[], None]) -> None:
    """Run `callback` (synchronously, in the event loop's thread) when `session` commits."""
    if not isinstance(session.sync_session, AppSession):
        raise TypeError("after_commit needs a session from storage.db.make_sessionmaker")
    session.info.setdefault(_AFTER_COMMIT, []).append(callback)


_ARGUMENT = "invalid input for query argument"


def _redact(exc: BaseException | None) -> None:
    """What PostgreSQL and asyncpg put in an error besides the parameters: a DETAIL with the
    row's key or values ("Key (email)=(ann@example.com) already exists", "Failing row contains
    (...)"), and asyncpg's "invalid input for query argument $3: 'the text…' (reason)"."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(getattr(exc, "detail", None), str) and getattr(exc, "detail"):  # noqa: B009
            exc.detail = "(hidden: it may hold the row's values)"  # type: ignore[attr-defined]
        if exc.args and isinstance(exc.args[0], str) and _ARGUMENT in exc.args[0]:
            exc.args = (_hide_argument(exc.args[0]), *exc.args[1:])
        exc = exc.__cause__ or exc.__context__


def _hide_argument(message: str) -> str:
    start = message.index(_ARGUMENT)
    colon = message.find(": ", start)
    reason = message.rfind(" (", colon)
    if colon < 0:
        return message
    tail = message[reason:] if reason > colon else ""
    return message[: colon + 2] + "(value hidden)" + tail


def _hide_error_values(context: ExceptionContext) -> None:
    _redact(context.original_exception)
    _redact(context.sqlalchemy_exception)


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    # A failed statement's message must not carry its parameters: they are shoppers' names,
    # emails and messages, and the message ends up in logs and tracebacks.
    kwargs.setdefault("hide_parameters", True)
    engine = _make_engine(url, **kwargs)
    if kwargs["hide_parameters"]:
        event.listen(engine.sync_engine, "handle_error", _hide_error_values)
    return engine


class _RunNow:
    """aiosqlite's job queue, but each job runs the moment it is queued, in the caller's thread."""

    def put_nowait(self, item: tuple[Any, Callable[[], Any]]) -> None:
        future, function = item
        try:
            result = function()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller, as aiosqlite does
            if future is not None and not future.done():
                future.set_exception(exc)
            return
        if future is not None and not future.done():
            future.set_result(result)


class InlineSqlite(aiosqlite.Connection):
    """aiosqlite's interface without its worker thread: every call runs in the event loop's
    thread and returns at once. SQLite answers an indexed statement in microseconds, while a
    hop to a worker thread and back costs a wake-up of each side (four per statement: cursor,
    execute, fetch, close), which on a busy machine is a scheduler slice each. One process has
    one connection (the pool below), so nothing in it waits for SQLite's lock; another process
    holding it (a CLI command's short transaction) makes the loop wait up to the busy timeout."""

    def __init__(self, connector: Callable[[], sqlite3.Connection]) -> None:
        super().__init__(connector, 64)
        self._tx = _RunNow()  # type: ignore[assignment]

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        return fn(*args, **kwargs)

    async def _connect(self) -> InlineSqlite:
        if self._connection is None:
            self._connection = self._connector()
        return self

    def __await__(self) -> Generator[Any, None, InlineSqlite]:
        return self._connect().__await__()


def _make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    if url.startswith("sqlite"):
        # One connection: SQLite has one writer anyway, and several connections contending for
        # its lock wait in SQLite's busy handler (sleeps of up to 100 ms), which under a burst
        # costs far more than queueing for a single connection whose statements take microseconds.
        kwargs.setdefault("pool_size", 1)
        kwargs.setdefault("max_overflow", 0)
        kwargs.setdefault("pool_timeout", 60)
        engine = create_async_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine.sync_engine, "do_connect")
        def _inline(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
            def connector() -> sqlite3.Connection:
                connect: Callable[..., sqlite3.Connection] = sqlite3.connect
                return connect(*cargs, **{**cparams, "check_same_thread": False})

            async def inline(*_a: Any, **_k: Any) -> InlineSqlite:
                return await InlineSqlite(connector)._connect()

            return dialect.dbapi.connect(async_creator_fn=inline)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            if ":memory:" not in url:
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_async_engine(url, pool_pre_ping=True, **kwargs)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, sync_session_class=AppSession)


def affected(result: Result[Any]) -> int:
    """Rows an UPDATE or DELETE changed (the typed Result does not say it has a rowcount)."""
    return cast(CursorResult[Any], result).rowcount or 0


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"
