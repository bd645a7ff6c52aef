"""Telegram inside our aiohttp app: a webhook route (secret checked) or a polling task that we
own, never PTB's run_polling owning the event loop.

PTB's `Bot` sends (and parses `Update`s); updates go straight to our `Intake` rather than through
a PTB `Application`: the core already orders each conversation's messages, and one dispatch layer
is easier to reason about than two."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging

from aiohttp import web
from telegram import Bot, Update
from telegram.error import Conflict, InvalidToken, RetryAfter, TelegramError

from bridges.telegram import ALLOWED_UPDATES, WEBHOOK_PATH
from bridges.telegram.channel import TelegramChannel, retry_after_seconds
from bridges.telegram.intake import Intake
from core.bridge import BridgeSetup, Capabilities, ConfigurationError, Role
from core.lifecycle import Core
from domain.outbox import Kind, Outgoing
from domain.settings import Settings

log = logging.getLogger("handoff.telegram")

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
# Telegram: about 1 message a second per chat (short bursts tolerated), about 30 a second in all.
CHAT_RATE, CHAT_BURST = 1.0, 2.0
ALL_RATE, ALL_BURST = 30.0, 1.0  # at most 31 in any one-second window, evenly spread
CONFLICT_PAUSE = 10.0  # getUpdates answered 409: a webhook is set (or another poller runs)
MAX_UPDATE_FAILURES = 5  # a polled update that keeps failing is skipped after this many tries
POLL_LEASE = "telegram-polling"  # the database lease the polling instance holds


class _Redactor(logging.Filter):
    """Bot API URLs carry the token (`/bot<token>/sendMessage`) and httpx logs every URL at INFO:
    the token is replaced before such a record is formatted anywhere."""

    LOGGERS = ("httpx", "telegram", "telegram.Bot", "telegram.request", "telegram.ext")

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "<bot-token>")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            clean = self.redact(message)
            if clean != message:
                record.msg, record.args = clean, ()
        return True

    def add(self, secret: str) -> None:
        self.secrets.add(secret)
        for name in self.LOGGERS:
            logger = logging.getLogger(name)
            if self not in logger.filters:
                logger.addFilter(self)


REDACTOR = _Redactor()


def make_bot(settings: Settings) -> Bot:
    if settings.telegram_bot_token is None:
        raise ConfigurationError("TELEGRAM_BOT_TOKEN is not set")
    token = settings.telegram_bot_token.get_secret_value()
    REDACTOR.add(token)
    return Bot(token, base_url=settings.telegram_api_url)


class TelegramBridge(TelegramChannel):
    """Telegram as a shopper channel: updates come in through the webhook route (its secret
    token checked) or a polling task we own; replies go out through the outbox (TelegramChannel).
    """

    name = "telegram"
    role = Role.CHANNEL
    # "typing…" while the agent works. Only sends cost anything at Telegram: a state change
    # sends nothing, so it does not spend the chat's pace.
    capabilities = Capabilities(typing=True, paced_kinds=frozenset({Kind.SEND}))

    def __init__(self, setup: BridgeSetup) -> None:
        settings = setup.settings
        if settings.telegram_mode not in ("webhook", "polling"):
            raise ConfigurationError(
                f"TELEGRAM_MODE must be webhook or polling, not {settings.telegram_mode!r}"
            )
        self.settings = settings
        self.config = setup.config
        self.secret = (
            settings.telegram_webhook_secret.get_secret_value()
            if settings.telegram_webhook_secret
            else ""
        )
        setup.pacer.limit("tg-chat", rate=CHAT_RATE, burst=CHAT_BURST)
        setup.pacer.limit("tg-all", rate=ALL_RATE, burst=ALL_BURST)
        super().__init__(
            make_bot(settings),
            display_name=setup.config.staff_name,
            pacer=setup.pacer,
            redact=REDACTOR.redact,
        )
        self.clock = setup.clock
        self.intake: Intake | None = None
        self.core: Core | None = None
        self.poller: asyncio.Task[None] | None = None
        self.polling = False  # this instance holds the polling lease and polls right now

    def mount(self, app: web.Application, core: Core) -> None:
        self.core = core
        self.intake = Intake(core, self.config, self.bot)
        if self.settings.telegram_mode == "webhook":
            app.router.add_post(WEBHOOK_PATH, self.webhook)

    async def webhook(self, request: web.Request) -> web.Response:
        given = request.headers.get(SECRET_HEADER, "")
        if not self.secret or not hmac.compare_digest(given.encode(), self.secret.encode()):
            log.info("telegram webhook call without the right secret token from %s", request.remote)
            return web.json_response({"error": "bad secret token"}, status=401)
        assert self.intake is not None
        try:
            data = json.loads(await request.text())
        except ValueError:
            return web.json_response({"error": "the body is not JSON"}, status=400)
        if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
            return web.json_response({"error": "not a Telegram update"}, status=400)
        try:
            update = Update.de_json(data, self.bot)
        except Exception:  # noqa: BLE001 - whatever PTB makes of a malformed update
            return web.json_response({"error": "not a Telegram update"}, status=400)
        try:
            await self.intake.handle(update)
        except Exception:
            # Not stored: a non-2xx makes Telegram deliver it again.
            log.exception("telegram update %s could not be taken in", update.update_id)
            return web.json_response({"error": "try again"}, status=500)
        # Stored (the core answers in the background): acknowledge at once.
        return web.json_response({"ok": True})

    async def start(self) -> None:
        try:
            await self.bot.initialize()  # getMe: checks the token
        except InvalidToken:
            await self.bot.shutdown()
            raise ConfigurationError(
                "TELEGRAM_BOT_TOKEN was rejected by the Bot API (getMe answered 401/404)"
            ) from None
        except TelegramError as exc:
            # Telegram down must not take the widget and the inbox down with it: replies wait in
            # the outbox, polling retries.
            log.warning(
                "Telegram Bot API unreachable at start (%s); continuing",
                REDACTOR.redact(str(exc)),
            )
        if self.settings.telegram_mode == "polling":
            self.poller = asyncio.create_task(self.poll_under_lease(), name="telegram-polling")

    async def poll_under_lease(self) -> None:
        """Poll only while this instance holds the polling lease (Telegram answers a second
        getUpdates with 409, and two pollers would take the same updates): take it (or wait
        while another instance holds it), poll, renew it every third of its term, and stop
        polling the moment a renewal fails. An instance that dies stops renewing, so another
        takes over once the lease expires; one that stops releases it for an immediate takeover.
        Updates the old holder took but had not confirmed are fetched again by the new one and
        skipped: their update ids are in the database."""
        assert self.core is not None and self.intake is not None
        core, holder = self.core, self.core.instance_id
        term = self.settings.telegram_poll_lease_seconds
        while True:
            if not await self._lease(core, holder, term):
                await self.clock.sleep(term / 6)
                continue
            log.info("telegram: this instance (%s) holds the polling lease", holder)
            self.polling = True
            task = asyncio.create_task(
                poll(self.bot, self.intake, self.settings.telegram_poll_timeout)
            )
            try:
                while not task.done():
                    await self.clock.sleep(term / 3)
                    if not await self._lease(core, holder, term):
                        log.warning("telegram: the polling lease was lost; polling stopped")
                        break
            finally:
                self.polling = False
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if task.done() and not task.cancelled() and task.exception() is not None:
                log.error("telegram polling stopped: %s", task.exception())

    @staticmethod
    async def _lease(core: Core, holder: str, term: float) -> bool:
        try:
            return await core.hold_lease(POLL_LEASE, holder, term)
        except Exception as exc:  # noqa: BLE001 - the database away: not ours until it says so
            log.warning("telegram: the polling lease could not be taken or renewed: %s", exc)
            return False

    async def stop(self) -> None:
        # The worker has stopped by now: sends in flight finished before the HTTP client closes
        # (a send cut off after Telegram took it would be retried, and shown twice).
        if self.poller is not None:
            self.poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.poller
            if self.core is not None:  # another instance may poll at once
                with contextlib.suppress(Exception):
                    await self.core.release_lease(POLL_LEASE, self.core.instance_id)
        await self.close()
        with contextlib.suppress(Exception):
            await self.bot.shutdown()

    def publish(self, conversation_id: int | None, out: Outgoing) -> None:
        raise NotImplementedError("Telegram is delivered through the outbox")


async def poll(bot: Bot, intake: Intake, timeout: int = 25) -> None:
    """Long polling on our own event loop: getUpdates with offset = last taken + 1, which also
    confirms to Telegram everything before it. An update is confirmed only once it is stored."""
    offset: int | None = None
    backoff = 1.0
    failures: dict[int, int] = {}
    conflict_logged = False
    while True:
        try:
            updates = await bot.get_updates(
                offset=offset, timeout=timeout, allowed_updates=ALLOWED_UPDATES
            )
        except RetryAfter as exc:
            await asyncio.sleep(retry_after_seconds(exc))
            continue
        except Conflict:
            if not conflict_logged:
                log.error(
                    "getUpdates conflicts with a webhook or another poller: run "
                    "`handoff telegram delete-webhook`, and poll from one instance only"
                )
                conflict_logged = True
            await asyncio.sleep(CONFLICT_PAUSE)
            continue
        except InvalidToken:
            log.error("TELEGRAM_BOT_TOKEN was rejected by the Bot API; polling paused")
            await asyncio.sleep(60)
            continue
        except Exception as exc:  # noqa: BLE001 - TimedOut, 5xx, connection refused: try again
            log.warning("getUpdates failed: %s", REDACTOR.redact(str(exc)))
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)
            continue
        backoff = 1.0
        conflict_logged = False
        for update in updates:
            try:
                await intake.handle(update)
            except Exception:
                n = failures[update.update_id] = failures.get(update.update_id, 0) + 1
                if n < MAX_UPDATE_FAILURES:
                    log.exception(
                        "update %s failed (try %s); fetching it again", update.update_id, n
                    )
                    await asyncio.sleep(min(2.0**n, 30.0))
                    break
                log.exception("update %s failed %s times; skipped", update.update_id, n)
            failures.pop(update.update_id, None)
            offset = update.update_id + 1
