"""The web inbox as a bridge. Its page reads the database through the core, so it keeps no
ticket of its own and needs nothing from the outbox: open pages hear on commit which
conversation changed (the core's "changed" events) and the team's alerts (`publish`). That is
why it runs beside Slack, or alone."""

from __future__ import annotations

from typing import Any, cast

from aiohttp import web

from bridges.webinbox.routes import WebInboxRoutes
from core.bridge import BridgeBase, BridgeSetup, Capabilities, Role
from core.lifecycle import Core
from domain.outbox import AlertPayload, DeliveryResult, Kind, Outgoing
from domain.ports import ConversationView, MessageView

KEEP_ALERTS = 50


class WebInboxBridge(BridgeBase):
    name = "web"
    role = Role.INBOX
    capabilities = Capabilities(live=True)

    def __init__(self, setup: BridgeSetup) -> None:
        self.setup = setup
        self.live = setup.live
        self.alerts: list[str] = []  # the latest alerts this instance raised
        self.routes: WebInboxRoutes | None = None

    def mount(self, app: web.Application, core: Core) -> None:
        settings, config = self.setup.settings, self.setup.config
        tags = [
            {"name": n, "description": t.description, "emoji": t.emoji, "color": t.color}
            for n, t in config.tags.items()
        ]
        self.routes = WebInboxRoutes(
            core,
            self.live,
            tags,
            staff=self.setup.staff,
            reader=self.setup.queue,
            trusted_proxies=settings.trusted_proxies,
            login_limit=settings.inbox_login_limit,
            session_seconds=settings.inbox_session_days * 86400,
        )
        self.routes.register(app)

    def publish(self, conversation_id: int | None, out: Outgoing) -> None:
        # Tickets need nothing: the core tells open pages which conversation changed.
        if out.kind is Kind.ALERT:
            self._alert(cast(AlertPayload, out.payload)["text"])

    def _alert(self, text: str) -> None:
        self.alerts = [*self.alerts[-(KEEP_ALERTS - 1) :], text]
        self.live.publish("inbox", {"type": "alert", "text": text})

    # Rows addressed to the web inbox before it was live (written by an older version and still
    # in the outbox after an upgrade) are delivered as the nudges they always were.

    def _changed(self, conversation: ConversationView) -> None:
        self.live.publish("inbox", {"type": "changed", "conversation_id": conversation.id})

    async def open_thread(
        self, conversation: ConversationView, history: list[MessageView], context: dict[str, Any]
    ) -> dict[str, Any]:
        self._changed(conversation)
        return {"inbox": self.name}

    async def post(
        self, ref: dict[str, Any], conversation: ConversationView, message: dict[str, Any]
    ) -> DeliveryResult:
        self._changed(conversation)
        return DeliveryResult()

    async def post_history(
        self, ref: dict[str, Any], conversation: ConversationView, history: list[MessageView]
    ) -> int:
        self._changed(conversation)
        return history[-1].id

    async def update(self, ref: dict[str, Any], conversation: ConversationView) -> None:
        self._changed(conversation)

    async def alert(self, text: str) -> None:
        self._alert(text)
