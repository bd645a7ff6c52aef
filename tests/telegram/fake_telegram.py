"""A fake Telegram Bot API on 127.0.0.1 in the real wire format: /bot<token>/<method>, form or JSON
bodies, {"ok": true, "result": ...}, 429 with parameters.retry_after, 403 for a blocked bot."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

TOKEN = "123456:TEST-token"
BOT = {
    "id": 123456,
    "is_bot": True,
    "first_name": "Flashpoint",
    "username": "flashpoint_bot",
    "can_join_groups": True,
    "can_read_all_group_messages": False,
    "supports_inline_queries": False,
}


@dataclass
class FakeTelegram:
    per_chat_interval: float = 0.0  # faster than this per chat -> 429
    retry_after: int = 1
    blocked_chats: set[int] = field(default_factory=set)
    fail_status: int | None = None
    sent: list[dict[str, Any]] = field(default_factory=list)
    calls: list[tuple[str, dict[str, Any], int]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    webhook: dict[str, Any] = field(default_factory=dict)
    _last: dict[int, float] = field(default_factory=dict)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    server: TestServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("/bot"))

    def texts(self, chat_id: int) -> list[str]:
        return [m["text"] for m in self.sent if int(m["chat_id"]) == chat_id]

    def _ok(self, method: str, args: dict[str, Any], result: Any) -> web.Response:
        self.calls.append((method, args, 200))
        return web.json_response({"ok": True, "result": result})

    def _err(
        self, method: str, args: dict[str, Any], status: int, description: str, **extra: Any
    ) -> web.Response:
        self.calls.append((method, args, status))
        return web.json_response(
            {"ok": False, "error_code": status, "description": description, **extra}, status=status
        )

    async def handle(self, request: web.Request) -> web.Response:
        token, method = request.match_info["token"], request.match_info["method"]
        if request.content_type == "application/json":
            args = await request.json() if request.can_read_body else {}
        else:
            args = dict(await request.post())
        if token != TOKEN:
            return self._err(method, args, 401, "Unauthorized")
        if self.fail_status and method == "sendMessage":
            return self._err(method, args, self.fail_status, "Internal Server Error")
        if method == "getMe":
            return self._ok(method, args, BOT)
        if method == "setWebhook":
            self.webhook = args
            return self._ok(method, args, True)
        if method == "deleteWebhook":
            self.webhook = {}
            return self._ok(method, args, True)
        if method == "getUpdates":
            if self.webhook:
                return self._err(
                    method,
                    args,
                    409,
                    "Conflict: can't use getUpdates method while webhook is active",
                )
            offset = int(args.get("offset") or 0)
            self.updates = [u for u in self.updates if u["update_id"] >= offset]
            if not self.updates:
                await asyncio.sleep(min(float(args.get("timeout") or 0), 0.2))
            return self._ok(method, args, self.updates[:100])
        if method == "sendChatAction":
            return self._ok(method, args, True)
        if method == "sendMessage":
            chat = int(args["chat_id"])
            if chat in self.blocked_chats:
                return self._err(method, args, 403, "Forbidden: bot was blocked by the user")
            text = args.get("text", "")
            if not 1 <= len(text) <= 4096:
                return self._err(method, args, 400, "Bad Request: message is too long")
            now = time.monotonic()
            if self.per_chat_interval and now - self._last.get(chat, -1e9) < self.per_chat_interval:
                return self._err(
                    method,
                    args,
                    429,
                    f"Too Many Requests: retry after {self.retry_after}",
                    parameters={"retry_after": self.retry_after},
                )
            self._last[chat] = now
            msg = {
                "message_id": next(self._ids),
                "date": int(time.time()),
                "chat": {"id": chat, "type": "private"},
                "text": text,
                "from": BOT,
            }
            self.sent.append({"chat_id": chat, "text": text})
            return self._ok(method, args, msg)
        return self._err(method, args, 404, "Not Found: method not found")

    async def start(self) -> FakeTelegram:
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self.handle)
        app.router.add_get("/bot{token}/{method}", self.handle)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()
        return self

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()


def text_update(
    update_id: int, chat_id: int, text: str, *, first: str = "Lena", username: str = "lena"
) -> dict[str, Any]:
    return {
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "date": int(time.time()),
            "text": text,
            "chat": {"id": chat_id, "type": "private", "first_name": first},
            "from": {"id": chat_id, "is_bot": False, "first_name": first, "username": username},
        },
    }


def dumps(update: dict[str, Any]) -> str:
    return json.dumps(update)
