"""The hot path's statements, run on a SQLite connection itself.

A turn reads the conversation and its last messages; a widget's connect and catch-up read a token
and a page. Through SQLAlchemy each such read cost 40-90 us of CPU on top of the 4-10 us SQLite
takes to answer it (an execution context, the compiled cache's key, a result object, a greenlet
switch per call), and in a flash sale they were a fifth of the service's CPU per message. Here the
same Core statements (storage/repo.py) are compiled once, by SQLAlchemy, for SQLite, and run on a
`sqlite3.Connection` with the values converted by the very processors SQLAlchemy would use (a
timestamp made timezone-aware, a JSON document parsed), so a row reads back exactly as it does
through the engine: tests/test_direct_reads.py compares the two on the same database.

Only for a SQLite file (storage/hotreads.py); PostgreSQL keeps the engine's path, where asyncpg
does this work in C and the round trip dominates."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.sql import Select

# Statements run through this module, by their verb (bench/per_message.py counts them beside the
# engine's, so the per-message figures stay whole).
executed: dict[str, int] = {}


class DirectQuery:
    """A SELECT compiled once for SQLite: its SQL, where each named parameter goes, and how each
    column's value is converted."""

    def __init__(self, stmt: Select[Any], dialect: Dialect, **example: Any) -> None:
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
        self.index = {k: i for i, k in enumerate(self.keys)}
        converters = [
            c.type.dialect_impl(dialect).result_processor(dialect, None)
            for c in stmt.selected_columns
        ]
        self._convert: list[tuple[int, Callable[[Any], Any]]] = [
            (i, p) for i, p in enumerate(converters) if p is not None
        ]
        self._verb = self.sql.lstrip().split(None, 1)[0].upper()

    def _args(self, params: dict[str, Any]) -> list[Any]:
        return [params[v] if given else v for v, given in self._slots]

    def rows(self, conn: sqlite3.Connection, **params: Any) -> list[Sequence[Any]]:
        executed[self._verb] = executed.get(self._verb, 0) + 1
        raw = conn.execute(self.sql, self._args(params)).fetchall()
        if not self._convert:
            return raw
        out: list[Sequence[Any]] = []
        for row in raw:
            values = list(row)
            for i, convert in self._convert:
                values[i] = convert(values[i])
            out.append(values)
        return out

    def first(self, conn: sqlite3.Connection, **params: Any) -> Sequence[Any] | None:
        rows = self.rows(conn, **params)
        return rows[0] if rows else None
