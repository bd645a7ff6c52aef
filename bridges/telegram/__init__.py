"""Telegram as a shopper channel (python-telegram-bot). Constants here import no SDK, so the CLI
can list `handoff telegram …` without loading python-telegram-bot."""

from __future__ import annotations

from core.bridge import Bridge, BridgeSetup

WEBHOOK_PATH = "/telegram/webhook"
ALLOWED_UPDATES = ["message", "edited_message", "my_chat_member", "callback_query"]


def build(setup: BridgeSetup) -> Bridge | None:
    """The Telegram channel, when a bot token is set."""
    if not setup.settings.telegram_enabled:
        return None
    from bridges.telegram.setup import TelegramBridge

    return TelegramBridge(setup)
