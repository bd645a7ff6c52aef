"""A nudge in the thread when a handoff waits unclaimed past its SLA (once per handoff)."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select

from agent.storeconfig import StoreConfig
from bot.core import Core
from bot.periodic import Periodic
from storage.models import AlertLog, Conversation, utcnow

log = logging.getLogger("handoff.slack.reminders")


class ReminderLoop:
    def __init__(self, core: Core, config: StoreConfig, interval: float = 30.0) -> None:
        self.core = core
        self.config = config
        self.interval = interval

    async def check(self) -> list[int]:
        minutes = self.config.store.reminder_minutes
        now = utcnow()
        due: list[tuple[int, str]] = []
        async with self.core.sessions() as s, s.begin():
            convs = list(
                await s.scalars(
                    select(Conversation).where(
                        Conversation.state == "queued",
                        Conversation.handed_off_at < now - timedelta(minutes=minutes),
                    )
                )
            )
            for conv in convs:
                key = f"reminder:{conv.id}:{conv.handed_off_at.isoformat() if conv.handed_off_at else ''}"
                if (
                    await s.scalar(select(AlertLog.id).where(AlertLog.key == key).limit(1))
                    is not None
                ):
                    continue
                waited = (
                    int((now - conv.handed_off_at).total_seconds() // 60)
                    if conv.handed_off_at
                    else minutes
                )
                mention = (
                    f"{self.config.store.reminder_mention} "
                    if self.config.store.reminder_mention
                    else ""
                )
                text = f"{mention}:alarm_clock: #{conv.id} has waited {waited} minutes without an owner. Claim it?"
                s.add(AlertLog(key=key, text=text, at=now))
                due.append((conv.id, text))
        for cid, text in due:
            await self.core.inbox_notice(cid, text)
        return [cid for cid, _ in due]

    def start(self) -> None:
        self._runner = Periodic(self.check, self.interval, "reminder check")
        self._runner.start()

    async def stop(self) -> None:
        if getattr(self, "_runner", None) is not None:
            await self._runner.stop()
