"""In-process fan-out of live events to open sockets (widget, web inbox).

The messages table stays the source of truth: a client that misses an event catches up on
reconnect with `after=`. Queues are bounded so one stalled socket cannot eat memory.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from typing import Any


class LiveHub:
    def __init__(self, queue_size: int = 256) -> None:
        self._subs: dict[str, set[asyncio.Queue[dict[str, Any]]]] = defaultdict(set)
        self._queue_size = queue_size
        # Set by a fan-out (PostgreSQL LISTEN/NOTIFY) so other instances' sockets get it too.
        self.relay: Callable[[str, dict[str, Any]], None] | None = None

    def publish(self, topic: str, event: dict[str, Any]) -> int:
        if self.relay is not None:
            self.relay(topic, event)
        return self.deliver_local(topic, event)

    def deliver_local(self, topic: str, event: dict[str, Any]) -> int:
        delivered = 0
        for q in list(self._subs.get(topic, ())):
            try:
                q.put_nowait(event)
                delivered += 1
            except asyncio.QueueFull:
                # The client is too slow to keep up; it reloads history on reconnect.
                continue
        return delivered

    def subscribers(self, topic: str) -> int:
        return len(self._subs.get(topic, ()))

    @contextlib.asynccontextmanager
    async def subscribe(self, topic: str) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue(self._queue_size)
        self._subs[topic].add(q)
        try:
            yield q
        finally:
            self._subs[topic].discard(q)
            if not self._subs[topic]:
                self._subs.pop(topic, None)
