"""Queries the core and the bridges share, returning plain views rather than live ORM objects."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from domain.ports import ConversationView, CustomerView, MessageView
from storage.models import (
    Conversation,
    ConversationTag,
    Customer,
    Message,
    ProcessedId,
    StateEvent,
    TagEvent,
    utcnow,
)


def customer_view(c: Customer) -> CustomerView:
    return CustomerView(
        id=c.id,
        channel=c.channel,
        external_id=c.external_id,
        name=c.name,
        username=c.username,
        email=c.email,
        tier=c.tier,
    )


def message_view(m: Message) -> MessageView:
    return MessageView(
        id=m.id,
        conversation_id=m.conversation_id,
        role=m.role,
        text=m.text,
        author=m.author,
        created_at=m.created_at,
        meta=dict(m.meta or {}),
        platform_id=m.platform_id,
    )


async def insert_message_once(session: AsyncSession, values: dict[str, Any]) -> int | None:
    """Insert a message unless its (conversation, source, platform id) is already stored; its id,
    or None for a duplicate. One INSERT ... ON CONFLICT DO NOTHING RETURNING, on SQLite and on
    PostgreSQL alike, instead of a SELECT, a SAVEPOINT and an INSERT."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = insert(Message).values(**values)
    if values.get("platform_id") is not None:
        stmt = stmt.on_conflict_do_nothing(
            index_elements=["conversation_id", "source", "platform_id"]
        )
    return await session.scalar(stmt.returning(Message.id))


async def tags_of(session: AsyncSession, conversation_id: int) -> tuple[str, ...]:
    rows = await session.scalars(
        select(ConversationTag.tag)
        .where(ConversationTag.conversation_id == conversation_id)
        .order_by(ConversationTag.tag)
    )
    return tuple(rows)


async def conversation_view(session: AsyncSession, conv: Conversation) -> ConversationView:
    customer = await session.get(Customer, conv.customer_id)
    assert customer is not None
    return make_view(conv, customer, await tags_of(session, conv.id))


async def load_views(
    session: AsyncSession, ids: set[int] | list[int]
) -> dict[int, ConversationView]:
    """Many conversations in three queries, not three per conversation."""
    ids = list(ids)
    convs = list(await session.scalars(select(Conversation).where(Conversation.id.in_(ids))))
    customers = {
        c.id: c
        for c in await session.scalars(
            select(Customer).where(Customer.id.in_({c.customer_id for c in convs}))
        )
    }
    tags: dict[int, list[str]] = {}
    for cid, tag in (
        await session.execute(
            select(ConversationTag.conversation_id, ConversationTag.tag)
            .where(ConversationTag.conversation_id.in_(ids))
            .order_by(ConversationTag.tag)
        )
    ).all():
        tags.setdefault(cid, []).append(tag)
    return {c.id: make_view(c, customers[c.customer_id], tuple(tags.get(c.id, ()))) for c in convs}


def make_view(conv: Conversation, customer: Customer, tags: tuple[str, ...]) -> ConversationView:
    return ConversationView(
        id=conv.id,
        channel=conv.channel,
        channel_ref=conv.channel_ref,
        state=conv.state,
        owner=conv.owner,
        priority=conv.priority,
        tags=tags,
        reason=conv.reason,
        summary=conv.summary,
        context=dict(conv.context or {}),
        memory=dict(conv.memory or {}),
        sale=conv.sale,
        inbox_ref=dict(conv.inbox_ref) if conv.inbox_ref else None,
        blocked=conv.blocked,
        customer=customer_view(customer),
        created_at=conv.created_at,
        handed_off_at=conv.handed_off_at,
    )


async def load_view(session: AsyncSession, conversation_id: int) -> ConversationView | None:
    conv = await session.get(Conversation, conversation_id)
    return await conversation_view(session, conv) if conv else None


async def find_by_thread(session: AsyncSession, thread_key: str) -> Conversation | None:
    return await session.scalar(
        select(Conversation).where(Conversation.inbox_thread == thread_key).limit(1)
    )


async def history(
    session: AsyncSession,
    conversation_id: int,
    *,
    after: int = 0,
    upto: int | None = None,
    include_notes: bool = True,
    limit: int | None = None,
    last: int | None = None,
) -> list[MessageView]:
    """Messages in order; `limit` keeps the first ones, `last` the most recent ones."""
    q = select(Message).where(Message.conversation_id == conversation_id, Message.id > after)
    if upto is not None:
        q = q.where(Message.id <= upto)
    if not include_notes:
        q = q.where(Message.role != "note")
    if last is not None:
        newest = [message_view(m) for m in await session.scalars(q.order_by(Message.id.desc()).limit(last))]
        return newest[::-1]
    q = q.order_by(Message.id)
    if limit is not None:
        q = q.limit(limit)
    return [message_view(m) for m in await session.scalars(q)]


async def get_or_create_customer(
    session: AsyncSession,
    channel: str,
    external_id: str,
    *,
    name: str | None = None,
    username: str | None = None,
    email: str | None = None,
) -> Customer:
    found = await session.scalar(
        select(Customer).where(Customer.channel == channel, Customer.external_id == external_id)
    )
    if found:
        if name and not found.name:
            found.name = name
        if username:
            found.username = username
        if email and not found.email:
            found.email = email
        return found
    customer = Customer(
        channel=channel, external_id=external_id, name=name, username=username, email=email
    )
    session.add(customer)
    await session.flush()
    return customer


async def mark_processed(session: AsyncSession, source: str, platform_id: str) -> bool:
    """Record a platform id; False if it was seen before (a retry or redelivery)."""
    try:
        async with session.begin_nested():
            session.add(ProcessedId(source=source, platform_id=platform_id))
        return True
    except IntegrityError:
        return False


async def prune_processed(session: AsyncSession, older_than: datetime) -> int:
    res = await session.execute(delete(ProcessedId).where(ProcessedId.at < older_than))
    return res.rowcount or 0


async def add_state_event(
    session: AsyncSession,
    conv: Conversation,
    kind: str,
    old: str | None,
    new: str | None,
    actor: str,
    reason: str | None = None,
) -> None:
    session.add(
        StateEvent(conversation_id=conv.id, kind=kind, old=old, new=new, actor=actor, reason=reason)
    )


async def set_tags(
    session: AsyncSession,
    conv: Conversation,
    add: list[str],
    remove: list[str],
    actor: str,
) -> tuple[list[str], list[str]]:
    """Apply tag changes with a tag event each; returns what actually changed."""
    current = set(await tags_of(session, conv.id))
    added, removed = [], []
    for tag in add:
        if tag not in current:
            session.add(ConversationTag(conversation_id=conv.id, tag=tag))
            session.add(
                TagEvent(
                    conversation_id=conv.id, tag=tag, action="add", actor=actor, sale=conv.sale
                )
            )
            current.add(tag)
            added.append(tag)
    for tag in remove:
        if tag in current:
            await session.execute(
                delete(ConversationTag).where(
                    and_(ConversationTag.conversation_id == conv.id, ConversationTag.tag == tag)
                )
            )
            session.add(
                TagEvent(
                    conversation_id=conv.id, tag=tag, action="remove", actor=actor, sale=conv.sale
                )
            )
            current.discard(tag)
            removed.append(tag)
    return added, removed


async def open_queue(
    session: AsyncSession, states: tuple[str, ...] = ("queued", "claimed")
) -> list[ConversationView]:
    rows = await session.scalars(
        select(Conversation)
        .where(Conversation.state.in_(states))
        .order_by(Conversation.priority.desc(), Conversation.handed_off_at, Conversation.id)
    )
    return [await conversation_view(session, c) for c in rows]


async def tag_counts(session: AsyncSession, since: datetime | None = None) -> dict[str, int]:
    q = select(TagEvent.tag, func.count()).where(TagEvent.action == "add").group_by(TagEvent.tag)
    if since is not None:
        q = q.where(TagEvent.at >= since)
    return {tag: n for tag, n in (await session.execute(q)).all()}


def touch(conv: Conversation) -> None:
    conv.updated_at = utcnow()


def json_safe(value: Any) -> Any:
    """Round-trip through JSON types, so nothing odd lands in a JSON column."""
    import json

    return json.loads(json.dumps(value, default=str))
