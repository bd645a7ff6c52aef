"""The widget and the web inbox as bridges, wrapping their packages' classes until those
packages declare their own (their owners are reworking them; the port moves this there)."""

from __future__ import annotations

from typing import Any, cast

from aiohttp import web

from bridges.webinbox.routes import WebInbox, WebInboxRoutes
from bridges.widget.embedding import WidgetPolicy
from bridges.widget.routes import WidgetChannel, WidgetRoutes
from core.bridge import Bridge, BridgeBase, BridgeSetup, Capabilities, Role
from core.lifecycle import Core
from domain.outbox import AlertPayload, DeliveryResult, Kind, Outgoing, SendPayload, StatePayload
from domain.ports import ConversationView, MessageView


class WidgetBridge(BridgeBase):
    name = "widget"
    role = Role.CHANNEL
    # Delivery is the live event on commit (the messages table is the record); typing too.
    capabilities = Capabilities(live=True, typing=True)

    def __init__(self, setup: BridgeSetup) -> None:
        self.live = setup.live
        self.channel = WidgetChannel(setup.live)
        self.settings = setup.settings
        self.max_text = setup.settings.max_message_chars

    def mount(self, app: web.Application, core: Core) -> None:
        WidgetRoutes(
            core, self.live, max_text=self.max_text, policy=WidgetPolicy.from_settings(self.settings)
        ).register(app)

    def publish(self, conversation_id: int | None, out: Outgoing) -> None:
        topic = f"conv:{conversation_id}"
        if out.kind is Kind.SEND:
            self.live.publish(topic, {"type": "message", **cast(SendPayload, out.payload)["message"]})
        elif out.kind is Kind.STATE:
            self.live.publish(topic, {"type": "state", "state": cast(StatePayload, out.payload)["state"]})

    async def send(
        self, conversation: ConversationView, message: dict[str, Any], *, step: int = 0
    ) -> DeliveryResult:
        return await self.channel.send(conversation, message)

    async def state(self, conversation: ConversationView) -> None:
        await self.channel.state(conversation)

    async def typing(self, conversation: ConversationView) -> None:
        await self.channel.typing(conversation)


class WebInboxBridge(BridgeBase):
    name = "web"
    role = Role.INBOX
    # The page reads the database: it needs a nudge when a change commits (the core's "changed"
    # event) and the team's alerts, never a ticket of its own; so it runs beside Slack.
    capabilities = Capabilities(live=True)

    def __init__(self, setup: BridgeSetup) -> None:
        self.setup = setup
        self.inbox = WebInbox(setup.live)
        self.routes: WebInboxRoutes | None = None

    @property
    def alerts(self) -> list[str]:
        return self.inbox.alerts

    def mount(self, app: web.Application, core: Core) -> None:
        settings, config = self.setup.settings, self.setup.config
        tags = [
            {"name": n, "description": t.description, "emoji": t.emoji, "color": t.color}
            for n, t in config.tags.items()
        ]
        self.routes = WebInboxRoutes(
            core,
            self.setup.live,
            tags,
            trusted_proxies=settings.trusted_proxies,
            login_limit=settings.inbox_login_limit,
            session_seconds=settings.inbox_session_days * 86400,
        )
        self.routes.staff = self.setup.staff
        self.routes.reader = self.setup.queue
        self.routes.register(app)

    def publish(self, conversation_id: int | None, out: Outgoing) -> None:
        if out.kind is Kind.ALERT:
            text = cast(AlertPayload, out.payload)["text"]
            self.inbox.alerts = [*self.inbox.alerts[-49:], text]
            self.setup.live.publish("inbox", {"type": "alert", "text": text})

    async def open_thread(
        self, conversation: ConversationView, history: list[MessageView], context: dict[str, Any]
    ) -> dict[str, Any]:
        return await self.inbox.open_thread(conversation, history, context)

    async def post(
        self, ref: dict[str, Any], conversation: ConversationView, message: dict[str, Any]
    ) -> DeliveryResult:
        return await self.inbox.post(ref, conversation, message)

    async def post_history(
        self, ref: dict[str, Any], conversation: ConversationView, history: list[MessageView]
    ) -> int:
        return await self.inbox.post_history(ref, conversation, history)

    async def update(self, ref: dict[str, Any], conversation: ConversationView) -> None:
        await self.inbox.update(ref, conversation)

    async def alert(self, text: str) -> None:
        await self.inbox.alert(text)


def widget_bridge(setup: BridgeSetup) -> Bridge:
    return WidgetBridge(setup)


def web_inbox_bridge(setup: BridgeSetup) -> Bridge:
    return WebInboxBridge(setup)
