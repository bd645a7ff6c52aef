"""A background check run every `interval` seconds, its failures logged, never fatal."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("handoff.periodic")


class Periodic:
    def __init__(self, check: Callable[[], Awaitable[Any]], interval: float, name: str) -> None:
        self.check = check
        self.interval = interval
        self.name = name
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check()
            except Exception:
                log.exception("%s failed", self.name)
