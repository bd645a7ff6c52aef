"""The outbox's vocabulary: which lane a row waits in, what kind of delivery it is, what its
payload holds, and what a bridge answers after a delivery.

Rows are stored as strings and JSON (the database outlives any one version of this file), so
these types are the one place that spells them; nothing else writes the literals."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

if TYPE_CHECKING:  # ports.py imports this module: the view is only named here, never built
    from domain.ports import MessageView


class Lane(StrEnum):
    """Rows are delivered in order within a conversation's lane; lanes do not wait for each
    other (a Slack outage never holds up the shopper's replies)."""

    SHOPPER = "shopper"
    INBOX = "inbox"
    ALERT = "alert"  # no conversation: every alert is its own lane
    # Writes to the store's API a person approved (cancel, refund): a lane of their own, so a
    # Slack outage never holds up a refund and a slow store never holds up the ticket.
    ACTION = "action"


class Kind(StrEnum):
    SEND = "send"  # a message to the shopper
    STATE = "state"  # the conversation's state, for a channel that shows it
    OPEN_THREAD = "open_thread"  # the inbox's ticket for a handed-off conversation
    HISTORY = "history"  # the conversation so far, into that ticket
    POST = "post"  # one message (or a notice) into the ticket
    UPDATE = "update"  # the ticket's header: state, owner, tags
    ALERT = "alert"  # a line for the whole team (a spike)
    RUN_ACTION = "run_action"  # run an approved write once (the prepared action's id)


class SendPayload(TypedDict):
    message_id: int
    message: dict[str, Any]  # MessageView.as_json(), so sending needs no query
    step: NotRequired[int]  # a delivery in several steps: the next one (see DeliveryResult)


class StatePayload(TypedDict):
    state: str


class HistoryPayload(TypedDict):
    upto: int | None  # the last message the ticket should show when it opens


class PostPayload(TypedDict, total=False):
    message_id: int  # a stored message
    text: str  # or a notice with no message row (an SLA reminder), for the inbox only


class AlertPayload(TypedDict):
    text: str


class RunActionPayload(TypedDict):
    prepared_id: int


class EmptyPayload(TypedDict):
    pass


Payload = (
    SendPayload
    | StatePayload
    | HistoryPayload
    | PostPayload
    | AlertPayload
    | RunActionPayload
    | EmptyPayload
)
PAYLOADS: dict[tuple[Lane, Kind], type] = {
    (Lane.SHOPPER, Kind.SEND): SendPayload,
    (Lane.SHOPPER, Kind.STATE): StatePayload,
    (Lane.INBOX, Kind.OPEN_THREAD): EmptyPayload,
    (Lane.INBOX, Kind.HISTORY): HistoryPayload,
    (Lane.INBOX, Kind.POST): PostPayload,
    (Lane.INBOX, Kind.UPDATE): EmptyPayload,
    (Lane.ALERT, Kind.ALERT): AlertPayload,
    (Lane.ACTION, Kind.RUN_ACTION): RunActionPayload,
}
# Approved writes are addressed to the store's API, not to a bridge.
STORE_DESTINATION = "store"


@dataclass(frozen=True)
class Outgoing:
    """One thing the core wants delivered; the core picks its destination(s)."""

    lane: Lane
    kind: Kind
    payload: Payload


def shopper_send(message: MessageView) -> Outgoing:
    return Outgoing(
        Lane.SHOPPER, Kind.SEND, SendPayload(message_id=message.id, message=message.as_json())
    )


def shopper_state(state: str) -> Outgoing:
    return Outgoing(Lane.SHOPPER, Kind.STATE, StatePayload(state=state))


def open_thread() -> Outgoing:
    return Outgoing(Lane.INBOX, Kind.OPEN_THREAD, EmptyPayload())


def thread_history(upto: int | None) -> Outgoing:
    return Outgoing(Lane.INBOX, Kind.HISTORY, HistoryPayload(upto=upto))


def thread_post(message_id: int) -> Outgoing:
    return Outgoing(Lane.INBOX, Kind.POST, PostPayload(message_id=message_id))


def thread_notice(text: str) -> Outgoing:
    return Outgoing(Lane.INBOX, Kind.POST, PostPayload(text=text))


def thread_update() -> Outgoing:
    return Outgoing(Lane.INBOX, Kind.UPDATE, EmptyPayload())


def team_alert(text: str) -> Outgoing:
    return Outgoing(Lane.ALERT, Kind.ALERT, AlertPayload(text=text))


def run_action(prepared_id: int) -> Outgoing:
    return Outgoing(Lane.ACTION, Kind.RUN_ACTION, RunActionPayload(prepared_id=prepared_id))


@dataclass(frozen=True)
class DeliveryResult:
    """What a bridge answers after a delivery attempt that did not fail (a failure raises
    DeliveryError). `info` is kept on the outbox row for whoever reads it later.

    `more`: one step of several is done (a Telegram reply split in parts, a long history in
    several thread posts). The row goes back to the head of its lane, paced again like a row of
    its own, and the next attempt starts at `step`: so a retry after a failure, a restart or
    another instance taking the row over goes on where it stopped instead of from the start."""

    info: Mapping[str, Any] = field(default_factory=dict)
    more: bool = False
    step: int = 0

    @classmethod
    def done(cls, **info: Any) -> DeliveryResult:
        return cls(info=info)

    @classmethod
    def again(cls, step: int = 0, **info: Any) -> DeliveryResult:
        return cls(info=info, more=True, step=step)
