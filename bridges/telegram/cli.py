"""`handoff telegram set-webhook URL` / `delete-webhook` / `info`."""

from __future__ import annotations

import argparse
import asyncio
import sys

from bot.settings import Settings
from bridges.telegram.setup import make_bot


def run(args: argparse.Namespace) -> int:
    settings = Settings()
    if not settings.telegram_bot_token:
        print("TELEGRAM_BOT_TOKEN is not set", file=sys.stderr)
        return 2

    async def go() -> str:
        bot = make_bot(settings)
        async with bot:
            if args.telegram_command == "set-webhook":
                if not settings.telegram_webhook_secret:
                    return "error: set TELEGRAM_WEBHOOK_SECRET first (every update will carry it)"
                url = args.url.rstrip("/")
                if not url.endswith("/telegram/webhook"):
                    url += "/telegram/webhook"
                await bot.set_webhook(
                    url,
                    secret_token=settings.telegram_webhook_secret.get_secret_value(),
                    allowed_updates=["message", "edited_message"],
                )
                return f"webhook set to {url}"
            if args.telegram_command == "delete-webhook":
                await bot.delete_webhook()
                return "webhook deleted (polling can be used now)"
            me = await bot.get_me()
            return f"bot @{me.username} (id {me.id})"

    out = asyncio.run(go())
    print(out, file=sys.stderr if out.startswith("error") else sys.stdout)
    return 2 if out.startswith("error") else 0
