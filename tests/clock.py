"""A fake clock for the delivery worker and the pacers: time passes only when the code under test
waits for it, so Retry-After waits, backoffs and paced bursts take no real time, and what a test
measures is exactly what the code decided (no scheduling delay of a loaded machine in it)."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any


class FakeClock:
    """`sleep` registers a timer. With `autojump` (the default) the clock jumps to it at once:
    a sleeper is the only thing that makes time pass, and whoever was due earlier wakes too.
    Without it, timers fire only when the test calls `advance`, for tests that look at what
    happens in between. `wait` (an event or a timeout) never jumps: the worker's idle wait
    would otherwise spin through time with nothing to do.

    For a whole running service, `run_when_idle` moves time instead: whenever every task the
    service is busy with is done or itself asleep on this clock, the clock jumps to the next
    timer. No time passes while a delivery is on its way, so a fake platform stamping calls
    with this clock sees exactly the spacing the service chose."""

    def __init__(self, start: datetime | None = None, *, autojump: bool = True) -> None:
        self.autojump = autojump
        self._start = start or datetime.now(UTC)
        self._elapsed = 0.0
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._asleep: set[asyncio.Task[Any]] = set()
        self._jumper: asyncio.Task[None] | None = None

    @property
    def elapsed(self) -> float:
        """Seconds of fake time since the clock was made."""
        return self._elapsed

    @property
    def sleepers(self) -> int:
        return sum(1 for _, _, f in self._timers if not f.done())

    def monotonic(self) -> float:
        return 1_000.0 + self._elapsed

    def now(self) -> datetime:
        return self._start + timedelta(seconds=self._elapsed)

    def advance(self, seconds: float) -> None:
        self._elapsed += max(0.0, seconds)
        while self._timers and self._timers[0][0] <= self._elapsed:
            _, _, fut = heapq.heappop(self._timers)
            if not fut.done():
                fut.set_result(None)

    def _timer(self, seconds: float) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._timers, (self._elapsed + seconds, next(self._seq), fut))
        return fut

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut = self._timer(seconds)
        if self.autojump:
            self.advance(seconds)
        task = asyncio.current_task()
        if task is not None:
            self._asleep.add(task)
        try:
            await fut
        finally:
            self._asleep.discard(task)  # type: ignore[arg-type]

    def run_when_idle(
        self, busy: Callable[[], Iterable[asyncio.Task[Any]]], every: float = 0.002
    ) -> None:
        """Jump to the next timer whenever none of the tasks `busy` names is doing anything
        but sleeping on this clock (checked every `every` seconds of real time)."""
        self.autojump = False
        if self._jumper is not None:  # the service restarted: the new one is what counts
            self._jumper.cancel()

        async def jump() -> None:
            while True:
                await asyncio.sleep(every)
                pending = [d for d, _, f in self._timers if not f.done()]
                if pending and all(t.done() or t in self._asleep for t in busy()):
                    self.advance(min(pending) - self._elapsed)

        self._jumper = asyncio.get_running_loop().create_task(jump())

    async def stop(self) -> None:
        if self._jumper is not None:
            self._jumper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._jumper

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        if event.is_set():
            return True
        timer = self._timer(max(timeout, 0.0))
        waiter = asyncio.ensure_future(event.wait())
        try:
            await asyncio.wait({timer, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            timer.cancel()
        return event.is_set()
