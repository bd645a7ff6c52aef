"""Telegram updates into the core, once each and in order per chat. Webhook and polling both land
here, as PTB `Update` objects.

Once: the update id is kept in the database (`processed_ids`, source "telegram-update") and the
shopper's message is stored with platform id `upd:<update_id>`, unique per conversation. The id is
recorded *after* the update's effects, so an update whose processing failed half-way (the database
went away) is taken in again when Telegram redelivers it, and the idempotent message store keeps
that second pass from adding anything twice. Notices to the shopper (the welcome, "text only")
go out only when their update's message was new, so a redelivery never repeats them.

In order: one update per chat at a time (a lock per chat, dropped when idle), in the order they
arrive; polling hands them over in update-id order, and the core then processes a conversation's
messages one at a time in the order they were stored.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from telegram import Bot, CallbackQuery, Message, Update, User
from telegram.error import BadRequest, TelegramError

from bridges.telegram.channel import parse_rating
from core.lifecycle import Core, CoreError
from domain.ports import ConversationView
from domain.storeconfig import StoreConfig

log = logging.getLogger("handoff.telegram")
UPDATE_SOURCE = "telegram-update"
MEDIA = (
    "photo",
    "sticker",
    "voice",
    "video",
    "video_note",
    "audio",
    "document",
    "animation",
    "location",
    "venue",
    "contact",
    "poll",
    "dice",
    "story",
    "paid_media",
)
TEXT_ONLY = (
    "Sorry, I can only read text for now. Could you type your question, or describe what you sent?"
)
GREETING_COMMANDS = ("/start", "/help")
RATED = "Thanks for your feedback!"
RATED_BEFORE = "This conversation has already been rated. Thank you!"
NOT_YOURS = "This button is not for this chat."


class ChatLocks:
    """One asyncio.Lock per chat, forgotten as soon as nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


class Intake:
    def __init__(self, core: Core, config: StoreConfig, bot: Bot | None = None) -> None:
        self.core = core
        self.config = config
        self.bot = bot  # answers button taps (callback queries)
        self.locks = ChatLocks()

    async def handle(self, update: Update) -> str:
        """Take one update; returns what was done (for logs and tests)."""
        uid = update.update_id
        chat = update.effective_chat
        query = update.callback_query
        if query is not None:
            # A button tap: in a private chat the tapping user's id is the chat's id, even when
            # Telegram no longer sends the message the buttons were on.
            key = str(chat.id if chat is not None else query.from_user.id)
            async with self.locks.hold(key):
                if await self._seen(uid):
                    return "duplicate"
                outcome = await self._button(query, key)
                await self._mark(uid)
            log.debug("telegram update %s: %s", uid, outcome)
            return outcome
        if chat is None:
            await self._mark(uid)
            return "ignored: no chat"
        async with self.locks.hold(str(chat.id)):
            if await self._seen(uid):
                return "duplicate"
            outcome = await self._take(update)
            await self._mark(uid)
        log.debug("telegram update %s: %s", uid, outcome)
        return outcome

    async def _take(self, update: Update) -> str:
        chat = update.effective_chat
        assert chat is not None
        if chat.type != chat.PRIVATE:
            # A shop's support bot talks to one shopper a chat; in a group every member would be
            # "the customer" and every message a question. Groups are not a shopper channel.
            return f"ignored: {chat.type} chat"
        if update.my_chat_member is not None:
            status = update.my_chat_member.new_chat_member.status
            if status not in ("kicked", "member"):
                return f"ignored: bot is {status}"
            blocked = status == "kicked"  # the shopper blocked the bot ("member": unblocked)
            done = await self._set_blocked(str(chat.id), blocked, reason=f"Telegram: {status}")
            return f"{'blocked' if blocked else 'unblocked'}{'' if done else ' (no change)'}"
        msg = update.message or update.edited_message
        if msg is None:
            return "ignored: not a message"
        user = msg.from_user
        if user is None or user.is_bot:
            return "ignored: not from a person"
        conv = await self._conversation(str(chat.id), user)
        if conv.blocked:
            # Writing to the bot again means it is unblocked: replies may reach the shopper now.
            await self._set_blocked(str(chat.id), False, reason="the shopper wrote again")
        pid = f"upd:{update.update_id}"
        # While a person has the chat, edits and attachments go to their thread (the agent stays
        # silent then anyway); with the agent they are only recorded, never answered.
        relay = conv.state in ("queued", "claimed")
        if update.edited_message is not None:
            text = msg.text or msg.caption
            if not text:
                return "edit ignored: no text"
            await self._record(
                conv, f"(edited) {text}", pid, relay, edited_message_id=msg.message_id
            )
            return "edit recorded"
        if msg.text is None:
            kind = next((k for k in MEDIA if getattr(msg, k, None)), "attachment")
            caption = f" {msg.caption}" if msg.caption else ""
            if await self._record(conv, f"[{kind}]{caption}", pid, relay, media=kind):
                await self.core.system_message(conv.id, TEXT_ONLY)
            return f"media: {kind}"
        command = msg.text.strip().split(maxsplit=1)[0].lower() if msg.text.strip() else ""
        if command in GREETING_COMMANDS:
            if await self._record(conv, msg.text.strip(), pid, relay=False, command=command):
                await self.core.system_message(conv.id, self.config.messages.welcome)
            return "welcome"
        try:
            await self.core.shopper_message(
                conv.id, msg.text, source="telegram", platform_id=pid, meta=_meta(msg)
            )
        except CoreError as exc:  # empty, too long: tell the shopper why nothing happened
            await self.core.system_message(conv.id, str(exc))
            return f"refused: {exc}"
        return "message"

    async def _button(self, query: CallbackQuery, chat_id: str) -> str:
        """A tap on a rating button (the inline keyboard under the message that resolved the
        conversation): the rating goes to the core, which counts one per conversation; the tap is
        answered (Telegram's spinner stops, a short notice shows) and the buttons are removed."""
        parsed = parse_rating(query.data)
        if parsed is None:
            await self._answer(query, None)
            return "ignored: unknown button"
        cid, score = parsed
        try:
            conv = await self.core.get(cid)
        except CoreError:
            await self._answer(query, NOT_YOURS)
            return "rating refused: unknown conversation"
        if conv.channel != "telegram" or conv.channel_ref != chat_id:
            # Callback data comes from the client: a tap rates only its own chat's conversation.
            await self._answer(query, NOT_YOURS)
            return "rating refused: another chat's conversation"
        try:
            counted = await self.core.rate(cid, score, "telegram")
        except CoreError as exc:
            await self._answer(query, str(exc))
            return f"rating refused: {exc}"
        await self._answer(query, RATED if counted else RATED_BEFORE)
        await self._remove_buttons(query)
        return "rated" if counted else "rated before"

    async def _answer(self, query: CallbackQuery, text: str | None) -> None:
        if self.bot is None:
            return
        try:
            await self.bot.answer_callback_query(query.id, text=text)
        except TelegramError as exc:  # too old (Telegram waits about 15 s for an answer)
            log.info("a button tap could not be answered: %s", exc.message)

    async def _remove_buttons(self, query: CallbackQuery) -> None:
        """Edit the rated message to have no keyboard. Best effort: the rating is recorded, and
        a tap on buttons that stayed (the edit failed) answers that it was rated and tries again."""
        message = query.message
        if self.bot is None or message is None or not message.is_accessible:
            return
        try:
            await self.bot.edit_message_reply_markup(
                chat_id=message.chat.id, message_id=message.message_id, reply_markup=None
            )
        except BadRequest as exc:
            if "not modified" not in exc.message:
                log.info("rating buttons could not be removed: %s", exc.message)
        except TelegramError as exc:
            log.info("rating buttons could not be removed: %s", exc.message)

    async def _record(
        self, conv: ConversationView, text: str, pid: str, relay: bool, **meta: Any
    ) -> bool:
        """Store a message that the agent does not answer; True if it was new."""
        _, new = await self.core.shopper_message(
            conv.id, text, source="telegram", platform_id=pid, answer=relay, meta=meta
        )
        return new

    async def _conversation(self, chat_id: str, user: User) -> ConversationView:
        return await self.core.conversation_for_channel(
            "telegram",
            str(user.id),
            chat_id,
            name=user.full_name or None,
            username=user.username,
        )

    async def _set_blocked(self, chat_id: str, blocked: bool, *, reason: str) -> bool:
        """Telegram's my_chat_member update, or the shopper writing again after unblocking."""
        actor = "platform" if blocked else "shopper"
        return await self.core.set_blocked(
            "telegram", chat_id, blocked, actor=actor, reason=reason
        )

    async def _seen(self, update_id: int) -> bool:
        return await self.core.was_taken(UPDATE_SOURCE, str(update_id))

    async def _mark(self, update_id: int) -> None:
        await self.core.take_once(UPDATE_SOURCE, str(update_id))


def _meta(msg: Message) -> dict[str, Any]:
    return {"telegram_message_id": msg.message_id}
