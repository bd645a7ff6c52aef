"""Slack as a bridge, mounted in our aiohttp app: one endpoint, POST /slack/events, for events, commands and
interactivity. Bolt verifies every request's signature (v0, 5-minute window) before anything
else runs; a bad one is answered 401 and touches nothing.

Bolt's own authorization calls auth.test on the first request and, if Slack cannot answer,
replies 200 with an apology, which would make Slack drop the event. Ours asks auth.test once
(at start, else on the first request) and, while Slack cannot answer, fails the request with a
500 so that Slack delivers it again later."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bridges.slack.inbox import SlackInbox
from bridges.slack.listeners import Names, SlackContext, register
from bridges.slack.reminders import ReminderLoop
from core.bridge import BridgeSetup, Capabilities, Role
from core.lifecycle import Core
from domain.outbox import Outgoing
from domain.ports import MessageView

log = logging.getLogger("handoff.slack")
TIMEOUT = 15.0  # seconds for one Web API call; a timeout is retried by the outbox


class SlackUnavailable(RuntimeError):
    """Slack could not confirm who we are (auth.test): answer 500 so Slack retries."""


class Identity:
    """The bot's identity from auth.test, asked once and kept."""

    def __init__(self, client: AsyncWebClient, token: str) -> None:
        self.client = client
        self.token = token
        self.info: dict[str, Any] | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> dict[str, Any]:
        if self.info is not None:
            return self.info
        async with self._lock:
            if self.info is None:
                try:
                    resp = await self.client.auth_test()
                except (SlackApiError, aiohttp.ClientError, TimeoutError, OSError) as exc:
                    raise SlackUnavailable(f"auth.test failed: {exc}") from exc
                self.info = dict(resp.data) if isinstance(resp.data, dict) else {}
        return self.info

    def authorizer(self) -> Callable[..., Awaitable[AuthorizeResult]]:
        """Bolt's `authorize` (a plain function: Bolt reads its argument names)."""

        async def authorize(
            enterprise_id: str | None, team_id: str | None, user_id: str | None
        ) -> AuthorizeResult:
            info = await self.get()
            return AuthorizeResult(
                enterprise_id=info.get("enterprise_id") or enterprise_id,
                team_id=info.get("team_id") or team_id,
                team=info.get("team"),
                url=info.get("url"),
                bot_user_id=info.get("user_id"),
                bot_id=info.get("bot_id"),
                bot_token=self.token,
                user_id=user_id,
            )

        return authorize

    async def permalink(self, channel: str, ts: str) -> str | None:
        """A thread's address, built from the workspace URL (no API call)."""
        try:
            url = (await self.get()).get("url")
        except SlackUnavailable:
            return None
        return f"{url.rstrip('/')}/archives/{channel}/p{ts.replace('.', '')}" if url else None


class SlackBridge(SlackInbox):
    """Slack as the inbox: the ticket is a thread (the outbox delivers to it, see SlackInbox),
    and people's replies, buttons and /handoff come back in through POST /slack/events (or
    Socket Mode) to the core."""

    name = "slack"
    role = Role.INBOX
    # Keeps each ticket's thread on the conversation; posts and edits are paced (per channel,
    # and chat.update's own tier) across instances, since the limits are Slack's.
    capabilities = Capabilities(exclusive=True)

    def __init__(self, setup: BridgeSetup) -> None:
        settings = setup.settings
        assert settings.slack_bot_token and settings.slack_inbox_channel
        self.settings = settings
        self.secret = (
            settings.slack_signing_secret.get_secret_value()
            if settings.slack_signing_secret
            else ""
        )
        token = settings.slack_bot_token.get_secret_value()
        # No retry handlers: a 429 or 5xx comes back to the outbox, which paces and retries.
        client = AsyncWebClient(
            token=token, base_url=settings.slack_api_url, timeout=TIMEOUT, retry_handlers=[]
        )
        super().__init__(
            client,
            setup.config,
            settings.slack_inbox_channel,
            post_rate=settings.slack_post_rate,
            clock=setup.clock,
        )
        self.identity = Identity(client, token)
        setup.pacer.limit("slack-channel", rate=settings.slack_post_rate, burst=1, shared=True)
        setup.pacer.limit("slack-update", rate=settings.slack_update_rate, burst=5, shared=True)
        self.bolt: AsyncApp | None = None
        self.context: SlackContext | None = None
        self.reminders: ReminderLoop | None = None
        self.socket: AsyncSocketModeHandler | None = None
        self.connecting: asyncio.Task[None] | None = None

    def mount(self, app: web.Application, core: Core) -> None:
        settings, config = self.settings, self.config
        self.bolt = AsyncApp(
            client=AsyncWebClient(
                base_url=settings.slack_api_url, timeout=TIMEOUT, retry_handlers=[]
            ),
            # Without a secret (demo mode) Bolt sees only Socket Mode traffic, which the app
            # token authenticates; the HTTP route refuses everything.
            signing_secret=self.secret or None,
            request_verification_enabled=bool(self.secret),
            authorize=self.identity.authorizer(),
            process_before_response=False,
        )
        self.context = SlackContext(
            core=core,
            inbox=self,
            names=Names(self.client, fallback=config.store.team_name),
            config=config,
            channels={self.inbox_channel, *config.routing().values()},
            permalink=self.identity.permalink,
        )
        register(self.bolt, self.context)

        async def history(conversation_id: int, after: int, limit: int | None) -> list[MessageView]:
            return await core.history(conversation_id, after=after, include_notes=True, limit=limit)

        self.read_history = history  # the ticket shows the conversation: see SlackInbox
        self.reminders = ReminderLoop(core, config)
        app.router.add_post("/slack/events", self.events)

    async def events(self, request: web.Request) -> web.Response:
        if not self.secret:
            # Demo mode or Socket Mode only (check_production refuses anything else): without
            # the secret no request can be verified, so none is accepted.
            return web.json_response(
                {"error": "SLACK_SIGNING_SECRET is not set: Slack requests cannot be verified"},
                status=401,
            )
        assert self.bolt is not None
        return await to_aiohttp_response(
            await self.bolt.async_dispatch(await to_bolt_request(request))
        )

    async def start(self) -> None:
        if not self.secret and not self.settings.slack_app_token:
            log.warning(
                "SLACK_SIGNING_SECRET is not set (demo mode): handoffs are posted to Slack, but "
                "no request from Slack is accepted at /slack/events"
            )
        assert self.reminders is not None and self.bolt is not None
        self.reminders.start()
        try:
            info = await self.identity.get()
            log.info("Slack: connected as %s in %s", info.get("user"), info.get("team"))
        except SlackUnavailable as exc:
            # Not fatal: handoffs wait in the outbox and events are retried until Slack answers.
            log.error("Slack: %s; will ask again on the first request", exc)
        if self.settings.slack_app_token:
            # Socket Mode: apps.connections.open (on SLACK_API_URL, with the app-level token)
            # gives a wss:// URL; Slack sends events, button presses and commands over it as
            # envelopes, and Bolt acknowledges each by its envelope_id once a listener acks.
            # Connecting runs in the background: slack_sdk retries until Slack answers, and
            # Slack being away must not hold up the widget and the web inbox.
            self.socket = AsyncSocketModeHandler(
                self.bolt,
                self.settings.slack_app_token.get_secret_value(),
                web_client=self.bolt.client,
            )
            self.connecting = asyncio.create_task(self._connect(), name="slack-socket-mode")

    async def _connect(self) -> None:
        assert self.socket is not None
        await self.socket.connect_async()
        log.info("Slack: connected in Socket Mode")

    async def stop(self) -> None:
        if self.socket is not None:
            with contextlib.suppress(Exception):
                await self.socket.close_async()
        if self.connecting is not None:
            self.connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.connecting
        if self.reminders is not None:
            await self.reminders.stop()
        if self.context is not None:
            # Replies already acknowledged to Slack are stored before the database closes.
            await self.context.drain()

    def publish(self, conversation_id: int | None, out: Outgoing) -> None:
        raise NotImplementedError("Slack is delivered through the outbox")
