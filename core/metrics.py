"""Prometheus metrics (prometheus-client), one registry per app so tests and instances don't mix."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import Conversation, OutboxRow, utcnow

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.messages_in = Counter(
            "handoff_messages_in", "Messages taken in", ["channel", "role"], registry=r
        )
        self.messages_out = Counter(
            "handoff_messages_out", "Outbox rows delivered", ["destination", "kind"], registry=r
        )
        self.handoffs = Counter("handoff_handoffs", "Handoffs by tag", ["tag"], registry=r)
        self.rate_limited = Counter(
            "handoff_rate_limited",
            "Deliveries answered with a rate limit",
            ["destination"],
            registry=r,
        )
        self.delivery_failures = Counter(
            "handoff_delivery_failures",
            "Failed delivery attempts",
            ["destination", "final"],
            registry=r,
        )
        self.delivery_latency = Histogram(
            "handoff_delivery_latency_seconds",
            "Outbox row written to sent",
            ["destination"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.agent_latency = Histogram(
            "handoff_agent_latency_seconds", "Agent turn time", buckets=LATENCY_BUCKETS, registry=r
        )
        self.agent_tokens = Counter("handoff_agent_tokens", "LLM tokens", ["direction"], registry=r)
        self.queue_depth = Gauge(
            "handoff_outbox_depth", "Outbox rows not yet sent", ["lane"], registry=r
        )
        self.queue_age = Gauge(
            "handoff_outbox_oldest_seconds", "Age of the oldest unsent outbox row", registry=r
        )
        self.open_conversations = Gauge(
            "handoff_conversations", "Conversations by state", ["state"], registry=r
        )

    async def render(self, sessions: async_sessionmaker[AsyncSession]) -> bytes:
        """Gauges that are facts of the database are read at scrape time."""
        async with sessions() as s:
            for lane in ("shopper", "inbox", "alert"):
                self.queue_depth.labels(lane).set(0)
            for lane, n in (
                await s.execute(
                    select(OutboxRow.lane, func.count())
                    .where(OutboxRow.status.in_(("pending", "sending")))
                    .group_by(OutboxRow.lane)
                )
            ).all():
                self.queue_depth.labels(lane).set(n)
            oldest = await s.scalar(
                select(func.min(OutboxRow.created_at)).where(
                    OutboxRow.status.in_(("pending", "sending"))
                )
            )
            self.queue_age.set((utcnow() - oldest).total_seconds() if oldest else 0)
            for state in ("bot", "queued", "claimed", "resolved"):
                self.open_conversations.labels(state).set(0)
            for state, n in (
                await s.execute(
                    select(Conversation.state, func.count()).group_by(Conversation.state)
                )
            ).all():
                self.open_conversations.labels(state).set(n)
        return generate_latest(self.registry)


class NoMetrics(Metrics):
    """Same interface, its own throwaway registry (the default for a bare Core in tests)."""
