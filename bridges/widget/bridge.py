"""The web widget as a bridge. Its delivery is live: the messages table is the record, open
sockets get each message and state change as an event the moment it commits (`publish`), and a
widget that was away catches up with `after=`. No outbox row, no retry, no pacing."""

from __future__ import annotations

from typing import Any, cast

from aiohttp import web

from bridges.widget.embedding import WidgetPolicy
from bridges.widget.routes import WidgetRoutes
from core.bridge import BridgeBase, BridgeSetup, Capabilities, Role
from core.lifecycle import Core
from domain.outbox import DeliveryResult, Kind, Outgoing, SendPayload, StatePayload
from domain.ports import ConversationView


class WidgetBridge(BridgeBase):
    name = "widget"
    role = Role.CHANNEL
    capabilities = Capabilities(live=True, typing=True)

    def __init__(self, setup: BridgeSetup) -> None:
        self.settings = setup.settings
        self.live = setup.live

    def mount(self, app: web.Application, core: Core) -> None:
        WidgetRoutes(
            core,
            self.live,
            max_text=self.settings.max_message_chars,
            policy=WidgetPolicy.from_settings(self.settings),
        ).register(app)

    def _topic(self, conversation_id: int | None) -> str:
        return f"conv:{conversation_id}"

    def publish(self, conversation_id: int | None, out: Outgoing) -> None:
        if out.kind is Kind.SEND:
            message = cast(SendPayload, out.payload)["message"]
            self.live.publish(self._topic(conversation_id), {"type": "message", **message})
        elif out.kind is Kind.STATE:
            state = cast(StatePayload, out.payload)["state"]
            self.live.publish(self._topic(conversation_id), {"type": "state", "state": state})

    async def typing(self, conversation: ConversationView) -> None:
        self.live.publish(self._topic(conversation.id), {"type": "typing"})

    # Rows addressed to the widget before its delivery was live (an older version's, still in
    # the outbox after an upgrade) go out as the same events.

    async def send(
        self, conversation: ConversationView, message: dict[str, Any], *, step: int = 0
    ) -> DeliveryResult:
        n = self.live.publish(self._topic(conversation.id), {"type": "message", **message})
        return DeliveryResult.done(sockets=n)

    async def state(self, conversation: ConversationView) -> None:
        self.live.publish(self._topic(conversation.id), {"type": "state", "state": conversation.state})
