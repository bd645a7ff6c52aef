"""Telegram as a `ShopperChannel`, sending through python-telegram-bot's Bot.

Pacing (about 1 message a second per chat, 30 a second in all) is the outbox's job, so PTB's
errors become DeliveryErrors: RetryAfter carries the wait Telegram asked for, Forbidden means the
shopper blocked the bot (stop for good), network trouble and 5xx are retried."""

from __future__ import annotations

import datetime as dtm
import re
from typing import Any

from telegram import Bot
from telegram.constants import ChatAction
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError

from bot.ports import ConversationView, DeliveryError

LIMIT = 4096


def split_text(text: str, limit: int = LIMIT) -> list[str]:
    """At most `limit` characters a part, cut at a line, else a sentence, else a space."""
    parts: list[str] = []
    text = text.strip()
    while len(text) > limit:
        window = text[:limit]
        cut = window.rfind("\n")
        if cut < limit // 2:
            m = list(re.finditer(r"[.!?](\s)", window))
            cut = m[-1].start() + 1 if m and m[-1].start() >= limit // 2 else -1
        if cut < limit // 2:
            cut = window.rfind(" ")
        if cut < limit // 2:
            cut = limit
        parts.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    if text:
        parts.append(text)
    return parts


def to_delivery_error(exc: Exception) -> DeliveryError:
    if isinstance(exc, RetryAfter):
        wait = exc._retry_after  # a timedelta whatever PTB's int/timedelta setting
        seconds = wait.total_seconds() if isinstance(wait, dtm.timedelta) else float(wait)
        return DeliveryError(
            f"Telegram flood control: retry in {seconds:.0f}s", retry_after=max(seconds, 0.5)
        )
    if isinstance(exc, Forbidden):
        return DeliveryError(f"Telegram: {exc.message}", permanent=True, blocked=True)
    if isinstance(exc, BadRequest):
        return DeliveryError(f"Telegram refused: {exc.message}", permanent=True)
    if isinstance(exc, NetworkError | TelegramError):
        return DeliveryError(f"Telegram unreachable: {exc}")
    return DeliveryError(f"Telegram send failed: {type(exc).__name__}: {exc}")


class TelegramChannel:
    name = "telegram"

    def __init__(self, bot: Bot, display_name: Any = None) -> None:
        self.bot = bot
        self.display_name = display_name or (lambda author: author)
        # Parts of a long message already sent, so a retry after a partial send does not
        # repeat them (kept for the life of the process).
        self._progress: dict[int, int] = {}

    def rate_keys(self, conversation: ConversationView | None) -> list[str]:
        if conversation is None:
            return ["tg-all"]
        return [f"tg-chat:{conversation.channel_ref}", "tg-all"]

    def render(self, message: dict[str, Any]) -> str:
        if message.get("role") == "human":
            return f"{self.display_name(message.get('author') or '')}: {message['text']}"
        return str(message["text"])

    async def send(
        self, conversation: ConversationView, message: dict[str, Any]
    ) -> dict[str, Any] | None:
        parts = split_text(self.render(message))
        key = int(message.get("id") or 0)
        done = self._progress.get(key, 0)
        sent_ids = []
        for i in range(done, len(parts)):
            try:
                sent = await self.bot.send_message(chat_id=conversation.channel_ref, text=parts[i])
            except Exception as exc:
                raise to_delivery_error(exc) from exc
            sent_ids.append(sent.message_id)
            self._progress[key] = i + 1
        self._progress.pop(key, None)
        return {"parts": len(parts), "telegram_ids": sent_ids}

    async def state(self, conversation: ConversationView) -> None:
        return None  # the expectation and join messages already tell the shopper

    async def typing(self, conversation: ConversationView) -> None:
        await self.bot.send_chat_action(chat_id=conversation.channel_ref, action=ChatAction.TYPING)
