"""Telegram as a shopper channel (python-telegram-bot). Constants here import no SDK, so the CLI
can list `handoff telegram …` without loading python-telegram-bot."""

WEBHOOK_PATH = "/telegram/webhook"
ALLOWED_UPDATES = ["message", "edited_message", "my_chat_member"]
