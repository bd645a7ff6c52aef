"""Queries the core and the bridges share, returning plain views rather than live ORM objects."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, case, delete, func, insert, null, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from domain.ports import STATES, ConversationView, CustomerView, MessageView
from storage.db import affected
from storage.models import (
    Conversation,
    ConversationTag,
    Customer,
    LabelledExample,
    Lease,
    Message,
    ProcessedId,
    Staff,
    StaffSession,
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
        claimed_email=c.claimed_email,
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


async def take_lease(
    session: AsyncSession, name: str, holder: str, now: datetime, until: datetime
) -> bool:
    """Take or renew the lease `name` for `holder` until `until`: it is free, already ours, or
    expired by `now`. One INSERT ... ON CONFLICT DO UPDATE ... WHERE, so two instances asking at
    once cannot both get it (SQLite and PostgreSQL alike)."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = insert(Lease).values(name=name, holder=holder, until=until)
    stmt = stmt.on_conflict_do_update(
        index_elements=[Lease.name],
        set_={"holder": stmt.excluded.holder, "until": stmt.excluded.until},
        where=(Lease.holder == holder) | (Lease.until < now),
    )
    got = await session.scalar(stmt.returning(Lease.holder))
    return got == holder


async def release_lease(session: AsyncSession, name: str, holder: str) -> bool:
    """Give the lease up (only its holder can): another instance may take it at once."""
    res = await session.execute(delete(Lease).where(Lease.name == name, Lease.holder == holder))
    return affected(res) == 1


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
    convs = list(await session.scalars(select(Conversation).where(Conversation.id.in_(list(ids)))))
    return {v.id: v for v in await views_of(session, convs)}


async def views_of(session: AsyncSession, convs: list[Conversation]) -> list[ConversationView]:
    """Views of already loaded conversations, in their order: two more queries in all."""
    if not convs:
        return []
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
            .where(ConversationTag.conversation_id.in_([c.id for c in convs]))
            .order_by(ConversationTag.tag)
        )
    ).all():
        tags.setdefault(cid, []).append(tag)
    return [make_view(c, customers[c.customer_id], tuple(tags.get(c.id, ()))) for c in convs]


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
    claimed_email: str | None = None,
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
        if claimed_email and not found.claimed_email:
            found.claimed_email = claimed_email
        return found
    customer = Customer(
        channel=channel,
        external_id=external_id,
        name=name,
        username=username,
        email=email,
        claimed_email=claimed_email,
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


async def is_processed(session: AsyncSession, source: str, platform_id: str) -> bool:
    found = await session.scalar(
        select(ProcessedId.platform_id).where(
            ProcessedId.source == source, ProcessedId.platform_id == platform_id
        )
    )
    return found is not None


async def prune_processed(
    session: AsyncSession, older_than: datetime, *, source: str | None = None
) -> int:
    q = delete(ProcessedId).where(ProcessedId.at < older_than)
    if source is not None:
        q = q.where(ProcessedId.source == source)
    res = await session.execute(q)
    return affected(res)


async def queued_before(session: AsyncSession, before: datetime) -> list[int]:
    """Unclaimed handoffs older than `before`, oldest first."""
    rows = await session.scalars(
        select(Conversation.id)
        .where(Conversation.state == "queued", Conversation.handed_off_at < before)
        .order_by(Conversation.handed_off_at, Conversation.id)
    )
    return list(rows)


async def add_state_event(
    session: AsyncSession,
    conv: Conversation,
    kind: str,
    old: str | None,
    new: str | None,
    actor: str,
    reason: str | None = None,
    at: datetime | None = None,
) -> None:
    session.add(
        StateEvent(
            conversation_id=conv.id,
            kind=kind,
            old=old,
            new=new,
            actor=actor,
            reason=reason,
            at=at or utcnow(),
        )
    )


async def set_tags(
    session: AsyncSession,
    conv: Conversation,
    add: list[str],
    remove: list[str],
    actor: str,
    *,
    sale: str | None = None,
) -> tuple[list[str], list[str]]:
    """Apply tag changes with a tag event each (counted for `sale`, else the conversation's);
    returns what actually changed."""
    sale = sale or conv.sale
    current = set(await tags_of(session, conv.id))
    added, removed = [], []
    for tag in add:
        if tag not in current:
            session.add(ConversationTag(conversation_id=conv.id, tag=tag))
            session.add(
                TagEvent(
                    conversation_id=conv.id, tag=tag, action="add", actor=actor, sale=sale
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
                    conversation_id=conv.id, tag=tag, action="remove", actor=actor, sale=sale
                )
            )
            current.discard(tag)
            removed.append(tag)
    return added, removed


async def open_queue(
    session: AsyncSession, states: tuple[str, ...] = ("queued", "claimed")
) -> list[ConversationView]:
    rows = await session.scalars(
        select(Conversation).where(Conversation.state.in_(states)).order_by(*QUEUE_ORDER)
    )
    return await views_of(session, list(rows))


# The team's queue: most urgent first, then longest waiting.
QUEUE_ORDER = (
    Conversation.priority.desc(),
    Conversation.handed_off_at.asc().nulls_last(),
    Conversation.id,
)


@dataclass(frozen=True)
class InboxTab:
    """One of the web inbox's lists: which states, whether only the viewer's own, in what order."""

    states: tuple[str, ...]
    mine: bool = False
    queue_order: bool = True  # else newest first


INBOX_TABS: dict[str, InboxTab] = {
    "open": InboxTab(("queued", "claimed")),
    "waiting": InboxTab(("queued",)),
    "mine": InboxTab(("claimed",), mine=True),
    "bot": InboxTab(("bot",), queue_order=False),
    "resolved": InboxTab(("resolved",), queue_order=False),
    "all": InboxTab(("bot", "queued", "claimed", "resolved"), queue_order=False),
}


async def inbox_counts(session: AsyncSession, me: str) -> dict[str, int]:
    """How many conversations each inbox tab holds, in one grouped query."""
    per_state: dict[str, int] = {}
    mine = 0
    rows = await session.execute(
        select(
            Conversation.state,
            func.count(),
            func.sum(case((and_(Conversation.state == "claimed", Conversation.owner == me), 1), else_=0)),
        ).group_by(Conversation.state)
    )
    for state, n, own in rows.all():
        per_state[state] = int(n)
        mine += int(own or 0)
    return {
        name: mine if tab.mine else sum(per_state.get(st, 0) for st in tab.states)
        for name, tab in INBOX_TABS.items()
    }


async def inbox_page(
    session: AsyncSession, tab: str, *, me: str, offset: int, limit: int
) -> list[ConversationView]:
    """One page of a tab: a single LIMIT/OFFSET query, then the page's customers and tags."""
    spec = INBOX_TABS[tab]
    q = select(Conversation)
    if len(spec.states) == 1:  # an equality, so that (state, id) serves "newest first" as is
        q = q.where(Conversation.state == spec.states[0])
    elif set(spec.states) != set(STATES):  # "all" walks the primary key backwards, no filter
        q = q.where(Conversation.state.in_(spec.states))
    if spec.mine:
        q = q.where(Conversation.owner == me)
    q = q.order_by(*QUEUE_ORDER) if spec.queue_order else q.order_by(Conversation.id.desc())
    convs = list(await session.scalars(q.offset(offset).limit(limit)))
    return await views_of(session, convs)


async def inbox_rows(session: AsyncSession, ids: list[int]) -> list[ConversationView]:
    """Conversations by id (the ones a live event named), for patching a list in place."""
    if not ids:
        return []
    convs = list(await session.scalars(select(Conversation).where(Conversation.id.in_(ids))))
    return await views_of(session, convs)


async def last_texts(session: AsyncSession, ids: list[int], chars: int = 200) -> dict[int, str]:
    """The start of each conversation's latest message (internal notes aside), in one query."""
    if not ids:
        return {}
    latest = (
        select(func.max(Message.id))
        .where(Message.conversation_id.in_(ids), Message.role != "note")
        .group_by(Message.conversation_id)
    )
    rows = await session.execute(
        select(Message.conversation_id, func.substr(Message.text, 1, chars)).where(
            Message.id.in_(latest.scalar_subquery())
        )
    )
    return {cid: text or "" for cid, text in rows.all()}


async def tag_counts(session: AsyncSession, since: datetime | None = None) -> dict[str, int]:
    q = select(TagEvent.tag, func.count()).where(TagEvent.action == "add").group_by(TagEvent.tag)
    if since is not None:
        q = q.where(TagEvent.at >= since)
    return {tag: n for tag, n in (await session.execute(q)).all()}


# ------------------------------------------------------------------------------ staff


@dataclass(frozen=True)
class StaffView:
    id: int
    name: str
    is_admin: bool
    created_at: datetime
    sessions: int = 0
    login_pending: bool = False


def staff_key(name: str) -> str:
    """Names compare without case or extra spaces: "maria  LOPEZ" is Maria Lopez."""
    return " ".join(name.split()).casefold()


def _staff_view(s: Staff, sessions: int = 0, now: datetime | None = None) -> StaffView:
    pending = bool(s.login_hash and s.login_expires_at and s.login_expires_at > (now or utcnow()))
    return StaffView(s.id, s.name, s.is_admin, s.created_at, sessions, pending)


async def find_staff(session: AsyncSession, name: str) -> Staff | None:
    return await session.scalar(select(Staff).where(Staff.name_key == staff_key(name)))


async def add_staff(session: AsyncSession, name: str, *, is_admin: bool = False) -> Staff:
    staff = Staff(name=" ".join(name.split()), name_key=staff_key(name), is_admin=is_admin)
    session.add(staff)
    await session.flush()
    return staff


async def list_staff(session: AsyncSession, now: datetime) -> list[StaffView]:
    """Everyone, with how many live sessions each has, in one query."""
    live = (
        select(StaffSession.staff_id, func.count().label("n"))
        .where(StaffSession.expires_at > now)
        .group_by(StaffSession.staff_id)
        .subquery()
    )
    rows = await session.execute(
        select(Staff, live.c.n).outerjoin(live, live.c.staff_id == Staff.id).order_by(Staff.name_key)
    )
    return [_staff_view(s, int(n or 0), now) for s, n in rows.all()]


async def remove_staff(session: AsyncSession, staff_id: int) -> None:
    await session.execute(delete(StaffSession).where(StaffSession.staff_id == staff_id))
    await session.execute(delete(Staff).where(Staff.id == staff_id))


async def take_login(session: AsyncSession, login_hash: str, now: datetime) -> StaffView | None:
    """Use up a one-time login: one UPDATE ... RETURNING, so two tabs racing with the same link
    cannot both get in."""
    row = (
        await session.execute(
            update(Staff)
            .where(Staff.login_hash == login_hash, Staff.login_expires_at > now)
            .values(login_hash=None, login_expires_at=None)
            .returning(Staff.id, Staff.name, Staff.is_admin, Staff.created_at)
        )
    ).first()
    return StaffView(row[0], row[1], row[2], row[3]) if row else None


async def add_staff_session(
    session: AsyncSession, staff_id: int, id_hash: str, expires_at: datetime
) -> None:
    session.add(StaffSession(id_hash=id_hash, staff_id=staff_id, expires_at=expires_at))
    await session.flush()


async def session_staff(
    session: AsyncSession, id_hash: str, now: datetime
) -> tuple[StaffView, datetime] | None:
    """Who a session id belongs to and until when, if it is still good."""
    row = (
        await session.execute(
            select(Staff, StaffSession.expires_at)
            .join(StaffSession, StaffSession.staff_id == Staff.id)
            .where(StaffSession.id_hash == id_hash, StaffSession.expires_at > now)
        )
    ).first()
    return (_staff_view(row[0], now=now), row[1]) if row else None


async def extend_staff_session(session: AsyncSession, id_hash: str, expires_at: datetime) -> None:
    await session.execute(
        update(StaffSession).where(StaffSession.id_hash == id_hash).values(expires_at=expires_at)
    )


async def delete_staff_session(session: AsyncSession, id_hash: str) -> None:
    await session.execute(delete(StaffSession).where(StaffSession.id_hash == id_hash))


async def prune_staff_sessions(session: AsyncSession, now: datetime) -> int:
    res = await session.execute(delete(StaffSession).where(StaffSession.expires_at <= now))
    return affected(res)


def touch(conv: Conversation) -> None:
    conv.updated_at = utcnow()


def json_safe(value: Any) -> Any:
    """Round-trip through JSON types, so nothing odd lands in a JSON column."""
    import json

    return json.loads(json.dumps(value, default=str))


# ------------------------------------------------------------------ corrections and replay


async def last_agent_handoff(session: AsyncSession, conversation_id: int) -> StateEvent | None:
    """The agent's latest handoff of this conversation (its state event), if any."""
    return await session.scalar(
        select(StateEvent)
        .where(
            StateEvent.conversation_id == conversation_id,
            StateEvent.kind == "state",
            StateEvent.new == "queued",
            StateEvent.actor == "agent",
        )
        .order_by(StateEvent.id.desc())
        .limit(1)
    )


async def add_example(session: AsyncSession, **values: Any) -> LabelledExample:
    row = LabelledExample(**values)
    session.add(row)
    await session.flush()
    return row


async def examples_of_message(session: AsyncSession, message_id: int) -> list[LabelledExample]:
    return list(
        await session.scalars(
            select(LabelledExample)
            .where(LabelledExample.message_id == message_id)
            .order_by(LabelledExample.id)
        )
    )


async def list_examples(session: AsyncSession, status: str | None = None) -> list[LabelledExample]:
    q = select(LabelledExample).order_by(LabelledExample.id)
    if status is not None:
        q = q.where(LabelledExample.status == status)
    return list(await session.scalars(q))


async def examples_by_label(
    session: AsyncSession, statuses: tuple[str, ...]
) -> list[tuple[str, str]]:
    """(label, text) of the examples in these states, oldest first."""
    rows = await session.execute(
        select(LabelledExample.label, LabelledExample.text)
        .where(LabelledExample.status.in_(statuses))
        .order_by(LabelledExample.id)
    )
    return [(str(label), str(text)) for label, text in rows.all()]


async def conversations_since(session: AsyncSession, since: datetime) -> list[int]:
    """Conversations started since `since`, oldest first."""
    return list(
        await session.scalars(
            select(Conversation.id)
            .where(Conversation.created_at >= since)
            .order_by(Conversation.id)
        )
    )


async def state_events(session: AsyncSession, conversation_id: int) -> list[StateEvent]:
    return list(
        await session.scalars(
            select(StateEvent)
            .where(StateEvent.conversation_id == conversation_id)
            .order_by(StateEvent.id)
        )
    )


async def tag_events(session: AsyncSession, conversation_id: int) -> list[TagEvent]:
    return list(
        await session.scalars(
            select(TagEvent).where(TagEvent.conversation_id == conversation_id).order_by(TagEvent.id)
        )
    )


async def tags_put_on_by_people(session: AsyncSession, conversation_id: int) -> set[str]:
    """The conversation's tags whose latest addition was a person's, not the agent's."""
    last: dict[str, str] = {}
    for event in await tag_events(session, conversation_id):
        if event.action == "add":
            last[event.tag] = event.actor
    current = set(await tags_of(session, conversation_id))
    return {t for t, actor in last.items() if t in current and actor not in ("agent", "system")}


# ------------------------------------------------------------------ the hot path, in Core
# Statements built once (a statement's construction and cache key cost more CPU than SQLite takes
# to run it) and executed on the session's connection without the ORM: many rows per statement
# where the writer batches them (core/writer.py).

_C = cast(Table, Conversation.__table__)
_U = cast(Table, Customer.__table__)
_M = cast(Table, Message.__table__)
_T = cast(Table, ConversationTag.__table__)
MESSAGE_COLUMNS = (  # in the order `messages_of` reads them
    _M.c.id, _M.c.conversation_id, _M.c.role, _M.c.text, _M.c.author, _M.c.created_at,
    _M.c.meta, _M.c.platform_id,
)


def _ids(name: str = "ids") -> Any:
    return bindparam(name, expanding=True)


def _unhandled_of(what: Any) -> Any:
    return (
        select(what)
        .where(_M.c.conversation_id == _C.c.id, _M.c.role == "shopper", _M.c.handled.is_(False))
        .scalar_subquery()
    )


_TOUCH = (
    update(_C).where(_C.c.id.in_(_ids())).values(updated_at=bindparam("b_now")).returning(_C.c.id)
)
_HANDLE = (
    update(_M)
    .where(_M.c.id.in_(_ids()), _M.c.handled.is_(False))
    .values(handled=True)
    .returning(_M.c.id)
)
_HANDLE_ONE = (
    update(_M).where(_M.c.id == bindparam("mid"), _M.c.handled.is_(False)).values(handled=True)
)
_LAST_ID = select(func.max(_M.c.id)).where(_M.c.conversation_id == bindparam("cid"))
_LOCK = (
    select(_C.c.id, _C.c.state, _C.c.channel, _C.c.priority, _C.c.handed_off_at)
    .where(_C.c.id.in_(_ids()))
    .order_by(_C.c.id)
    .with_for_update()
)
_SET_MEMORY = (
    update(_C)
    .where(_C.c.id == bindparam("b_id"))
    .values(memory=bindparam("b_memory"), updated_at=bindparam("b_now"))
)
_TOUCH_ONE = update(_C).where(_C.c.id == bindparam("b_id")).values(updated_at=bindparam("b_now"))
_INSERT_MESSAGES = insert(_M).returning(_M.c.id, sort_by_parameter_order=True)
_BY_PLATFORM = select(*MESSAGE_COLUMNS).where(
    _M.c.conversation_id == bindparam("cid"),
    _M.c.source == bindparam("source"),
    _M.c.platform_id == bindparam("pid"),
)
# Only the columns a turn's view is made of: each column read is a value converted (a JSON
# document parsed, a timestamp made timezone-aware), on every turn.
_TURN_UNUSED = {"customer_id", "token_hash", "inbox_thread", "lease_owner", "lease_until", "updated_at"}
TURN_INPUTS = (
    select(
        *[c.label("c_" + c.name) for c in _C.c if c.name not in _TURN_UNUSED],
        *[c.label("u_" + c.name) for c in _U.c if c.name != "created_at"],
        _unhandled_of(func.min(_M.c.id)).label("first_unhandled"),
        _unhandled_of(func.count()).label("unhandled"),
        select(func.aggregate_strings(_T.c.tag, "\n"))
        .where(_T.c.conversation_id == _C.c.id)
        .scalar_subquery()
        .label("tags"),
    )
    .select_from(_C.join(_U, _U.c.id == _C.c.customer_id))
    .where(_C.c.id == bindparam("cid"))
)
# A turn's history without the messages' meta: an agent reads who said what (its own notes are in
# the conversation's memory), and an agent message's meta (the actions it ran, their captured
# fields, its sources) was the largest JSON document parsed on every turn, once per message.
LAST_MESSAGES = (
    select(*[null().label("meta") if c is _M.c.meta else c for c in MESSAGE_COLUMNS])
    .where(
        _M.c.conversation_id == bindparam("cid"),
        _M.c.id <= bindparam("upto"),
        _M.c.role != "note",
    )
    .order_by(_M.c.id.desc())
    .limit(bindparam("n"))
)
TOKEN = select(_C.c.token_hash, _C.c.state).where(_C.c.id == bindparam("cid"))
PAGE = (
    select(*MESSAGE_COLUMNS)
    .where(
        _M.c.conversation_id == bindparam("cid"),
        _M.c.id > bindparam("after"),
        _M.c.role != "note",
    )
    .order_by(_M.c.id)
    .limit(bindparam("n"))
)
_INSERT_ONCE: dict[str, Any] = {}


def _insert_once(dialect: str) -> Any:
    stmt = _INSERT_ONCE.get(dialect)
    if stmt is None:
        ins = pg_insert(_M) if dialect == "postgresql" else sqlite_insert(_M)
        stmt = _INSERT_ONCE[dialect] = ins.on_conflict_do_nothing(
            index_elements=["conversation_id", "source", "platform_id"]
        ).returning(_M.c.id, _M.c.conversation_id, _M.c.source, _M.c.platform_id)
    return stmt


def messages_of(rows: Iterable[Sequence[Any]]) -> list[MessageView]:
    """Rows of `MESSAGE_COLUMNS`, in that order, as views."""
    return [
        MessageView(
            id=r[0], conversation_id=r[1], role=r[2], text=r[3], author=r[4], created_at=r[5],
            meta=dict(r[6] or {}), platform_id=r[7],
        )
        for r in rows
    ]


def row_view(row: Any) -> MessageView:
    return MessageView(
        id=row.id,
        conversation_id=row.conversation_id,
        role=row.role,
        text=row.text,
        author=row.author,
        created_at=row.created_at,
        meta=dict(row.meta or {}),
        platform_id=row.platform_id,
    )


async def touch_conversations(session: AsyncSession, ids: set[int], now: datetime) -> set[int]:
    """Mark the conversations as just active; the ids of those that exist."""
    conn = await session.connection()
    return set((await conn.execute(_TOUCH, {"ids": sorted(ids), "b_now": now})).scalars())


async def insert_messages_once(
    session: AsyncSession, rows: list[dict[str, Any]]
) -> list[int | None]:
    """Insert messages, each unless its (conversation, source, platform id) is already stored:
    each one's new id, or None for one already there. Rows with a platform id go in one
    INSERT ... ON CONFLICT DO NOTHING RETURNING; the rare one without, alone (its id is then its
    own). The rows' keys must be distinct (the caller folds repeats)."""
    conn = await session.connection()
    out: list[int | None] = [None] * len(rows)
    keyed = [i for i, r in enumerate(rows) if r.get("platform_id") is not None]
    if keyed:
        stmt = _insert_once(conn.dialect.name)
        made = {
            (r.conversation_id, r.source, r.platform_id): r.id
            for r in await conn.execute(stmt, [rows[i] for i in keyed])
        }
        for i in keyed:
            r = rows[i]
            out[i] = made.get((r["conversation_id"], r["source"], r["platform_id"]))
    for i, r in enumerate(rows):
        if r.get("platform_id") is None:
            out[i] = (await conn.execute(_INSERT_MESSAGES, [r])).scalar_one()
    return out


async def message_by_platform_id(
    session: AsyncSession, conversation_id: int, source: str, platform_id: str
) -> MessageView | None:
    conn = await session.connection()
    row = (
        await conn.execute(
            _BY_PLATFORM, {"cid": conversation_id, "source": source, "pid": platform_id}
        )
    ).first()
    return row_view(row) if row is not None else None


async def insert_messages(session: AsyncSession, rows: list[dict[str, Any]]) -> list[int]:
    """New messages (all with the same keys), their ids in the rows' order: one statement."""
    conn = await session.connection()
    return list((await conn.execute(_INSERT_MESSAGES, rows)).scalars())


async def take_unhandled(session: AsyncSession, message_ids: list[int]) -> set[int]:
    """Mark the messages answered, each once: the ids this call took (not already taken)."""
    conn = await session.connection()
    return set((await conn.execute(_HANDLE, {"ids": sorted(message_ids)})).scalars())


async def mark_handled(session: AsyncSession, message_id: int) -> bool:
    """Take one message as answered, once: False if another turn already did."""
    conn = await session.connection()
    return affected(await conn.execute(_HANDLE_ONE, {"mid": message_id})) == 1


async def last_message_id(session: AsyncSession, conversation_id: int) -> int | None:
    """The conversation's newest message id (flush what the session added first)."""
    conn = await session.connection()
    return cast(int | None, (await conn.execute(_LAST_ID, {"cid": conversation_id})).scalar())


async def lock_states(session: AsyncSession, ids: set[int]) -> dict[int, Any]:
    """The conversations' state, channel, priority and handoff time, locked for the transaction
    (PostgreSQL; SQLite has one writer), in id order so two writers never wait on each other."""
    conn = await session.connection()
    return {r.id: r for r in await conn.execute(_LOCK, {"ids": sorted(ids)})}


async def set_memories(
    session: AsyncSession, memories: list[tuple[int, dict[str, Any] | None]], now: datetime
) -> None:
    """Each conversation's new memory (None: unchanged) and activity time: one statement each kind."""
    conn = await session.connection()
    with_memory = [{"b_id": i, "b_memory": m, "b_now": now} for i, m in memories if m is not None]
    without = [{"b_id": i, "b_now": now} for i, m in memories if m is None]
    if with_memory:
        await conn.execute(_SET_MEMORY, with_memory)
    if without:
        await conn.execute(_TOUCH_ONE, without)


@dataclass
class TurnInputs:
    view: ConversationView
    first_unhandled: int | None
    unhandled: int


async def turn_inputs(conn: AsyncConnection, conversation_id: int) -> TurnInputs | None:
    """The conversation, its customer and tags, and its oldest unanswered shopper message with how
    many wait: one statement."""
    row = (await conn.execute(TURN_INPUTS, {"cid": conversation_id})).first()
    return turn_inputs_of(row._mapping) if row is not None else None


def turn_inputs_of(m: Mapping[Any, Any]) -> TurnInputs:
    """A row of `TURN_INPUTS`, by its columns' names, as the turn's inputs."""
    tags = tuple(sorted(m["tags"].split("\n"))) if m["tags"] else ()
    customer = CustomerView(
        id=m["u_id"],
        channel=m["u_channel"],
        external_id=m["u_external_id"],
        name=m["u_name"],
        username=m["u_username"],
        email=m["u_email"],
        tier=m["u_tier"],
        claimed_email=m["u_claimed_email"],
    )
    view = ConversationView(
        id=m["c_id"],
        channel=m["c_channel"],
        channel_ref=m["c_channel_ref"],
        state=m["c_state"],
        owner=m["c_owner"],
        priority=m["c_priority"],
        tags=tags,
        reason=m["c_reason"],
        summary=m["c_summary"],
        context=dict(m["c_context"] or {}),
        memory=dict(m["c_memory"] or {}),
        sale=m["c_sale"],
        inbox_ref=dict(m["c_inbox_ref"]) if m["c_inbox_ref"] else None,
        blocked=m["c_blocked"],
        customer=customer,
        created_at=m["c_created_at"],
        handed_off_at=m["c_handed_off_at"],
    )
    return TurnInputs(view, m["first_unhandled"], int(m["unhandled"] or 0))


async def last_messages(
    conn: AsyncConnection, conversation_id: int, upto: int, n: int
) -> list[MessageView]:
    """The `n` latest messages up to `upto` (notes left out), oldest first, without their meta."""
    rows = await conn.execute(LAST_MESSAGES, {"cid": conversation_id, "upto": upto, "n": n})
    return messages_of(rows)[::-1]


async def token_state(conn: AsyncConnection, conversation_id: int) -> tuple[str | None, str] | None:
    row = (await conn.execute(TOKEN, {"cid": conversation_id})).first()
    return (row.token_hash, row.state) if row is not None else None


async def page_after(
    conn: AsyncConnection, conversation_id: int, after: int, n: int
) -> list[MessageView]:
    """Up to `n` messages after `after`, oldest first, notes left out (a client's catch-up)."""
    rows = await conn.execute(PAGE, {"cid": conversation_id, "after": after, "n": n})
    return messages_of(rows)
