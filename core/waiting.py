"""The honest wait, live: at a handoff, the shopper's place among the unclaimed handoffs of the same
routing and the recent time to claim, rendered into the agent's expectation message in the
handoff's own transaction; later, one follow-up if the wait slips well past that estimate.

The follow-up is durable and happens once: the handoff's transaction records when it is due (in
the conversation's context, beside what was promised); a periodic check (every instance may run
it) takes each due handoff under its row lock, and only while it is still waiting for a person
(queued, never claimed since the handoff), writes the message and marks it sent in one
transaction. The message goes to the shopper like any other (an outbox row for Telegram; the
widget's socket gets it on commit and a page that was away catches up from the database); it is
not posted to the Slack thread, where it would spend the channel's posts in a flash sale. A
restart loses nothing: the due time is in the database. The wording and the arithmetic are in
domain/waiting.py."""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncSession

from domain import outbox
from domain.ports import Handoff
from domain.storeconfig import StoreConfig
from domain.templating import render
from domain.waiting import (
    SAMPLE_WINDOW,
    Quote,
    estimate_minutes,
    followup_due,
    render_wait,
)
from storage import repo
from storage.models import Conversation, ConversationTag, Message, StateEvent

if TYPE_CHECKING:
    from core.lifecycle import Core

log = logging.getLogger("handoff.waiting")
CLAIMS_TTL = 30.0  # seconds a routing's recent claims are reused


_C = cast(Table, Conversation.__table__)
_T = cast(Table, ConversationTag.__table__)
_QUEUED = (
    select(_C.c.id, _C.c.priority, _C.c.handed_off_at, _T.c.tag)
    .outerjoin(_T, _T.c.conversation_id == _C.c.id)
    .where(_C.c.state == "queued")
)


class Waiting:
    def __init__(self, core: Core, config: StoreConfig) -> None:
        self.core = core
        self.config = config
        # The last hour's claims change slowly and a burst of handoffs reads them for each:
        # read them once per CLAIMS_TTL seconds (per routing), not once per handoff.
        self._claims: dict[str, tuple[float, list[float]]] = {}

    # ------------------------------------------------------------------ the queue

    async def _queued(self, s: AsyncSession) -> list[tuple[int, int, datetime | None, str]]:
        """Every unclaimed handoff: (id, priority, handed off at, routing)."""
        conn = await s.connection()  # built once, no ORM: every handoff reads the whole queue
        rows = (await conn.execute(_QUEUED)).all()
        tags: dict[int, list[str]] = defaultdict(list)
        meta: dict[int, tuple[int, datetime | None]] = {}
        for cid, priority, at, tag in rows:
            meta[cid] = (priority, at)
            if tag:
                tags[cid].append(tag)
        return [(cid, p, at, self.config.route_of(tags[cid])) for cid, (p, at) in meta.items()]

    async def ahead_of(
        self, s: AsyncSession, conv_id: int, route: str, priority: int, since: datetime | None
    ) -> int:
        """Unclaimed handoffs of the same routing the team sees before this one: more urgent, or
        as urgent and waiting longer (a new handoff: every one as urgent already waiting)."""
        ahead = 0
        for cid, p, at, r in await self._queued(s):
            if cid == conv_id or r != route:
                continue
            earlier = since is None or (at is not None and (at, cid) < (since, conv_id))
            if p > priority or (p == priority and earlier):
                ahead += 1
        return ahead

    async def claim_seconds(self, s: AsyncSession, route: str, now: datetime) -> list[float]:
        """Handoff -> claim of the handoffs of this routing claimed in the last hour."""
        at = self.core.clock.monotonic()
        cached = self._claims.get(route)
        if cached is not None and at - cached[0] < CLAIMS_TTL:
            return cached[1]
        samples = await self._claim_seconds(s, route, now)
        self._claims[route] = (at, samples)
        return samples

    async def _claim_seconds(self, s: AsyncSession, route: str, now: datetime) -> list[float]:
        rows = (
            await s.execute(
                select(StateEvent.conversation_id, StateEvent.at, Conversation.handed_off_at)
                .join(Conversation, Conversation.id == StateEvent.conversation_id)
                .where(
                    StateEvent.new == "claimed",
                    StateEvent.at >= now - SAMPLE_WINDOW,
                    StateEvent.kind == "state",
                    StateEvent.old == "queued",
                )
            )
        ).all()
        if not rows:
            return []
        ids = {r[0] for r in rows}
        tags: dict[int, list[str]] = defaultdict(list)
        for cid, tag in (
            await s.execute(
                select(ConversationTag.conversation_id, ConversationTag.tag).where(
                    ConversationTag.conversation_id.in_(ids)
                )
            )
        ).all():
            tags[cid].append(tag)
        return [
            (at - handed).total_seconds()
            for cid, at, handed in rows
            if handed is not None and at >= handed and self.config.route_of(tags[cid]) == route
        ]

    # ------------------------------------------------------------------ at the handoff

    async def at_handoff(
        self, s: AsyncSession, conv: Conversation, h: Handoff, fallback: str
    ) -> tuple[str, dict[str, Any]]:
        """The expectation message with the live queue in it, and what to keep for the
        follow-up (the conversation's `context.wait`)."""
        exp = h.expectation
        if exp is None:
            return fallback, {}
        now = self.core.clock.now()
        route = self.config.route_of(h.tags)
        ahead = await self.ahead_of(s, conv.id, route, h.priority, None)
        minutes, measured = estimate_minutes(
            await self.claim_seconds(s, route, now), exp.sla_minutes
        )
        quote = Quote(ahead, minutes, measured, exp.sla_minutes)
        try:
            text = render_wait(exp, quote)
        except Exception as exc:  # a store's template that fails on these values: the SLA text
            log.warning("wait message failed on #%s: %r", conv.id, exc)
            text = fallback
        wait = {
            "route": route,
            "ahead": ahead,
            "estimate_minutes": minutes,
            "measured": measured,
            "language": exp.language,
            # Out of hours nobody is answering: no estimate to slip past, no follow-up.
            "followup_due": followup_due(now, minutes).isoformat() if exp.in_hours else None,
            "followup_sent": False,
        }
        return text, wait

    # ------------------------------------------------------------------ the follow-up

    async def check(self) -> list[int]:
        """Send the follow-up of every handoff whose wait slipped; the ids it went to."""
        now = self.core.clock.now()
        async with self.core.sessions() as s:
            rows = (
                await s.execute(
                    select(Conversation.id, Conversation.context).where(
                        Conversation.state == "queued"
                    )
                )
            ).all()
        due = [cid for cid, ctx in rows if _due(ctx, now)]
        sent = [cid for cid in due if await self._follow_up(cid, now)]
        return sent

    async def _follow_up(self, conversation_id: int, now: datetime) -> bool:
        async with self.core.sessions() as s, s.begin():
            conv = await s.get(Conversation, conversation_id, with_for_update=True)
            if conv is None or conv.state != "queued" or not _due(conv.context, now):
                return False
            wait = dict(conv.context["wait"])
            conv.context = {**conv.context, "wait": {**wait, "followup_sent": True}}
            claimed = await s.scalar(
                select(StateEvent.id)
                .where(
                    StateEvent.conversation_id == conv.id,
                    StateEvent.kind == "state",
                    StateEvent.new == "claimed",
                    StateEvent.at >= conv.handed_off_at,
                )
                .limit(1)
            )
            if claimed is not None:  # claimed since the handoff, then released: no follow-up
                return False
            tags = await repo.tags_of(s, conv.id)
            route = self.config.route_of(tags)
            ahead = await self.ahead_of(s, conv.id, route, conv.priority, conv.handed_off_at)
            language = str(wait.get("language") or "en")
            quote = Quote(
                ahead, int(wait.get("estimate_minutes") or 0), bool(wait.get("measured")), 0
            )
            try:
                text = render(
                    self.config.messages.wait_text("queue_followup", language),
                    **quote.variables(language),
                ).strip()
            except Exception as exc:
                log.warning("wait follow-up failed on #%s: %r", conv.id, exc)
                return False
            msg = Message(
                conversation_id=conv.id,
                role="system",
                text=text,
                source="core",
                handled=True,
                meta={"notice": "wait-followup"},
            )
            s.add(msg)
            await s.flush()
            # To the shopper only: the team's thread does not need it, and in a flash sale a
            # thread post spends the channel's pace.
            self.core._enqueue(s, conv, outbox.shopper_send(repo.message_view(msg)))
        self.core._changed(conversation_id)
        return True


def _due(context: dict[str, Any] | None, now: datetime) -> bool:
    wait = (context or {}).get("wait") or {}
    due = wait.get("followup_due")
    if not due or wait.get("followup_sent"):
        return False
    try:
        return datetime.fromisoformat(due) <= now
    except ValueError:
        return False
