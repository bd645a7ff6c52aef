"""The hot path's statements, run on a SQLite connection itself.

A turn reads the conversation and its last messages; a widget's connect and catch-up read a token
and a page; the writer (core/writer.py) stores a batch of shoppers' messages and of turns. Through
SQLAlchemy each statement cost 40-90 us of CPU on top of the 4-10 us SQLite takes to run it (an
execution context, the compiled cache's key, a result object, a greenlet switch), plus, for a
batch, a parameter set built per row; in a flash sale that was a fifth of the service's CPU per
message. Here the same Core statements (storage/repo.py) are compiled once, by SQLAlchemy, for
SQLite, and run on the `sqlite3.Connection` with every value converted by the processors
SQLAlchemy itself would use (a timestamp made naive UTC text and back timezone-aware, a JSON
document serialised and parsed, a boolean as 0/1), so a row is written and read back exactly as
through the engine: tests/test_direct_reads.py and tests/test_direct_writes.py compare the two.

Only SQLite (storage/hotreads.py for the reads; storage/repo.py's batch functions when the session's
connection is the in-thread one of storage/db.py); PostgreSQL keeps the engine's path, where
asyncpg does this work in C and the round trip dominates. A failure is the engine's kind of error
(`DBAPIError`, parameters hidden), so callers handle one kind whichever path ran."""

from __future__ import annotations

import sqlite3
from collections import namedtuple
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from storage.db import InlineSqlite

# Statements run through this module, by their verb (bench/per_message.py counts them beside the
# engine's, so the per-message figures stay whole).
executed: dict[str, int] = {}

Processor = Callable[[Any], Any]


def _count(sql: str) -> None:
    verb = sql.lstrip().split(None, 1)[0].upper()
    executed[verb] = executed.get(verb, 0) + 1


@contextmanager
def engine_errors(dialect: Dialect) -> Iterator[None]:
    """sqlite3's errors as the engine raises them (IntegrityError, OperationalError, ...)."""
    try:
        yield
    except sqlite3.Error as exc:
        raise DBAPIError.instance(
            None, None, exc, sqlite3.Error, hide_parameters=True, dialect=dialect
        ) from exc


def _converters(stmt: Any, dialect: Dialect) -> list[tuple[int, Processor]]:
    """Per returned column, SQLAlchemy's own result processor (only where there is one)."""
    columns = list(stmt.exported_columns) if hasattr(stmt, "exported_columns") else []
    found = [c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns]
    return [(i, p) for i, p in enumerate(found) if p is not None]


def _convert(raw: list[Any], converters: list[tuple[int, Processor]]) -> list[Sequence[Any]]:
    if not converters:
        return raw
    out: list[Sequence[Any]] = []
    for row in raw:
        values = list(row)
        for i, convert in converters:
            values[i] = convert(values[i])
        out.append(values)
    return out


class DirectQuery:
    """A SELECT compiled once for SQLite: its SQL, where each named parameter goes, and how each
    column's value is converted. For reads whose parameters need no conversion (ids, counts)."""

    def __init__(self, stmt: Any, dialect: Dialect, **example: Any) -> None:
        compiled = stmt.compile(dialect=dialect)
        # The expanded state renders what SQLAlchemy defers to execution time (a separator that
        # is a literal); `example` gives each named parameter a value so that it can.
        state = compiled.construct_expanded_state(example)
        if state.processors:
            raise ValueError("a direct query takes only parameters that need no conversion")
        self.sql = state.statement
        # (name, True) a caller's parameter; (value, False) a literal of the statement's own.
        self._slots: list[tuple[Any, bool]] = [
            (name, True) if name in example else (state.parameters[name], False)
            for name in state.positiontup or ()
        ]
        self.keys = [str(c.key) for c in stmt.selected_columns]
        self._convert = _converters(stmt, dialect)

    def rows(self, conn: sqlite3.Connection, **params: Any) -> list[Sequence[Any]]:
        _count(self.sql)
        args = [params[v] if given else v for v, given in self._slots]
        return _convert(conn.execute(self.sql, args).fetchall(), self._convert)

    def first(self, conn: sqlite3.Connection, **params: Any) -> Sequence[Any] | None:
        rows = self.rows(conn, **params)
        return rows[0] if rows else None


def _default_of(default: Any) -> Callable[[], Any]:
    """A column's Python-side default as the engine applies it to a row that leaves it out."""
    if default.is_scalar:
        value = default.arg
        return lambda: value
    if default.is_callable:
        make = default.arg  # SQLAlchemy's wrapper, called with the execution context
        return lambda: make(None)
    raise ValueError(f"a direct INSERT cannot apply the default {default!r}")


class DirectStatement:
    """An INSERT, UPDATE or SELECT of the writer's batches, compiled once for SQLite (for one set
    of inserted columns), its values converted as the engine converts them."""

    def __init__(
        self, stmt: ClauseElement, dialect: Dialect, column_keys: Sequence[str] | None = None
    ) -> None:
        compiled = stmt.compile(dialect=dialect, column_keys=list(column_keys or []) or None)
        assert isinstance(compiled, SQLCompiler)
        self.compiled = compiled
        self.source = stmt
        self.dialect = dialect
        self.sql = compiled.string
        self.names = list(compiled.positiontup or ())
        self.processors: dict[str, Processor] = {}
        for name, bind in compiled.binds.items():
            proc = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if proc is not None:
                self.processors[name] = proc
        # Columns an INSERT fills from their Python-side default when a row leaves them out.
        self.defaults: dict[str, Callable[[], Any]] = {}
        for col in getattr(compiled, "insert_prefetch", None) or ():
            if col.default is not None:
                self.defaults[col.key] = _default_of(col.default)
        self._convert = _converters(stmt, dialect)
        fields = [str(c.key) for c in getattr(stmt, "exported_columns", [])]
        self.row: Any = namedtuple("Row", fields) if fields else None  # noqa: PYI024

    def _value(self, name: str, params: dict[str, Any]) -> Any:
        value = params[name] if name in params else self.defaults[name]()
        proc = self.processors.get(name)
        return proc(value) if proc is not None else value

    def _rows(self, raw: list[Any]) -> list[Any]:
        rows = _convert(raw, self._convert)
        return [self.row._make(r) for r in rows] if self.row is not None else list(rows)

    def run(self, conn: sqlite3.Connection, params: dict[str, Any]) -> list[Any]:
        """Once, with `params` (an expanding IN list included); the rows it returns."""
        state = self.compiled.construct_expanded_state(params)
        args = []
        for name in state.positiontup or ():
            value = state.parameters[name]
            proc = state.processors.get(name) or self.processors.get(name)
            args.append(proc(value) if proc is not None else value)
        _count(state.statement)
        with engine_errors(self.dialect):
            return self._rows(conn.execute(state.statement, args).fetchall())

    def run_many(self, conn: sqlite3.Connection, rows: list[dict[str, Any]]) -> None:
        """Once per parameter set, returning nothing (sqlite3's executemany)."""
        args = [[self._value(n, r) for n in self.names] for r in rows]
        _count(self.sql)
        with engine_errors(self.dialect):
            conn.executemany(self.sql, args)

    def insert_rows(self, conn: sqlite3.Connection, rows: list[dict[str, Any]]) -> list[Any]:
        """An INSERT of many rows as one multi-row VALUES statement per chunk (as SQLAlchemy's
        "insertmanyvalues" sends it); what RETURNING gives, all chunks together."""
        head, sep, rest = self.sql.partition(" VALUES (")
        group, close, tail = rest.partition(")")
        if not sep or not close or group.replace("?", "").replace(", ", ""):
            raise ValueError(f"not a single-row INSERT ... VALUES: {self.sql[:80]}")
        width = group.count("?")
        per = max(1, min(500, 32000 // max(1, width)))
        out: list[Any] = []
        for start in range(0, len(rows), per):
            chunk = rows[start : start + per]
            values = ", ".join([f"({group})"] * len(chunk))
            sql = f"{head} VALUES {values}{tail}"
            args = [self._value(n, r) for r in chunk for n in self.names]
            _count(sql)
            with engine_errors(self.dialect):
                out.extend(self._rows(conn.execute(sql, args).fetchall()))
        return out


_compiled: dict[tuple[int, int, tuple[str, ...]], DirectStatement] = {}


def statement(
    stmt: ClauseElement, dialect: Dialect, column_keys: Sequence[str] | None = None
) -> DirectStatement:
    """`stmt` compiled for this engine's SQLite dialect, once per set of inserted columns (the
    statements are module constants and an engine's dialect lives as long as the engine: their
    identities are the key, checked, since an id can be reused once its object is gone)."""
    key = (id(stmt), id(dialect), tuple(column_keys or ()))
    found = _compiled.get(key)
    if found is None or found.dialect is not dialect or found.source is not stmt:
        if len(_compiled) > 4096:  # engines come and go (tests): forget the old ones' statements
            _compiled.clear()
        found = _compiled[key] = DirectStatement(stmt, dialect, column_keys)
    return found


async def sqlite_of(conn: AsyncConnection) -> sqlite3.Connection | None:
    """The sqlite3 connection under `conn` when statements may run on it directly: SQLite through
    storage/db.py's in-thread connection (in the transaction the session began, which sqlite3
    began at the first write and SQLAlchemy commits); None for any other connection."""
    if conn.dialect.name != "sqlite":
        return None
    driver = (await conn.get_raw_connection()).driver_connection
    if isinstance(driver, InlineSqlite):
        raw = driver._connection
        return raw if isinstance(raw, sqlite3.Connection) else None
    return None
