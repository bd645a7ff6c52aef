"""The reads on the hot path: a turn's inputs, a socket's token check, a client's catch-up.
Statements that read committed rows and write nothing, on a connection of their own.

On a SQLite file that is a `sqlite3` connection opened once and held, in autocommit: WAL lets it
read while the writer's connection writes, and it sees exactly what has been committed, as a fresh
session did. A session per read cost more than the read (checking the one pooled connection out and
in, beginning and rolling back a transaction, closing in a task of its own: about 100 us, three
loop passes), and the engine's execution path still cost several times SQLite's own time, so the
statements run on the connection itself (storage/direct.py), converted as the engine converts them.
The reads stay separate statements, as they were (SQLite takes no snapshot across a session's
SELECTs either).

Elsewhere (PostgreSQL, an in-memory SQLite that a second connection would not see) each read is a
session's connection and storage/repo.py's functions, as before."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

from sqlalchemy.engine import URL, Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from domain.ports import MessageView
from storage import repo
from storage.direct import DirectQuery

T = TypeVar("T")


class _Direct:
    """The hot statements compiled for this SQLite database, on a held connection."""

    def __init__(self, url: URL, dialect: Dialect) -> None:
        self.url = url
        self.dialect = dialect
        self.turn_inputs = DirectQuery(repo.TURN_INPUTS, dialect, cid=0)
        self.last_messages = DirectQuery(repo.LAST_MESSAGES, dialect, cid=0, upto=0, n=1)
        self.token = DirectQuery(repo.TOKEN, dialect, cid=0)
        self.page = DirectQuery(repo.PAGE, dialect, cid=0, after=0, n=1)
        self._conn: sqlite3.Connection | None = None

    def connection(self) -> sqlite3.Connection:
        if self._conn is None:
            cargs, cparams = self.dialect.create_connect_args(self.url)
            cparams = {**cparams, "timeout": 30, "check_same_thread": False, "isolation_level": None}
            connect: Callable[..., sqlite3.Connection] = sqlite3.connect
            conn = connect(*cargs, **cparams)
            conn.execute("PRAGMA busy_timeout=30000")
            self._conn = conn
        return self._conn

    def run(self, read: Callable[[sqlite3.Connection], T]) -> T:
        """`read` on the held connection; a failure is the engine's kind of error (what callers
        of the engine's path already handle, its parameters hidden), and the connection is opened
        afresh on the next read."""
        try:
            return read(self.connection())
        except sqlite3.Error as exc:
            self.close()
            raise DBAPIError.instance(
                None, None, exc, sqlite3.Error, hide_parameters=True, dialect=self.dialect
            ) from exc

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()


def _history_upto(inputs: repo.TurnInputs | None) -> int | None:
    """The message a turn's history ends with: the waiting one, when the agent will answer it
    (the conversation is the agent's); None when no history is read."""
    if inputs is None or inputs.view.state != "bot":
        return None
    return inputs.first_unhandled


class HotReads:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        bind = sessions.kw.get("bind")
        url = bind.url if isinstance(bind, AsyncEngine) else None
        database = (url.database or "") if url is not None else ""
        own = (
            isinstance(bind, AsyncEngine)
            and url is not None
            and url.get_backend_name() == "sqlite"
            and bool(database)
            and database != ":memory:"
            and url.query.get("mode") != "memory"
        )
        self._direct = _Direct(url, bind.dialect) if own and url is not None and bind else None

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[AsyncConnection]:
        async with self._sessions() as s:
            yield await s.connection()

    async def turn(
        self, conversation_id: int, last: int
    ) -> tuple[repo.TurnInputs, list[MessageView]] | None:
        """What a turn starts from, or None when no shopper message waits: the conversation with
        its oldest waiting message and, when the agent will answer it (the conversation is the
        agent's), the `last` messages up to that one, oldest first (notes left out, and their
        `meta` too: see `repo.LAST_MESSAGES`)."""
        d = self._direct
        if d is None:
            async with self._connection() as conn:
                inputs = await repo.turn_inputs(conn, conversation_id)
                upto = _history_upto(inputs)
                hist = [] if upto is None else await repo.last_messages(conn, conversation_id, upto, last)
        else:
            row = d.run(lambda c: d.turn_inputs.first(c, cid=conversation_id))
            inputs = None if row is None else repo.turn_inputs_of(dict(zip(d.turn_inputs.keys, row, strict=True)))
            upto = _history_upto(inputs)
            hist = (
                []
                if upto is None
                else repo.messages_of(
                    d.run(lambda c: d.last_messages.rows(c, cid=conversation_id, upto=upto, n=last))
                )[::-1]
            )
        if inputs is None or inputs.first_unhandled is None:
            return None
        return inputs, hist

    async def token_state(self, conversation_id: int) -> tuple[str | None, str] | None:
        d = self._direct
        if d is None:
            async with self._connection() as conn:
                return await repo.token_state(conn, conversation_id)
        row = d.run(lambda c: d.token.first(c, cid=conversation_id))
        return (row[0], row[1]) if row is not None else None

    async def page_after(self, conversation_id: int, after: int, n: int) -> list[MessageView]:
        """Up to `n` messages after `after`, oldest first, notes left out (a client's catch-up)."""
        d = self._direct
        if d is None:
            async with self._connection() as conn:
                return await repo.page_after(conn, conversation_id, after, n)
        rows = d.run(lambda c: d.page.rows(c, cid=conversation_id, after=after, n=n))
        return repo.messages_of(rows)

    async def close(self) -> None:
        """At shutdown: a read that still comes (a late catch-up) goes through a session, so
        no connection is opened again that nothing would close."""
        direct, self._direct = self._direct, None
        if direct is not None:
            direct.close()


