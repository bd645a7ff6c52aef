"""Telegram updates into the core, once each (the update id is kept in the database) and in order
per chat. Webhook and polling both land here."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Any

from agent.storeconfig import StoreConfig
from bot.core import Core, CoreError
from storage import repo

log = logging.getLogger("handoff.telegram")
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
    "contact",
)
TEXT_ONLY = "Sorry, I can only read text for now. Could you type your question?"


class Intake:
    def __init__(self, core: Core, config: StoreConfig) -> None:
        self.core = core
        self.config = config
        self._locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def handle(self, update: dict[str, Any]) -> str:
        """Take one update; returns what was done (for logs and tests)."""
        update_id = update.get("update_id")
        if not isinstance(update_id, int):
            return "ignored: no update_id"
        message = update.get("message") or update.get("edited_message")
        edited = "edited_message" in update
        if not isinstance(message, dict) or not isinstance(message.get("chat"), dict):
            await self._mark(update_id)
            return "ignored: not a message"
        chat_id = str(message["chat"]["id"])
        async with self._locks[chat_id]:
            if not await self._mark(update_id):
                return "duplicate"
            user = message.get("from") or {}
            name = " ".join(x for x in (user.get("first_name"), user.get("last_name")) if x) or None
            conv = await self.core.conversation_for_channel(
                "telegram",
                str(user.get("id", chat_id)),
                chat_id,
                name=name,
                username=user.get("username"),
            )
            text = message.get("text")
            pid = f"upd:{update_id}"
            if edited:
                if text:
                    await self.core.shopper_message(
                        conv.id,
                        f"(edited) {text}",
                        source="telegram",
                        platform_id=pid,
                        answer=False,
                        meta={"edited_message_id": message.get("message_id")},
                    )
                return "edit recorded"
            if text is None:
                kind = next((k for k in MEDIA if k in message), "attachment")
                caption = message.get("caption")
                await self.core.shopper_message(
                    conv.id,
                    f"[{kind}]" + (f" {caption}" if caption else ""),
                    source="telegram",
                    platform_id=pid,
                    answer=False,
                    meta={"media": kind},
                )
                await self.core.system_message(conv.id, TEXT_ONLY)
                return f"media: {kind}"
            if text.strip().startswith("/start"):
                await self.core.system_message(conv.id, self.config.messages.welcome)
                return "welcome"
            try:
                await self.core.shopper_message(conv.id, text, source="telegram", platform_id=pid)
            except CoreError as exc:
                await self.core.system_message(conv.id, str(exc))
                return f"refused: {exc}"
            return "message"

    async def _mark(self, update_id: int) -> bool:
        async with self.core.sessions() as s, s.begin():
            return await repo.mark_processed(s, "telegram-update", str(update_id))
