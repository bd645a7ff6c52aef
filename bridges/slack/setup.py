"""Mounting Slack in our aiohttp app: one endpoint, POST /slack/events, for events, commands and
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
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bridges.slack.inbox import SlackInbox
from bridges.slack.listeners import Names, SlackContext, register
from bridges.slack.reminders import ReminderLoop
from core.services import BRIDGE_SETUP, BRIDGE_TEARDOWN, Services
from domain.settings import Settings
from domain.storeconfig import StoreConfig

log = logging.getLogger("handoff.slack")
BOLT = web.AppKey("slack_bolt", AsyncApp)
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


def setup_slack(app: web.Application, settings: Settings, config: StoreConfig) -> None:
    secret = (
        settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else ""
    )

    async def events(request: web.Request) -> web.Response:
        if not secret:
            # Only demo mode gets this far (check_production refuses it otherwise): without the
            # secret no request can be verified, so none is accepted.
            return web.json_response(
                {"error": "SLACK_SIGNING_SECRET is not set: Slack requests cannot be verified"},
                status=401,
            )
        bolt = request.app.get(BOLT)
        if bolt is None:  # still starting: Slack retries events; a person can press again
            return web.json_response({"error": "starting"}, status=503)
        return await to_aiohttp_response(await bolt.async_dispatch(await to_bolt_request(request)))

    app.router.add_post("/slack/events", events)

    async def start(app: web.Application, services: Services) -> None:
        assert settings.slack_bot_token and settings.slack_inbox_channel
        if not secret:
            log.warning(
                "SLACK_SIGNING_SECRET is not set (demo mode): handoffs are posted to Slack, but "
                "no request from Slack is accepted at /slack/events"
            )
        token = settings.slack_bot_token.get_secret_value()
        # No retry handlers: a 429 or 5xx comes back to the outbox, which paces and retries.
        client = AsyncWebClient(
            token=token, base_url=settings.slack_api_url, timeout=TIMEOUT, retry_handlers=[]
        )
        identity = Identity(client, token)
        bolt = AsyncApp(
            client=AsyncWebClient(
                base_url=settings.slack_api_url, timeout=TIMEOUT, retry_handlers=[]
            ),
            # Without a secret (demo mode) Bolt sees only Socket Mode traffic, which the app
            # token authenticates; the HTTP route above refuses everything.
            signing_secret=secret or None,
            request_verification_enabled=bool(secret),
            authorize=identity.authorizer(),
            process_before_response=False,
        )
        inbox = SlackInbox(
            client, config, settings.slack_inbox_channel, post_rate=settings.slack_post_rate
        )
        ctx = SlackContext(
            core=services.core,
            inbox=inbox,
            names=Names(client, fallback=config.store.team_name),
            config=config,
            channels={settings.slack_inbox_channel, *config.routing().values()},
            permalink=identity.permalink,
        )
        register(bolt, ctx)
        services.inboxes["slack"] = inbox
        services.core.inbox_name = "slack"
        services.worker.pacer.limit("slack-channel", rate=settings.slack_post_rate, burst=1)
        services.worker.pacer.limit("slack-update", rate=settings.slack_update_rate, burst=5)
        reminders = ReminderLoop(services.core, config)
        reminders.start()
        services.extras["slack"] = {
            "client": client,
            "bolt": bolt,
            "inbox": inbox,
            "identity": identity,
            "context": ctx,
            "reminders": reminders,
        }
        app[BOLT] = bolt
        try:
            info = await identity.get()
            log.info("Slack: connected as %s in %s", info.get("user"), info.get("team"))
        except SlackUnavailable as exc:
            # Not fatal: handoffs wait in the outbox and events are retried until Slack answers.
            log.error("Slack: %s; will ask again on the first request", exc)
        if settings.slack_app_token:
            from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

            handler = AsyncSocketModeHandler(bolt, settings.slack_app_token.get_secret_value())
            services.extras["slack"]["socket"] = handler
            await handler.connect_async()
            log.info("Slack: connected in Socket Mode")

    async def stop(app: web.Application, services: Services) -> None:
        extras: dict[str, Any] = services.extras.get("slack") or {}
        if "socket" in extras:
            with contextlib.suppress(Exception):
                await extras["socket"].close_async()
        if "reminders" in extras:
            await extras["reminders"].stop()
        if "context" in extras:
            # Replies already acknowledged to Slack are stored before the database closes.
            await extras["context"].drain()

    app[BRIDGE_SETUP].append(start)
    app[BRIDGE_TEARDOWN].append(stop)
