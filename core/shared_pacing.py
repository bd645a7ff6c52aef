"""Rate limits shared by several instances: each send reserves the next free slot for its
destination in one PostgreSQL statement, so N instances together keep Slack's per-channel pace
instead of each keeping it alone (which multiplies it by N and collides in Slack's window)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.clock import SYSTEM_CLOCK, Clock
from storage.models import PacingSlot


class SharedPacer:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        rates: dict[str, float],
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.sessions = sessions
        self.clock = clock
        self.rates = rates  # key prefix -> sends per second, across all instances

    def interval(self, key: str) -> float | None:
        rate = self.rates.get(key.split(":", 1)[0])
        return 1.0 / rate if rate else None

    async def reserve(self, key: str) -> datetime | None:
        """The moment this send may go: now, or the first free slot after the others' reservations."""
        step = self.interval(key)
        if step is None:
            return None
        gap = timedelta(seconds=step)
        now = self.clock.now()
        stmt = (
            insert(PacingSlot)
            .values(key=key, next_at=now + gap)
            .on_conflict_do_update(
                index_elements=[PacingSlot.key],
                set_={"next_at": func.greatest(PacingSlot.next_at, now) + gap},
            )
            .returning(PacingSlot.next_at)
        )
        async with self.sessions() as s, s.begin():
            next_at: datetime = (await s.execute(stmt)).scalar_one()
        return next_at - gap

    async def reserve_all(self, keys: list[str]) -> datetime | None:
        """A slot on every key; the latest of them (None: no key is shared)."""
        latest: datetime | None = None
        for key in keys:
            slot = await self.reserve(key)
            if slot is not None and (latest is None or slot > latest):
                latest = slot
        return latest

