"""A shopper channel that exists only for tests, written as a new platform's bridge would be:
the proof that a channel is one folder (here one file) and one line where the app is built.

The "platform" is an HTTP endpoint of its own: `POST /echo/{user}` with `{"id", "text"}` is a
message from that user (redelivered ids are taken once), and `GET /echo/{user}` is the user's
screen: everything the service sent them, in order. Deliveries go through the outbox, paced per
user, like Telegram's."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from aiohttp import web

from core.bridge import Bridge, BridgeBase, BridgeSetup, Role
from core.lifecycle import Core, CoreError
from domain.outbox import DeliveryResult, Kind
from domain.ports import ConversationView

RATE = 20.0  # messages a second per user: the platform's limit, kept by the outbox


class EchoBridge(BridgeBase):
    name = "echo"
    role = Role.CHANNEL

    def __init__(self, setup: BridgeSetup) -> None:
        setup.pacer.limit("echo-user", rate=RATE)
        self.screens: dict[str, list[str]] = defaultdict(list)
        self.states: dict[str, list[str]] = defaultdict(list)
        self.core: Core | None = None

    def mount(self, app: web.Application, core: Core) -> None:
        self.core = core
        app.router.add_post("/echo/{user}", self.incoming)
        app.router.add_get("/echo/{user}", self.screen)

    async def incoming(self, request: web.Request) -> web.Response:
        assert self.core is not None
        user = request.match_info["user"]
        body: dict[str, Any] = await request.json()
        conv = await self.core.conversation_for_channel("echo", user, user, name=user.title())
        try:
            await self.core.shopper_message(
                conv.id, str(body.get("text", "")), source="echo", platform_id=str(body["id"])
            )
        except CoreError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"conversation_id": conv.id})

    async def screen(self, request: web.Request) -> web.Response:
        user = request.match_info["user"]
        return web.json_response({"messages": self.screens[user], "states": self.states[user]})

    # ------------------------------------------------------------------ delivery

    def rate_keys(self, conversation: ConversationView | None, kind: Kind = Kind.SEND) -> list[str]:
        return [f"echo-user:{conversation.channel_ref}"] if conversation else []

    async def send(
        self, conversation: ConversationView, message: dict[str, Any], *, step: int = 0
    ) -> DeliveryResult:
        assert conversation.channel_ref is not None
        author = f"{message['author']}: " if message.get("role") == "human" else ""
        self.screens[conversation.channel_ref].append(author + str(message["text"]))
        return DeliveryResult.done(shown=len(self.screens[conversation.channel_ref]))

    async def state(self, conversation: ConversationView) -> None:
        assert conversation.channel_ref is not None
        self.states[conversation.channel_ref].append(conversation.state)


def build(setup: BridgeSetup) -> Bridge:
    return EchoBridge(setup)
