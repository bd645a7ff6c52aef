"""The one contract between the core and a platform: a `Bridge`.

A bridge is a shopper channel (the widget, Telegram) or an inbox for people (Slack, the web
inbox). The app factory builds each from a `BridgeSetup` (settings, config, the live hub, the
pacer, the clock), then the core and the delivery worker from the bridges, then mounts each
bridge: its routes go on the app and everything that comes in goes to the core's methods (a
bridge never opens a database session or writes an outbox row). `start` and `stop` run from
aiohttp's cleanup_ctx. Going out, the worker calls the delivery methods (`ShopperChannel`,
`Inbox`) for rows in the outbox, or the core calls `publish` when the change commits for a
bridge whose delivery is live.

What a bridge is able to do is declared, not probed: `Capabilities`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from aiohttp import web

from core.clock import Clock
from core.live import LiveHub
from core.pacing import Pacer
from core.queue import QueueReader
from core.staff import StaffAccounts
from domain.outbox import Kind, Outgoing
from domain.ports import ConversationView, Inbox, ShopperChannel
from domain.settings import Settings
from domain.storeconfig import StoreConfig

if TYPE_CHECKING:  # the core is built from the bridges; a bridge only names it
    from core.lifecycle import Core


class ConfigurationError(Exception):
    """The service must not start like this (a missing secret in production mode, say)."""


class Role(StrEnum):
    CHANNEL = "channel"  # where shoppers are: rows in the shopper lane go to it
    INBOX = "inbox"  # where people are: handoff tickets, their replies, team alerts


@dataclass(frozen=True)
class Capabilities:
    # Delivery is a live event published when the change commits (the widget's sockets, the web
    # inbox's page): no outbox row, no retry; the database is the record a client catches up
    # from. The core calls `publish` instead of the worker calling the delivery methods.
    live: bool = False
    # Shows that someone is typing while the agent works: the core calls `typing`.
    typing: bool = False
    # The kinds whose deliveries spend the destination's pace (its `rate_keys`); other kinds
    # send nothing the platform counts (Telegram's state changes) and are never held back.
    paced_kinds: frozenset[Kind] = field(default_factory=lambda: frozenset(Kind))
    # An inbox that keeps each conversation's ticket (Slack's thread; its reference lives on the
    # conversation, which holds one): at most one such inbox runs. Inboxes that read the
    # database instead (the web inbox) run beside it and beside each other.
    exclusive: bool = False


@dataclass(frozen=True)
class BridgeSetup:
    """What a bridge is built from, before the core exists."""

    settings: Settings
    config: StoreConfig
    live: LiveHub
    pacer: Pacer
    clock: Clock
    staff: StaffAccounts  # who may sign in to an inbox, under which name
    queue: QueueReader  # an inbox's paged lists


@runtime_checkable
class Bridge(Protocol):
    name: str  # the outbox's destination and the conversations' channel (a shopper channel)
    role: Role
    capabilities: Capabilities

    def mount(self, app: web.Application, core: Core) -> None:
        """Add the bridge's routes (before the app starts: aiohttp freezes its router) and keep
        `core`, where every incoming call goes."""
        ...

    async def start(self) -> None:
        """Connect (check a token, open a socket, start polling): the core is ready by now."""
        ...

    async def stop(self) -> None:
        """Stop taking work in and finish what was taken; the worker has stopped sending."""
        ...

    def publish(self, conversation_id: int | None, out: Outgoing) -> None:
        """A live bridge's delivery, called once the change that caused it commits, in commit
        order (only with `capabilities.live`)."""
        ...


class ChannelBridge(Bridge, ShopperChannel, Protocol):
    async def typing(self, conversation: ConversationView) -> None:
        """The agent is working on the shopper's message (only with `capabilities.typing`);
        return at once: the agent never waits on a platform."""
        ...


class InboxBridge(Bridge, Inbox, Protocol):
    pass


BridgeFactory = Callable[[BridgeSetup], Bridge | None]  # None: not configured here


class BridgeBase:
    """Defaults for what most bridges do not need: no routes, nothing to start or stop, no
    pacing, no live delivery."""

    name: str
    role: Role
    capabilities = Capabilities()

    def mount(self, app: web.Application, core: Core) -> None:
        return None

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def rate_keys(self, conversation: ConversationView | None, kind: Kind) -> list[str]:
        return []

    def publish(self, conversation_id: int | None, out: Outgoing) -> None:
        raise NotImplementedError(f"{self.name} is not a live bridge")


def check_bridges(bridges: list[Bridge]) -> None:
    """One name each; at most one inbox that keeps tickets, and only such an inbox is
    delivered through the outbox."""
    names = [b.name for b in bridges]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigurationError(f"two bridges are called {', '.join(twice)}")
    exclusive = [b.name for b in bridges if b.role is Role.INBOX and b.capabilities.exclusive]
    if len(exclusive) > 1:
        raise ConfigurationError(
            f"only one inbox can keep the tickets of handed-off conversations, not {exclusive}"
        )
    for b in bridges:
        if b.role is Role.INBOX and not b.capabilities.live and not b.capabilities.exclusive:
            raise ConfigurationError(
                f"inbox {b.name!r} is delivered through the outbox, so it keeps each "
                "conversation's ticket: declare it exclusive"
            )
