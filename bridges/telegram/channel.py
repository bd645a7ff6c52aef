"""Telegram as a `ShopperChannel`, sending through python-telegram-bot's Bot.

Pacing (about 1 message a second per chat, 30 a second in all) is the outbox's job, so PTB's
errors become DeliveryErrors: RetryAfter carries the wait Telegram asked for, Forbidden means the
shopper blocked the bot (stop for good), network trouble and 5xx are retried, a BadRequest is
final.

A reply longer than one Telegram message is split, and each part is its own delivery attempt:
`send` puts out part `step` and answers `DeliveryResult.again(step + 1)`, which the worker keeps
on the outbox row as it puts the row back at the head of the conversation's lane. Every part is
therefore paced like a message of its own, and a retry (a 429 or 5xx on part 2, or a restart,
or another instance taking the row over) goes on from the part that failed instead of sending
part 1 again. The only window for a duplicate is the one no Bot API client can close: Telegram
took a part and the process died (or the answer was lost) before the row recorded it.
"""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dtm
import logging
import re
import warnings
from collections.abc import Callable
from typing import Any

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Message
from telegram.constants import ChatAction
from telegram.error import (
    BadRequest,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
)
from telegram.warnings import PTBDeprecationWarning

from core.pacing import Pacer
from domain.outbox import DeliveryResult, Kind
from domain.ports import ConversationView, DeliveryError

log = logging.getLogger("handoff.telegram")

LIMIT = 4096  # Bot API: 1-4096 characters of text, counted in UTF-16 code units
TYPING_EVERY = 4.5  # Telegram shows "typing…" for 5 s or until the next message
TYPING_FOR = 30.0  # never longer than this for one turn
_SENTENCE_END = re.compile(r"[.!?…][\"'»”’)\]]*\s")


def utf16_len(text: str) -> int:
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def _fit(text: str, limit: int) -> int:
    """How many characters of `text` fit in `limit` UTF-16 code units."""
    units = 0
    for i, ch in enumerate(text):
        units += 2 if ord(ch) > 0xFFFF else 1
        if units > limit:
            return i
    return len(text)


def split_text(text: str, limit: int = LIMIT) -> list[str]:
    """Parts of at most `limit` UTF-16 units, cut at a paragraph, else a line, else a sentence,
    else a space (each only if the part keeps at least half its room), else hard."""
    parts: list[str] = []
    text = text.strip()
    while utf16_len(text) > limit:
        size = _fit(text, limit)
        window = text[:size]
        half = size // 2
        cut = window.rfind("\n\n")
        if cut < half:
            cut = window.rfind("\n")
        if cut < half:
            ends = [m.end() for m in _SENTENCE_END.finditer(window)]
            cut = ends[-1] if ends else -1
        if cut < half:
            cut = window.rfind(" ")
        if cut < half:
            cut = size
        parts.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    if text:
        parts.append(text)
    return parts


# CSAT, as the widget asks it: one tap, thumbs up (1) or down (-1), once per conversation. The
# buttons' callback data names the conversation and the score: "csat:<conversation id>:<score>".
RATING_PREFIX = "csat"
RATINGS = (("👍 Helpful", 1), ("👎 Not helpful", -1))


def rating_keyboard(conversation_id: int) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(label, callback_data=f"{RATING_PREFIX}:{conversation_id}:{score}")
                for label, score in RATINGS
            ]
        ]
    )


def parse_rating(data: str | None) -> tuple[int, int] | None:
    """(conversation id, score) from a rating button's callback data, None for anything else."""
    parts = (data or "").split(":")
    if len(parts) != 3 or parts[0] != RATING_PREFIX:
        return None
    try:
        cid, score = int(parts[1]), int(parts[2])
    except ValueError:
        return None
    return (cid, score) if score in (1, -1) else None


def retry_after_seconds(exc: RetryAfter) -> float:
    """PTB 22 gives an int (deprecated) or a timedelta (PTB_TIMEDELTA=1); take either."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        wait: Any = exc.retry_after
    if isinstance(wait, dtm.timedelta):
        return wait.total_seconds()
    return float(wait)


def to_delivery_error(exc: BaseException, redact: Callable[[str], str] = str) -> DeliveryError:
    """PTB's exceptions in the outbox's terms (and no token in the message kept on the row)."""
    if isinstance(exc, RetryAfter):
        seconds = max(retry_after_seconds(exc), 1.0)
        return DeliveryError(f"Telegram flood control: retry in {seconds:g}s", retry_after=seconds)
    if isinstance(exc, Forbidden):  # blocked by the user, user deactivated, never started
        return DeliveryError(f"Telegram: {redact(exc.message)}", permanent=True, blocked=True)
    if isinstance(exc, BadRequest):  # before NetworkError: BadRequest is a subclass of it
        return DeliveryError(f"Telegram refused: {redact(exc.message)}", permanent=True)
    if isinstance(exc, InvalidToken):
        return DeliveryError("Telegram rejected the bot token (TELEGRAM_BOT_TOKEN)")
    if isinstance(exc, NetworkError | TelegramError):  # TimedOut, 5xx, 429 without retry_after
        return DeliveryError(f"Telegram unreachable: {redact(str(exc))}")
    return DeliveryError(f"Telegram send failed: {type(exc).__name__}: {redact(str(exc))}")


class TelegramChannel:
    name = "telegram"

    def __init__(
        self,
        bot: Bot,
        *,
        display_name: Callable[[str], str] | None = None,
        pacer: Pacer | None = None,
        redact: Callable[[str], str] = str,
    ) -> None:
        self.bot = bot
        self.display_name = display_name or (lambda author: author)
        self.pacer = pacer
        self.redact = redact
        self._typing: dict[str, asyncio.Task[None]] = {}

    # ------------------------------------------------------------------ ShopperChannel

    def rate_keys(self, conversation: ConversationView | None, kind: Kind = Kind.SEND) -> list[str]:
        if conversation is None or not conversation.channel_ref:
            return ["tg-all"]
        return [f"tg-chat:{conversation.channel_ref}", "tg-all"]

    def render(self, message: dict[str, Any]) -> str:
        if message.get("role") == "human":
            return f"{self.display_name(message.get('author') or '')}: {message['text']}"
        return str(message.get("text") or "")

    async def send(
        self, conversation: ConversationView, message: dict[str, Any], *, step: int = 0
    ) -> DeliveryResult:
        chat = conversation.channel_ref
        if not chat:
            raise DeliveryError("no Telegram chat for this conversation", permanent=True)
        self._stop_typing(chat)  # a message ends "typing…"; the refresher must not bring it back
        parts = split_text(self.render(message))
        if not parts:
            return DeliveryResult.done(skipped="empty text")
        if step >= len(parts):
            return DeliveryResult.done(parts=len(parts), already_sent=True)
        markup = None
        if message.get("ask_rating") and step + 1 == len(parts):
            markup = rating_keyboard(conversation.id)
        sent = await self._send(chat, parts[step], markup)
        if step + 1 < len(parts):
            return DeliveryResult.again(step + 1, part=step + 1, parts=len(parts))
        if len(parts) == 1:
            return DeliveryResult.done(message_id=sent.message_id)
        return DeliveryResult.done(parts=len(parts), message_id=sent.message_id)

    async def state(self, conversation: ConversationView) -> None:
        """Nothing to send: the agent's expectation message and the joined / resolved / hand-back
        notices already tell a Telegram shopper what a widget shows as a status line."""
        return None

    # ------------------------------------------------------------------ typing

    async def typing(self, conversation: ConversationView) -> None:
        """The core's typing hook: show "typing…" while the agent works, refreshed every few
        seconds until our next message to the chat goes out (or TYPING_FOR passes). It returns at
        once: the agent never waits on Telegram."""
        chat = conversation.channel_ref
        if not chat or conversation.blocked:
            return
        if self.pacer is not None and self.pacer.wait_time(self.rate_keys(conversation)) > 1.0:
            return  # flood control in force for this chat: do not add to it
        self._stop_typing(chat)
        task = asyncio.create_task(self._keep_typing(chat))
        self._typing[chat] = task
        task.add_done_callback(
            lambda t: self._typing.pop(chat, None) if self._typing.get(chat) is t else None
        )

    async def _keep_typing(self, chat: str) -> None:
        loop = asyncio.get_running_loop()
        until = loop.time() + TYPING_FOR
        while loop.time() < until:
            try:
                await self.bot.send_chat_action(chat_id=chat, action=ChatAction.TYPING)
            except TelegramError as exc:
                log.debug("typing action for a chat failed: %s", self.redact(str(exc)))
                return
            await asyncio.sleep(TYPING_EVERY)

    def _stop_typing(self, chat: str) -> None:
        task = self._typing.pop(chat, None)
        if task is not None:
            task.cancel()

    async def close(self) -> None:
        tasks = list(self._typing.values())
        self._typing.clear()
        for task in tasks:
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*tasks, return_exceptions=True)

    # ------------------------------------------------------------------ helpers

    async def _send(
        self, chat: str, text: str, markup: InlineKeyboardMarkup | None = None
    ) -> Message:
        try:
            return await self.bot.send_message(chat_id=chat, text=text, reply_markup=markup)
        except Exception as exc:
            raise to_delivery_error(exc, self.redact) from None
