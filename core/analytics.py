"""What the handoffs say about the sale: counts and timings built from the event rows.

Everything here is read from tag events, state events and messages (never from Slack), so the same
numbers serve the CLI, the Slack command, the web inbox's stats page and the spike detector."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Conversation, Message, Rating, StateEvent, TagEvent, utcnow

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """'24h', '30m', '7d' -> timedelta; a clear error for anything else."""
    m = _DURATION.match(text or "")
    if not m:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30m, 24h, 7d)")
    return timedelta(seconds=float(m.group(1)) * _UNIT[m.group(2)])


def percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..100), None for no data."""
    if not values:
        return None
    data = sorted(values)
    k = (len(data) - 1) * q / 100.0
    lo, hi = int(k), min(int(k) + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (k - lo)


@dataclass
class Stats:
    since: datetime
    until: datetime
    conversations: int = 0
    handed_off: int = 0
    ai_resolved: int = 0
    tags: dict[str, int] = field(default_factory=dict)
    tags_by_sale: dict[str, dict[str, int]] = field(default_factory=dict)
    first_reply_p50: float | None = None
    first_reply_p90: float | None = None
    resolution_p50: float | None = None
    resolution_p90: float | None = None
    csat_up: int = 0
    csat_down: int = 0

    @property
    def handoff_rate(self) -> float | None:
        return round(self.handed_off / self.conversations, 3) if self.conversations else None

    @property
    def ai_resolved_share(self) -> float | None:
        return round(self.ai_resolved / self.conversations, 3) if self.conversations else None

    @property
    def csat(self) -> float | None:
        n = self.csat_up + self.csat_down
        return round(self.csat_up / n, 3) if n else None

    def as_json(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "conversations": self.conversations,
            "handed_off": self.handed_off,
            "handoff_rate": self.handoff_rate,
            "ai_resolved_share": self.ai_resolved_share,
            "tags": self.tags,
            "tags_by_sale": self.tags_by_sale,
            "first_human_reply_seconds": {"p50": self.first_reply_p50, "p90": self.first_reply_p90},
            "resolution_seconds": {"p50": self.resolution_p50, "p90": self.resolution_p90},
            "csat": {"up": self.csat_up, "down": self.csat_down, "share_up": self.csat},
        }


async def compute_stats(
    session: AsyncSession, since: datetime, until: datetime | None = None, tag: str | None = None
) -> Stats:
    until = until or utcnow()
    st = Stats(since=since, until=until)
    tag_q = (
        select(TagEvent.tag, TagEvent.sale, func.count())
        .where(TagEvent.action == "add", TagEvent.at >= since, TagEvent.at < until)
        .group_by(TagEvent.tag, TagEvent.sale)
    )
    if tag:
        tag_q = tag_q.where(TagEvent.tag == tag)
    by_sale: dict[str, Counter[str]] = defaultdict(Counter)
    totals: Counter[str] = Counter()
    for t, sale, n in (await session.execute(tag_q)).all():
        totals[t] += n
        by_sale[sale or "(no sale)"][t] += n
    st.tags = dict(totals.most_common())
    st.tags_by_sale = {s: dict(c.most_common()) for s, c in by_sale.items()}

    convs = list(
        (
            await session.execute(
                select(Conversation.id, Conversation.handed_off_at).where(
                    Conversation.created_at >= since, Conversation.created_at < until
                )
            )
        ).all()
    )
    if tag:
        tagged = set(
            await session.scalars(
                select(TagEvent.conversation_id).where(
                    TagEvent.tag == tag, TagEvent.action == "add"
                )
            )
        )
        convs = [c for c in convs if c[0] in tagged]
    st.conversations = len(convs)
    handed = {cid: at for cid, at in convs if at is not None}
    st.handed_off = len(handed)
    with_agent = (
        set(
            await session.scalars(
                select(Message.conversation_id)
                .where(Message.role == "agent", Message.conversation_id.in_([c[0] for c in convs]))
                .distinct()
            )
        )
        if convs
        else set()
    )
    st.ai_resolved = sum(1 for cid, at in convs if at is None and cid in with_agent)

    if handed:
        ids = list(handed)
        firsts = dict(
            (
                await session.execute(
                    select(Message.conversation_id, func.min(Message.created_at))
                    .where(Message.conversation_id.in_(ids), Message.role == "human")
                    .group_by(Message.conversation_id)
                )
            ).all()
        )
        reply_times = [
            (firsts[c] - handed[c]).total_seconds()
            for c in ids
            if c in firsts and firsts[c] >= handed[c]
        ]
        resolved = dict(
            (
                await session.execute(
                    select(StateEvent.conversation_id, func.min(StateEvent.at))
                    .where(
                        StateEvent.conversation_id.in_(ids),
                        StateEvent.kind == "state",
                        StateEvent.new == "resolved",
                    )
                    .group_by(StateEvent.conversation_id)
                )
            ).all()
        )
        resolve_times = [
            (resolved[c] - handed[c]).total_seconds()
            for c in ids
            if c in resolved and resolved[c] >= handed[c]
        ]
        st.first_reply_p50, st.first_reply_p90 = (
            percentile(reply_times, 50),
            percentile(reply_times, 90),
        )
        st.resolution_p50, st.resolution_p90 = (
            percentile(resolve_times, 50),
            percentile(resolve_times, 90),
        )

    for score, n in (
        await session.execute(
            select(Rating.score, func.count())
            .where(Rating.at >= since, Rating.at < until)
            .group_by(Rating.score)
        )
    ).all():
        if score > 0:
            st.csat_up += n
        else:
            st.csat_down += n
    return st


async def tag_series(
    session: AsyncSession,
    since: datetime,
    until: datetime,
    bucket: timedelta,
    tag: str | None = None,
) -> dict[str, Any]:
    """Counts per tag per time bucket, for the chart and the spike detector."""
    q = select(TagEvent.tag, TagEvent.at).where(
        TagEvent.action == "add", TagEvent.at >= since, TagEvent.at < until
    )
    if tag:
        q = q.where(TagEvent.tag == tag)
    n = max(1, int((until - since) / bucket + 0.999999))
    series: dict[str, list[int]] = defaultdict(lambda: [0] * n)
    for t, at in (await session.execute(q)).all():
        i = min(n - 1, int((at - since) / bucket))
        series[t][i] += 1
    return {
        "since": since.isoformat(),
        "bucket_seconds": int(bucket.total_seconds()),
        "buckets": [(since + bucket * i).isoformat() for i in range(n)],
        "series": dict(series),
    }


def render_table(st: Stats) -> str:
    def secs(v: float | None) -> str:
        if v is None:
            return "-"
        return f"{v / 60:.1f} min" if v >= 60 else f"{v:.0f} s"

    lines = [
        f"since {st.since:%Y-%m-%d %H:%M} UTC until {st.until:%Y-%m-%d %H:%M} UTC",
        f"conversations        {st.conversations}",
        f"handed off           {st.handed_off} ({st.handoff_rate if st.handoff_rate is not None else '-'})",
        f"AI-resolved share    {st.ai_resolved_share if st.ai_resolved_share is not None else '-'}",
        f"first human reply    p50 {secs(st.first_reply_p50)}, p90 {secs(st.first_reply_p90)}",
        f"resolution           p50 {secs(st.resolution_p50)}, p90 {secs(st.resolution_p90)}",
        f"CSAT                 {st.csat_up} up / {st.csat_down} down",
        "",
        "tag                   count",
        "--------------------  -----",
    ]
    lines += [f"{t:<20}  {n:>5}" for t, n in st.tags.items()] or ["(no tags)"]
    if len(st.tags_by_sale) > 1 or "(no sale)" not in st.tags_by_sale:
        lines += ["", "by sale event"]
        for sale, tags in st.tags_by_sale.items():
            lines.append(f"  {sale}: " + ", ".join(f"{t} {n}" for t, n in tags.items()))
    return "\n".join(lines)
