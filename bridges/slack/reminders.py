"""A nudge in the thread when a handoff waits unclaimed past its SLA: once per handoff, with an
optional @-mention of a group (`store.reminder_mention`, e.g. `<!subteam^S0123>`).

A handoff's SLA is what its rule promised the shopper (`sla_minutes`, 5 for a VIP say), capped
by `store.reminder_minutes`. Each reminder is recorded under a unique key before it is queued,
so several instances checking at once still remind once. Old Slack event ids are pruned here
too (Slack retries within minutes; a day is plenty)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from core.lifecycle import Core
from core.periodic import Periodic
from domain.ports import ConversationView
from domain.storeconfig import StoreConfig

log = logging.getLogger("handoff.slack.reminders")
REMINDER_SOURCE = "slack-reminder"
EVENT_SOURCE = "slack-event"
KEEP_EVENT_IDS = timedelta(days=1)


class ReminderLoop:
    def __init__(self, core: Core, config: StoreConfig, interval: float = 30.0) -> None:
        self.core = core
        self.config = config
        self.interval = interval
        self._runner: Periodic | None = None

    def due_minutes(self, conv: ConversationView) -> int:
        cap = self.config.store.reminder_minutes
        sla = (conv.context or {}).get("sla_minutes")
        return min(cap, int(sla)) if isinstance(sla, int | float) and sla > 0 else cap

    async def check(self) -> list[int]:
        now = datetime.now(UTC)
        soonest = min(
            [self.config.store.reminder_minutes]
            + [r.sla_minutes for rs in self.config.rule_sets for r in rs.rules if r.sla_minutes]
        )
        reminded: list[int] = []
        for conv in await self.core.waiting_since(now - timedelta(minutes=soonest)):
            assert conv.handed_off_at is not None
            limit = self.due_minutes(conv)
            waited = int((now - conv.handed_off_at).total_seconds() // 60)
            if waited < limit:
                continue
            key = f"{conv.id}:{conv.handed_off_at.isoformat()}"
            if not await self.core.take_once(REMINDER_SOURCE, key):
                continue  # reminded already (here or on another instance)
            mention = self.config.store.reminder_mention
            text = (
                (f"{mention} " if mention else "")
                + f":alarm_clock: #{conv.id} has waited {waited} minutes without an owner "
                f"(its SLA is {limit} minutes). Claim it?"
            )
            await self.core.inbox_notice(conv.id, text)
            reminded.append(conv.id)
        await self.core.forget_taken(EVENT_SOURCE, now - KEEP_EVENT_IDS)
        return reminded

    def start(self) -> None:
        self._runner = Periodic(self.check, self.interval, "reminder check")
        self._runner.start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.stop()
