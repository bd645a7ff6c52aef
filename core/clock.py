"""Time as the delivery worker and the pacers see it, passed in rather than read from the system,
so a test can run an hour of retries, Retry-After waits and paced bursts in no time and exactly
(a fake clock moves only when the code under test waits), instead of sleeping and comparing
timestamps that a loaded machine makes late."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for intervals)."""
        ...

    def now(self) -> datetime:
        """The aware UTC time (for timestamps kept in the database)."""
        ...

    async def sleep(self, seconds: float) -> None: ...

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        """Wait until `event` is set (True) or `timeout` seconds pass (False)."""
        ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        try:
            await asyncio.wait_for(event.wait(), timeout=timeout)
        except TimeoutError:
            return False
        return True


SYSTEM_CLOCK = SystemClock()
