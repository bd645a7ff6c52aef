"""The seams between the core and everything else: plain data in, plain data out.

Bridges and agents implement these; the core never imports a platform SDK.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from domain.outbox import DeliveryResult, Kind
from domain.waiting import Expectation

STATES = ("bot", "queued", "claimed", "resolved")
ROLES = ("shopper", "agent", "human", "system", "note")


@dataclass(frozen=True)
class CustomerView:
    id: int
    channel: str
    external_id: str
    name: str | None = None
    username: str | None = None
    email: str | None = None  # proved: signed by the store, or given by the platform
    tier: str | None = None
    claimed_email: str | None = None  # what the shopper's page said, unsigned: not proof


@dataclass(frozen=True)
class ConversationView:
    """A snapshot of a conversation as a bridge or agent needs it (never a live ORM object)."""

    id: int
    channel: str
    channel_ref: str | None
    state: str
    owner: str | None
    priority: int
    tags: tuple[str, ...]
    reason: str | None
    summary: str | None
    context: dict[str, Any]
    memory: dict[str, Any]
    sale: str | None
    inbox_ref: dict[str, Any] | None
    blocked: bool
    customer: CustomerView
    created_at: datetime
    handed_off_at: datetime | None = None


@dataclass(frozen=True)
class MessageView:
    id: int
    conversation_id: int
    role: str
    text: str
    author: str | None
    created_at: datetime
    meta: dict[str, Any] = field(default_factory=dict)
    platform_id: str | None = None

    def as_json(self) -> dict[str, Any]:
        out = {
            "id": self.id,
            "role": self.role,
            "text": self.text,
            "author": self.author,
            "created_at": self.created_at.isoformat(),
            "sources": self.meta.get("sources", []),
        }
        if self.meta.get("ask_rating"):
            # The message that resolves a conversation not rated yet: a channel with buttons
            # asks for the rating with it (Telegram's inline keyboard).
            out["ask_rating"] = True
        if self.role == "shopper" and self.platform_id:
            # The sender's own id back, so a client can tell which of its sends arrived.
            out["client_id"] = self.platform_id
        return out


@dataclass
class Handoff:
    tags: list[str]
    reason: str
    summary: str = ""
    context: dict[str, Any] = field(default_factory=dict)
    priority: int = 0
    sale: str | None = None
    # The message to the shopper, rendered with the live queue when the handoff commits.
    expectation: Expectation | None = None


@dataclass
class Turn:
    """What the agent decided for one shopper turn."""

    reply: str | None
    handoff: Handoff | None = None
    actions_run: list[dict[str, Any]] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    memory: dict[str, Any] | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    latency_ms: int = 0
    meta: dict[str, Any] = field(default_factory=dict)


class Agent(Protocol):
    async def respond(self, conversation: ConversationView, history: list[MessageView]) -> Turn:
        """`history`: the conversation's latest messages up to the one to answer, oldest first,
        notes left out; who said what: each message's `meta` may be left out (an agent keeps
        what it needs across turns in the conversation's memory)."""
        ...


class DeliveryError(Exception):
    """A send failed. `retry_after` (seconds) when the platform said when; `permanent` stops retries."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        permanent: bool = False,
        blocked: bool = False,
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.permanent = permanent
        self.blocked = blocked


class ShopperChannel(Protocol):
    """Widget, Telegram: where shoppers are."""

    name: str

    async def send(
        self, conversation: ConversationView, message: dict[str, Any], *, step: int = 0
    ) -> DeliveryResult:
        """Deliver `message` (MessageView.as_json()). `step` > 0: an earlier attempt answered
        DeliveryResult.again(step), so go on from there."""
        ...

    async def state(self, conversation: ConversationView) -> None: ...

    def rate_keys(self, conversation: ConversationView | None, kind: Kind = Kind.SEND) -> list[str]:
        """The pacer's keys this delivery spends (per chat, per bot, ...); [] is unpaced."""
        ...


class Inbox(Protocol):
    """Slack, web inbox: where people are."""

    name: str

    async def open_thread(
        self, conversation: ConversationView, history: list[MessageView], context: dict[str, Any]
    ) -> dict[str, Any]:
        """The conversation's ticket; the reference returned is kept on the conversation."""
        ...

    async def post(
        self, ref: dict[str, Any], conversation: ConversationView, message: dict[str, Any]
    ) -> DeliveryResult: ...

    async def post_history(
        self, ref: dict[str, Any], conversation: ConversationView, history: list[MessageView]
    ) -> int:
        """Post a prefix of `history` (as much as one post holds); return the last message id posted."""
        ...

    async def update(self, ref: dict[str, Any], conversation: ConversationView) -> None: ...

    async def alert(self, text: str) -> None: ...

    def rate_keys(self, conversation: ConversationView | None, kind: Kind = Kind.POST) -> list[str]: ...
