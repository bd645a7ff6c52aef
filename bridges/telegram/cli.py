"""`handoff telegram set-webhook URL` / `delete-webhook` / `info`.

Listing the commands loads nothing of python-telegram-bot; running one does."""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from typing import Any

from bridges.telegram import ALLOWED_UPDATES, WEBHOOK_PATH
from domain.settings import Settings

# Telegram's rule for secret_token: 1-256 characters, A-Z, a-z, 0-9, _ and -.
SECRET_RE = re.compile(r"[A-Za-z0-9_-]{1,256}")


def add_telegram_commands(subparsers: Any) -> None:
    """`handoff telegram …`, added to the main CLI's subcommands."""
    p = subparsers.add_parser(
        "telegram", help="Telegram helpers: set-webhook URL, delete-webhook, info"
    )
    tsub = p.add_subparsers(dest="telegram_command", required=True)
    sw = tsub.add_parser(
        "set-webhook",
        help=f"register URL{WEBHOOK_PATH} with TELEGRAM_WEBHOOK_SECRET as the secret token",
    )
    sw.add_argument("url", help=f"the service's public HTTPS URL ({WEBHOOK_PATH} is appended)")
    sw.add_argument(
        "--drop-pending-updates", action="store_true", help="forget updates waiting at Telegram"
    )
    dw = tsub.add_parser("delete-webhook", help="remove the webhook (before using polling)")
    dw.add_argument(
        "--drop-pending-updates", action="store_true", help="forget updates waiting at Telegram"
    )
    tsub.add_parser("info", help="the bot behind the token and its webhook status")
    p.set_defaults(func=run)


def webhook_url(url: str) -> str:
    url = url.strip().rstrip("/")
    return url if url.endswith(WEBHOOK_PATH) else url + WEBHOOK_PATH


def run(args: argparse.Namespace) -> int:
    from telegram.error import TelegramError

    from bridges.telegram.setup import REDACTOR, make_bot

    settings = Settings()
    if not settings.telegram_bot_token:
        print("error: TELEGRAM_BOT_TOKEN is not set", file=sys.stderr)
        return 2
    secret = (
        settings.telegram_webhook_secret.get_secret_value()
        if settings.telegram_webhook_secret
        else ""
    )
    drop = bool(getattr(args, "drop_pending_updates", False))
    if args.telegram_command == "set-webhook":
        if not secret:
            print(
                "error: set TELEGRAM_WEBHOOK_SECRET first (Telegram sends it with every update "
                "and the service refuses updates without it)",
                file=sys.stderr,
            )
            return 2
        if not SECRET_RE.fullmatch(secret):
            print(
                "error: TELEGRAM_WEBHOOK_SECRET may only use A-Z, a-z, 0-9, _ and - "
                "(1-256 characters), Telegram's rule",
                file=sys.stderr,
            )
            return 2

    async def go() -> list[str]:
        bot = make_bot(settings)
        async with bot:
            if args.telegram_command == "set-webhook":
                url = webhook_url(args.url)
                await bot.set_webhook(
                    url,
                    secret_token=secret,
                    allowed_updates=ALLOWED_UPDATES,
                    drop_pending_updates=drop,
                )
                return [f"webhook set to {url} (with the secret token)"]
            if args.telegram_command == "delete-webhook":
                await bot.delete_webhook(drop_pending_updates=drop)
                return ["webhook deleted: TELEGRAM_MODE=polling can be used now"]
            me = bot.bot
            info = await bot.get_webhook_info()
            lines = [f"bot:      @{me.username} (id {me.id})"]
            if info.url:
                lines.append(f"webhook:  {info.url}")
                lines.append(f"pending:  {info.pending_update_count} updates")
                if info.last_error_message:
                    lines.append(f"last error: {info.last_error_message}")
            else:
                lines.append("webhook:  none (polling mode, or not connected yet)")
            return lines

    try:
        out = asyncio.run(go())
    except TelegramError as exc:
        print(f"error: Telegram said: {REDACTOR.redact(exc.message)}", file=sys.stderr)
        return 1
    print("\n".join(out))
    return 0
