"""Live events across instances with PostgreSQL LISTEN/NOTIFY.

A shopper's socket may be on instance A while the reply is committed and delivered by instance B.
Each instance NOTIFYs what it publishes and re-publishes locally what others NOTIFY. PostgreSQL is
the default because a multi-instance deployment already has it: no extra service to run, and
NOTIFY is delivered in commit order. The messages table stays the source of truth: an event too
large for NOTIFY (8000 bytes) goes out as a 'sync' hint and the client reloads with `after=`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from typing import Any

import asyncpg

from core.live import LiveHub

log = logging.getLogger("handoff.fanout")
CHANNEL = "handoff_live"
MAX_PAYLOAD = 7900


def asyncpg_dsn(sqlalchemy_url: str) -> str:
    return sqlalchemy_url.replace("postgresql+asyncpg://", "postgresql://", 1)


class PgFanout:
    def __init__(self, dsn: str, hub: LiveHub) -> None:
        self.dsn = dsn
        self.hub = hub
        self.instance = secrets.token_hex(6)
        self._queue: asyncio.Queue[str] = asyncio.Queue(maxsize=10000)
        self._listen: asyncpg.Connection | None = None
        self._send: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._listen = await asyncpg.connect(self.dsn)
        await self._listen.add_listener(CHANNEL, self._on_notify)
        self._send = await asyncpg.connect(self.dsn)
        self._task = asyncio.create_task(self._sender())
        self.hub.relay = self.publish

    async def stop(self) -> None:
        self.hub.relay = None
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for conn in (self._listen, self._send):
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()

    def publish(self, topic: str, event: dict[str, Any]) -> None:
        payload = json.dumps(
            {"from": self.instance, "topic": topic, "event": event}, separators=(",", ":")
        )
        if len(payload.encode()) > MAX_PAYLOAD:
            payload = json.dumps({"from": self.instance, "topic": topic, "event": {"type": "sync"}})
        try:
            self._queue.put_nowait(payload)
        except asyncio.QueueFull:
            log.warning("fan-out queue full; other instances' clients will catch up on reconnect")

    async def _sender(self) -> None:
        while True:
            payload = await self._queue.get()
            try:
                assert self._send is not None
                await self._send.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)
            except Exception:
                log.exception("NOTIFY failed; reconnecting")
                await asyncio.sleep(1.0)
                with contextlib.suppress(Exception):
                    self._send = await asyncpg.connect(self.dsn)

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            data = json.loads(payload)
        except ValueError:
            return
        if data.get("from") == self.instance:
            return
        self.hub.deliver_local(data["topic"], data["event"])
