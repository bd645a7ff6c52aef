"""The team's lists of conversations, as the web inbox pages through them.

Every read is a fixed number of queries whatever the table holds: one page query (LIMIT/OFFSET
on an index), one grouped count for every tab, then the page's customers, tags and latest
messages in one query each. The inbox used to load every conversation of a list one by one,
which stalled a SQLite service (and its health check) once strangers had opened a few thousand
chats."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.analytics import compute_stats, tag_series
from domain.ports import ConversationView
from storage import repo

TABS = tuple(repo.INBOX_TABS)
MAX_PAGE = 200


@dataclass(frozen=True)
class QueuePage:
    conversations: list[ConversationView]
    last_texts: dict[int, str]
    counts: dict[str, int]


def tabs_of(view: ConversationView, me: str) -> list[str]:
    """The tabs a conversation shows in for the person `me`."""
    return [
        name
        for name, tab in repo.INBOX_TABS.items()
        if view.state in tab.states and (not tab.mine or view.owner == me)
    ]


class QueueReader:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    async def page(self, tab: str, *, me: str, offset: int = 0, limit: int = 50) -> QueuePage:
        if tab not in repo.INBOX_TABS:
            raise ValueError(f"no tab {tab!r}: one of {', '.join(TABS)}")
        offset, limit = max(0, offset), max(1, min(MAX_PAGE, limit))
        async with self.sessions() as s:
            views = await repo.inbox_page(s, tab, me=me, offset=offset, limit=limit)
            texts = await repo.last_texts(s, [v.id for v in views])
            counts = await repo.inbox_counts(s, me)
        return QueuePage(views, texts, counts)

    async def rows(self, ids: list[int], *, me: str) -> QueuePage:
        """The named conversations (those a live event said changed) and fresh counts."""
        ids = list(dict.fromkeys(ids))[:MAX_PAGE]
        async with self.sessions() as s:
            views = await repo.inbox_rows(s, ids)
            texts = await repo.last_texts(s, [v.id for v in views])
            counts = await repo.inbox_counts(s, me)
        return QueuePage(views, texts, counts)

    async def stats(
        self, since: timedelta, bucket: timedelta, tag: str | None, until: datetime
    ) -> dict[str, Any]:
        """The stats page's cards and chart."""
        async with self.sessions() as s:
            st = await compute_stats(s, until - since, until, tag)
            series = await tag_series(s, until - since, until, bucket, tag)
        return {"stats": st.as_json(), "series": series}
