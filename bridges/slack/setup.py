"""Mounting Slack in our aiohttp app: one endpoint, POST /slack/events, for events, commands and
interactivity; Bolt verifies every signature (v0, 5-minute window) before any listener runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from agent.storeconfig import StoreConfig
from bot.app import BRIDGE_SETUP, BRIDGE_TEARDOWN, SERVICES, Services
from bot.settings import Settings
from bridges.slack.inbox import SlackInbox
from bridges.slack.listeners import Names, register
from bridges.slack.reminders import ReminderLoop

log = logging.getLogger("handoff.slack")
BOLT = web.AppKey("slack_bolt", AsyncApp)


def setup_slack(app: web.Application, settings: Settings, config: StoreConfig) -> None:
    async def events(request: web.Request) -> web.Response:
        bolt = request.app.get(BOLT)
        if bolt is None:
            return web.json_response({"error": "starting"}, status=503)
        return await to_aiohttp_response(await bolt.async_dispatch(await to_bolt_request(request)))

    app.router.add_post("/slack/events", events)

    async def start(app: web.Application, services: Services) -> None:
        assert settings.slack_bot_token and settings.slack_inbox_channel
        client = AsyncWebClient(
            token=settings.slack_bot_token.get_secret_value(),
            base_url=settings.slack_api_url,
            timeout=15,
        )
        secret = (
            settings.slack_signing_secret.get_secret_value()
            if settings.slack_signing_secret
            else None
        )
        if not secret:
            raise RuntimeError("SLACK_SIGNING_SECRET is required to verify Slack's requests")
        bolt = AsyncApp(client=client, signing_secret=secret, process_before_response=False)
        channels = {settings.slack_inbox_channel, *config.routing().values()}
        register(bolt, services.core, Names(client), channels, config.note_prefix)
        inbox = SlackInbox(client, config, settings.slack_inbox_channel)
        services.inboxes["slack"] = inbox
        services.core.inbox_name = "slack"
        services.worker.pacer.limit("slack-channel", rate=settings.slack_post_rate, burst=1)
        reminders = ReminderLoop(services.core, config)
        reminders.start()
        services.extras["slack"] = {
            "client": client,
            "bolt": bolt,
            "inbox": inbox,
            "reminders": reminders,
        }
        app[BOLT] = bolt
        if settings.slack_app_token:
            from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

            handler = AsyncSocketModeHandler(bolt, settings.slack_app_token.get_secret_value())
            services.extras["slack"]["socket"] = handler
            await handler.connect_async()
            log.info("Slack connected in Socket Mode")

    async def stop(app: web.Application, services: Services) -> None:
        extras: dict[str, Any] = services.extras.get("slack") or {}
        if "reminders" in extras:
            await extras["reminders"].stop()
        if "socket" in extras:
            with contextlib.suppress(Exception):
                await extras["socket"].close_async()
        client = extras.get("client")
        if client is not None and getattr(client, "session", None) is not None:
            with contextlib.suppress(Exception):
                await client.session.close()
        await asyncio.sleep(0)

    app[BRIDGE_SETUP].append(start)
    app[BRIDGE_TEARDOWN].append(stop)


__all__ = ["setup_slack", "SERVICES"]
