"""In-memory fakes of the ports, for fast tests of the core: push a message in, pop what went out."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, ClassVar

from core.bridge import BridgeBase, Capabilities, Role
from core.clock import Clock
from domain.outbox import DeliveryResult, Kind
from domain.ports import ConversationView, DeliveryError, Handoff, MessageView, Turn


@dataclass
class ScriptedAgent:
    """Answers with a fixed reply, or hands off when the shopper's text contains a trigger."""

    handoff_on: str = "person"
    replies: list[str] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)
    histories: list[list[MessageView]] = field(default_factory=list)

    async def respond(self, conversation: ConversationView, history: list[MessageView]) -> Turn:
        text = [m for m in history if m.role == "shopper"][-1].text
        self.seen.append(text)
        self.histories.append(history)
        if self.handoff_on in text:
            return Turn(
                reply="A person will reply soon.",
                handoff=Handoff(tags=["human-requested"], reason="asked", priority=1),
            )
        reply = f"echo: {text}"
        self.replies.append(reply)
        return Turn(reply=reply)


@dataclass
class FakeChannel(BridgeBase):
    """A shopper channel that records what it sent and fails on demand (delivered through the
    outbox, unlike the real widget)."""

    role: ClassVar[Role] = Role.CHANNEL
    name: str = "widget"
    sent: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    states: list[tuple[int, str]] = field(default_factory=list)
    failures: deque[DeliveryError] = field(default_factory=deque)
    clock: Clock | None = None  # when set, `sent_at` has each send's time on it
    sent_at: list[float] = field(default_factory=list)

    async def send(
        self, conversation: ConversationView, message: dict[str, Any], *, step: int = 0
    ) -> DeliveryResult:
        if self.failures:
            raise self.failures.popleft()
        self.sent.append((conversation.id, message))
        if self.clock is not None:
            self.sent_at.append(self.clock.monotonic())
        return DeliveryResult()

    async def state(self, conversation: ConversationView) -> None:
        self.states.append((conversation.id, conversation.state))

    def rate_keys(self, conversation: ConversationView | None, kind: Kind = Kind.SEND) -> list[str]:
        return [f"fake-chat:{conversation.id}"] if conversation else []

    def texts(self, conversation_id: int) -> list[str]:
        return [m["text"] for cid, m in self.sent if cid == conversation_id]


@dataclass
class FakeInbox(BridgeBase):
    """An inbox that keeps tickets, delivered through the outbox (like Slack)."""

    role: ClassVar[Role] = Role.INBOX
    capabilities: ClassVar[Capabilities] = Capabilities(exclusive=True)
    name: str = "web"
    threads: dict[int, list[str]] = field(default_factory=dict)
    updates: list[tuple[int, str, str | None]] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)
    failures: deque[Exception] = field(default_factory=deque)

    async def open_thread(
        self, conversation: ConversationView, history: list[MessageView], context: dict[str, Any]
    ) -> dict[str, Any]:
        if self.failures:
            raise self.failures.popleft()
        self.threads[conversation.id] = []
        return {"thread_key": f"T:{conversation.id}"}

    async def post_history(self, ref: dict[str, Any], conversation: ConversationView, history: list[MessageView]) -> int:
        if self.failures:
            raise self.failures.popleft()
        part = history[:2]  # two messages per post, so long histories take several posts
        self.threads[conversation.id].extend(f"{m.role}: {m.text}" for m in part)
        return part[-1].id

    async def post(
        self, ref: dict[str, Any], conversation: ConversationView, message: dict[str, Any]
    ) -> DeliveryResult:
        if self.failures:
            raise self.failures.popleft()
        self.threads[conversation.id].append(f"{message['role']}: {message['text']}")
        return DeliveryResult()

    async def update(self, ref: dict[str, Any], conversation: ConversationView) -> None:
        self.updates.append((conversation.id, conversation.state, conversation.owner))

    async def alert(self, text: str) -> None:
        self.alerts.append(text)

    def rate_keys(self, conversation: ConversationView | None, kind: Kind = Kind.POST) -> list[str]:
        return ["fake-inbox:all"]
