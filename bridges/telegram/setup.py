"""Telegram inside our aiohttp app: a webhook route (secret checked) or a polling task that we
own, never PTB's run_polling owning the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging

from aiohttp import web
from telegram import Bot
from telegram.error import Conflict, NetworkError, TelegramError

from agent.storeconfig import StoreConfig
from bot.app import BRIDGE_SETUP, BRIDGE_TEARDOWN, Services, display_name_factory
from bot.settings import Settings
from bridges.telegram.channel import TelegramChannel
from bridges.telegram.intake import Intake

log = logging.getLogger("handoff.telegram")
INTAKE = web.AppKey("telegram_intake", Intake)


def make_bot(settings: Settings) -> Bot:
    assert settings.telegram_bot_token is not None
    return Bot(settings.telegram_bot_token.get_secret_value(), base_url=settings.telegram_api_url)


def setup_telegram(app: web.Application, settings: Settings, config: StoreConfig) -> None:
    secret = (
        settings.telegram_webhook_secret.get_secret_value()
        if settings.telegram_webhook_secret
        else ""
    )

    async def webhook(request: web.Request) -> web.Response:
        given = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
        if not secret or not hmac.compare_digest(given.encode(), secret.encode()):
            return web.json_response({"error": "bad secret token"}, status=401)
        intake = request.app.get(INTAKE)
        if intake is None:
            return web.json_response({"error": "starting"}, status=503)
        if request.content_length and request.content_length > 1_000_000:
            return web.json_response({"error": "too large"}, status=413)
        try:
            update = json.loads(await request.text())
        except ValueError:
            return web.json_response({"error": "not JSON"}, status=400)
        if not isinstance(update, dict):
            return web.json_response({"error": "not an update"}, status=400)
        await intake.handle(update)
        return web.json_response({"ok": True})

    if settings.telegram_mode == "webhook":
        app.router.add_post("/telegram/webhook", webhook)

    async def start(app: web.Application, services: Services) -> None:
        bot = make_bot(settings)
        await bot.initialize()
        channel = TelegramChannel(bot, display_name_factory(config))
        services.channels["telegram"] = channel
        services.worker.pacer.limit("tg-chat", rate=1.0, burst=3)
        services.worker.pacer.limit("tg-all", rate=30.0, burst=30)
        services.core.typing_hooks["telegram"] = channel.typing
        intake = Intake(services.core, config)
        app[INTAKE] = intake
        services.extras["telegram"] = {"bot": bot, "intake": intake}
        if settings.telegram_mode == "polling":
            services.extras["telegram"]["poller"] = asyncio.create_task(
                poll(bot, intake, settings.telegram_poll_timeout)
            )

    async def stop(app: web.Application, services: Services) -> None:
        extras = services.extras.get("telegram") or {}
        task = extras.get("poller")
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if "bot" in extras:
            with contextlib.suppress(Exception):
                await extras["bot"].shutdown()

    app[BRIDGE_SETUP].append(start)
    app[BRIDGE_TEARDOWN].append(stop)


async def poll(bot: Bot, intake: Intake, timeout: int = 25) -> None:
    """getUpdates with offset = last + 1, which also confirms what was taken in."""
    offset = None
    backoff = 1.0
    while True:
        try:
            updates = await bot.get_updates(
                offset=offset, timeout=timeout, allowed_updates=["message", "edited_message"]
            )
            backoff = 1.0
        except Conflict:
            log.error(
                "getUpdates conflicts with a webhook (or another poller); delete the webhook to poll"
            )
            await asyncio.sleep(10)
            continue
        except (NetworkError, TelegramError) as exc:
            log.warning("getUpdates failed: %s", exc)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30)
            continue
        for update in updates:
            try:
                await intake.handle(update.to_dict())
            except Exception:
                log.exception("update %s failed; it will not be confirmed", update.update_id)
                break
            offset = update.update_id + 1
