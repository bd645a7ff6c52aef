"""The database schema: the only record of every conversation (Slack and Telegram only show it)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on both SQLite (which keeps no zone) and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Customer(Base):
    __tablename__ = "customers"
    __table_args__ = (UniqueConstraint("channel", "external_id", name="uq_customer_channel_ext"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str] = mapped_column(String(128))
    name: Mapped[str | None] = mapped_column(String(200))
    username: Mapped[str | None] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    # An email the shopper's page gave without the store's signature: shown, never proof.
    claimed_email: Mapped[str | None] = mapped_column(String(320))
    tier: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Conversation(Base):
    __tablename__ = "conversations"
    __table_args__ = (
        Index("ix_conversations_state", "state", "priority"),
        # The inbox's newest-first lists ("With AI", "Resolved") page through one state by id.
        Index("ix_conversations_state_id", "state", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(32))
    channel_ref: Mapped[str | None] = mapped_column(String(128), index=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    token_hash: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default="bot")
    owner: Mapped[str | None] = mapped_column(String(200))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    reason: Mapped[str | None] = mapped_column(Text)
    summary: Mapped[str | None] = mapped_column(Text)
    context: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    memory: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    sale: Mapped[str | None] = mapped_column(String(128))
    inbox_ref: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The inbox's key for this conversation's thread (Slack: "C123:1700000000.0001"), to route
    # replies in a thread back to their conversation with an index, not a JSON scan.
    inbox_thread: Mapped[str | None] = mapped_column(String(128), index=True)
    blocked: Mapped[bool] = mapped_column(Boolean, default=False)
    # Which instance is running this conversation's turns, until when (several instances).
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    handed_off_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("conversation_id", "source", "platform_id", name="uq_message_platform"),
        Index("ix_messages_conv", "conversation_id", "id"),
        Index("ix_messages_unhandled", "handled", "conversation_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"))
    role: Mapped[str] = mapped_column(String(16))  # shopper | agent | human | system | note
    text: Mapped[str] = mapped_column(Text)
    author: Mapped[str | None] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(32), default="core")
    platform_id: Mapped[str | None] = mapped_column(String(128))
    handled: Mapped[bool] = mapped_column(Boolean, default=True)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    tokens_in: Mapped[int] = mapped_column(Integer, default=0)
    tokens_out: Mapped[int] = mapped_column(Integer, default=0)
    latency_ms: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ConversationTag(Base):
    __tablename__ = "conversation_tags"

    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(64), primary_key=True)


class TagEvent(Base):
    __tablename__ = "tag_events"
    __table_args__ = (Index("ix_tag_events_tag_at", "tag", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"), index=True)
    tag: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(8))  # add | remove
    actor: Mapped[str] = mapped_column(String(200))
    sale: Mapped[str | None] = mapped_column(String(128))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class StateEvent(Base):
    __tablename__ = "state_events"
    __table_args__ = (
        Index("ix_state_events_conv", "conversation_id", "id"),
        # The honest wait reads the last hour's claims at every handoff (core/waiting.py):
        # without it, a table that grows by every state change is scanned in full.
        Index("ix_state_events_new_at", "new", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"))
    kind: Mapped[str] = mapped_column(String(16))  # state | owner
    old: Mapped[str | None] = mapped_column(String(200))
    new: Mapped[str | None] = mapped_column(String(200))
    actor: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class OutboxRow(Base):
    """One thing to send. Written in the transaction that caused it; sent by the delivery worker."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_pending", "status", "next_attempt_at"),
        Index("ix_outbox_lane", "conversation_id", "lane", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_id: Mapped[int | None] = mapped_column(ForeignKey("conversations.id"))
    lane: Mapped[str] = mapped_column(String(16))  # shopper | inbox
    destination: Mapped[str] = mapped_column(
        String(32)
    )  # adapter name: widget, telegram, slack, web
    kind: Mapped[str] = mapped_column(
        String(16)
    )  # send | state | open_thread | post | update | alert
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(
        String(16), default="pending"
    )  # pending|sending|sent|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ProcessedId(Base):
    """Platform ids already taken in (Slack event ids, Telegram update ids), so retries do nothing."""

    __tablename__ = "processed_ids"

    source: Mapped[str] = mapped_column(String(32), primary_key=True)
    platform_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Rating(Base):
    """A shopper's one-tap rating after a conversation is resolved (CSAT)."""

    __tablename__ = "ratings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"), index=True)
    score: Mapped[int] = mapped_column(Integer)  # 1 = thumbs up, -1 = thumbs down
    channel: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class AlertLog(Base):
    """Spike alerts raised, so a cool-down holds across restarts and instances."""

    __tablename__ = "alert_log"
    __table_args__ = (Index("ix_alert_log_key_at", "key", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(128))
    text: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class PacingSlot(Base):
    """The next free sending slot per rate-limited destination, shared by every instance."""

    __tablename__ = "pacing_slots"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    next_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Lease(Base):
    """A job only one instance may do at a time (Telegram's getUpdates polling): held by `holder`
    until `until`, renewed while it works, free for another once it has expired or is released."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(64))
    until: Mapped[datetime] = mapped_column(UTCDateTime())


class Staff(Base):
    """A person who works in the web inbox, under whose name their replies and changes are kept.

    `login_hash` is the sha256 of their one-time login secret (a random 256-bit token, so a
    plain hash is enough: there is nothing to brute-force), cleared when it is used."""

    __tablename__ = "staff"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    # The name folded for comparison, so "maria lopez" cannot be added beside "Maria Lopez".
    name_key: Mapped[str] = mapped_column(String(100), unique=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    login_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    login_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class StaffSession(Base):
    """A signed-in browser. Only the sha256 of the cookie's random id is stored, so a copy of
    the database does not sign anyone in."""

    __tablename__ = "staff_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PreparedAction(Base):
    """A write to the store (cancel, refund) a rule prepared for a person to approve. `state` is
    the compare-and-set every decision and every run goes through: prepared -> approved | denied
    (one decision wins, however many clicks), approved -> done | failed (one outcome counts,
    however often the outbox delivers the run). `expired`: the conversation was handed off again
    and the ticket no longer offers it. The key goes to the store's API with every attempt."""

    __tablename__ = "prepared_actions"
    __table_args__ = (
        UniqueConstraint("conversation_id", "seq", name="uq_prepared_conv_seq"),
        Index("ix_prepared_state", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"))
    seq: Mapped[int] = mapped_column(Integer)  # 1, 2, ... within the conversation: `#42:2`
    action: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    summary: Mapped[str] = mapped_column(Text, default="")
    idempotency_key: Mapped[str] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(16), default="prepared")
    decided_by: Mapped[str | None] = mapped_column(String(200))
    decided_via: Mapped[str | None] = mapped_column(String(32))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    note: Mapped[str | None] = mapped_column(Text)  # why it was denied
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class LabelledExample(Base):
    """A shopper's message that a person's correction (a retag, "wrong handoff") labelled with
    the intent it should have been read as ('none': no request at all). It waits for review:
    only accepted examples train the classifier, at the next start, so one hasty click never
    changes the agent by itself (core/corrections.py)."""

    __tablename__ = "labelled_examples"
    __table_args__ = (Index("ix_labelled_examples_status", "status", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    text: Mapped[str] = mapped_column(Text)  # the stored (already masked) message text
    label: Mapped[str] = mapped_column(String(64))
    # Other intents the correction could mean (a tag that several intents' rules put on).
    alternatives: Mapped[list[Any]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|accepted|rejected|superseded
    cause: Mapped[str] = mapped_column(String(16))  # wrong | retag
    change: Mapped[list[Any]] = mapped_column(JSON, default=list)  # ["-human-requested", "+cancellation"]
    note: Mapped[str | None] = mapped_column(Text)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"), index=True)
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"), index=True)
    actor: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    reviewed_by: Mapped[str | None] = mapped_column(String(200))
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
