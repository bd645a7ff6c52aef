"""A fake Telegram Bot API on 127.0.0.1 in the real wire format.

- `/bot<token>/<method>`, GET or POST, form-encoded (what PTB sends: complex values JSON-encoded),
  multipart or JSON bodies;
- `{"ok": true, "result": ...}`; errors `{"ok": false, "error_code": N, "description": ...}` with
  the HTTP status N, 429 carrying `parameters.retry_after`;
- getMe, setWebhook, deleteWebhook, getWebhookInfo, getUpdates (long polling with offset and
  timeout; 409 while a webhook is set), sendMessage (1-4096 UTF-16 units, 403 for a chat that
  blocked the bot, flood control per chat when `per_chat_interval` is set; `reply_markup` kept),
  sendChatAction, answerCallbackQuery (each query answered once, else 400 "query is too old"),
  editMessageReplyMarkup (400 "message is not modified" when nothing changes).

Every call is recorded with its time and status; `fail(...)` scripts the next answers of a method.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

TOKEN = "123456:TEST-token_AbCdEf"
BOT = {
    "id": 123456,
    "is_bot": True,
    "first_name": "Flashpoint",
    "username": "flashpoint_bot",
    "can_join_groups": True,
    "can_read_all_group_messages": False,
    "supports_inline_queries": False,
}
JSON_FIELDS = ("allowed_updates", "reply_markup", "link_preview_options", "entities")


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    status: int
    at: float

    @property
    def chat(self) -> int | None:
        return int(self.args["chat_id"]) if "chat_id" in self.args else None


@dataclass
class Fault:
    status: int
    description: str
    chat: int | None = None
    parameters: dict[str, Any] | None = None
    skip: int = 0  # let this many matching calls through first


@dataclass
class FakeTelegram:
    per_chat_interval: float = 0.0  # two messages to one chat closer than this -> 429
    flood_retry_after: int = 1
    blocked_chats: set[int] = field(default_factory=set)
    calls: list[Call] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    webhook: dict[str, Any] = field(default_factory=dict)
    polls_open: int = 0  # getUpdates calls waiting for an update right now
    # getUpdates calls that found another one still waiting for a caller still connected (two
    # bot instances polling at once): Telegram ends the older one with 409.
    poll_conflicts: int = 0
    _waiting: dict[int, web.Request] = field(default_factory=dict)
    _poll_generation: int = 0
    _request: web.Request | None = None
    faults: dict[str, deque[Fault]] = field(default_factory=dict)
    answered: dict[str, dict[str, Any]] = field(default_factory=dict)  # callback query id -> args
    _queries: set[str] = field(default_factory=set)  # callback queries sent, not yet answered
    _updates: list[dict[str, Any]] = field(default_factory=list)
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _last: dict[int, float] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    server: TestServer | None = None
    # What "now" is for flood control and the calls' times: the service's fake clock in tests
    # that run the service on one, so that Telegram and the service agree on the time passed.
    clock: Callable[[], float] = time.monotonic

    # ------------------------------------------------------------------ test API

    @property
    def url(self) -> str:
        """What TELEGRAM_API_URL should be (PTB appends the token and the method)."""
        assert self.server is not None
        return str(self.server.make_url("/bot"))

    def texts(self, chat: int) -> list[str]:
        return [m["text"] for m in self.sent if m["chat_id"] == chat]

    def attempts(self, method: str, chat: int | None = None) -> list[Call]:
        return [c for c in self.calls if c.method == method and (chat is None or c.chat == chat)]

    def push(self, *updates: dict[str, Any]) -> None:
        """Updates waiting to be fetched by getUpdates."""
        for u in updates:
            self.expect_query(u)
        self._updates.extend(updates)
        self._arrived.set()

    def expect_query(self, update: dict[str, Any]) -> dict[str, Any]:
        """A callback query in `update` may be answered (once): Telegram made it."""
        if "callback_query" in update:
            self._queries.add(update["callback_query"]["id"])
        return update

    def message(self, chat: int, message_id: int) -> dict[str, Any]:
        return next(m for m in self.sent if m["chat_id"] == chat and m["message_id"] == message_id)

    def unconfirmed(self) -> list[int]:
        """Update ids Telegram still holds: not yet confirmed by a getUpdates offset past them."""
        return [u["update_id"] for u in self._updates]

    def fail(
        self,
        method: str,
        status: int,
        *,
        times: int = 1,
        chat: int | None = None,
        retry_after: int | None = None,
        description: str | None = None,
        after: int = 0,
    ) -> None:
        """The next `times` calls of `method` (for `chat`, if given) answer this error, once
        `after` matching calls have gone through normally."""
        default = {
            400: "Bad Request",
            403: "Forbidden: bot was blocked by the user",
            429: f"Too Many Requests: retry after {retry_after}",
            500: "Internal Server Error",
            502: "Bad Gateway",
        }.get(status, "Error")
        params = {"retry_after": retry_after} if retry_after is not None else None
        queue = self.faults.setdefault(method, deque())
        for i in range(times):
            queue.append(
                Fault(status, description or default, chat, params, after if i == 0 else 0)
            )

    def clear_faults(self) -> None:
        self.faults.clear()

    # ------------------------------------------------------------------ server

    def _answer(
        self, method: str, args: dict[str, Any], status: int, body: dict[str, Any]
    ) -> web.Response:
        self.calls.append(Call(method, args, status, self.clock()))
        return web.json_response(body, status=status)

    def _ok(self, method: str, args: dict[str, Any], result: Any) -> web.Response:
        return self._answer(method, args, 200, {"ok": True, "result": result})

    def _err(
        self,
        method: str,
        args: dict[str, Any],
        status: int,
        description: str,
        parameters: dict[str, Any] | None = None,
    ) -> web.Response:
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
        if parameters:
            body["parameters"] = parameters
        return self._answer(method, args, status, body)

    def _scripted(self, method: str, args: dict[str, Any]) -> Fault | None:
        queue = self.faults.get(method)
        if not queue:
            return None
        chat = int(args["chat_id"]) if "chat_id" in args else None
        for fault in list(queue):
            if fault.chat is None or fault.chat == chat:
                if fault.skip:
                    fault.skip -= 1
                    return None
                queue.remove(fault)
                return fault
        return None

    async def _args(self, request: web.Request) -> dict[str, Any]:
        if request.content_type == "application/json":
            return dict(await request.json()) if request.can_read_body else {}
        args: dict[str, Any] = dict(request.query)
        if request.can_read_body:
            args.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
        for key in JSON_FIELDS:
            if isinstance(args.get(key), str):
                args[key] = json.loads(args[key])
        return args

    async def handle(self, request: web.Request) -> web.Response:
        token, method = request.match_info["token"], request.match_info["method"]
        args = await self._args(request)
        if token != TOKEN:
            return self._err(method, args, 401, "Unauthorized")
        fault = self._scripted(method, args)
        if fault is not None:
            return self._err(method, args, fault.status, fault.description, fault.parameters)
        handler = getattr(self, f"m_{method}", None)
        if handler is None:
            return self._err(method, args, 404, "Not Found: method not found")
        self._request = request
        return await handler(method, args)

    async def m_getMe(self, method: str, args: dict[str, Any]) -> web.Response:  # noqa: N802
        return self._ok(method, args, BOT)

    async def m_setWebhook(self, method: str, args: dict[str, Any]) -> web.Response:  # noqa: N802
        if not str(args.get("url", "")).startswith("https://"):
            return self._err(
                method, args, 400, "Bad Request: bad webhook: An HTTPS URL must be provided"
            )
        self.webhook = args
        if str(args.get("drop_pending_updates")).lower() == "true":
            self._updates.clear()
        return self._ok(method, args, True)

    async def m_deleteWebhook(self, method: str, args: dict[str, Any]) -> web.Response:  # noqa: N802
        self.webhook = {}
        if str(args.get("drop_pending_updates")).lower() == "true":
            self._updates.clear()
        return self._ok(method, args, True)

    async def m_getWebhookInfo(self, method: str, args: dict[str, Any]) -> web.Response:  # noqa: N802
        info = {
            "url": self.webhook.get("url", ""),
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }
        return self._ok(method, args, info)

    async def m_getUpdates(self, method: str, args: dict[str, Any]) -> web.Response:  # noqa: N802
        if self.webhook:
            return self._err(
                method, args, 409, "Conflict: can't use getUpdates method while webhook is active"
            )
        offset = int(args.get("offset") or 0)
        self._updates = [u for u in self._updates if u["update_id"] >= offset]  # confirmed
        request = self._request
        assert request is not None
        # A newer getUpdates ends one still waiting with 409, as Telegram does when two bot
        # instances poll. (A wait whose caller hung up is nobody's: it just ends.)
        self._poll_generation += 1
        generation = self._poll_generation
        if any(_connected(r) for r in self._waiting.values()):
            self.poll_conflicts += 1
            self._arrived.set()
            await asyncio.sleep(0)
        if not self._updates:
            self._arrived.clear()
            # Long polling: wait for an update, at most `timeout` seconds.
            self.polls_open += 1
            self._waiting[generation] = request
            try:
                await asyncio.wait_for(self._arrived.wait(), float(args.get("timeout") or 0))
            except TimeoutError:
                pass
            finally:
                self.polls_open -= 1
                self._waiting.pop(generation, None)
        if generation != self._poll_generation and _connected(request):
            return self._err(
                method,
                args,
                409,
                "Conflict: terminated by other getUpdates request; make sure that only one bot "
                "instance is running",
            )
        limit = int(args.get("limit") or 100)
        return self._ok(method, args, self._updates[:limit])

    async def m_sendChatAction(self, method: str, args: dict[str, Any]) -> web.Response:  # noqa: N802
        if int(args["chat_id"]) in self.blocked_chats:
            return self._err(method, args, 403, "Forbidden: bot was blocked by the user")
        if args.get("action") not in ("typing", "upload_photo", "record_voice", "upload_document"):
            return self._err(method, args, 400, "Bad Request: wrong parameter action in request")
        return self._ok(method, args, True)

    async def m_sendMessage(self, method: str, args: dict[str, Any]) -> web.Response:  # noqa: N802
        if not args.get("chat_id"):
            return self._err(method, args, 400, "Bad Request: chat_id is empty")
        chat = int(args["chat_id"])
        if chat in self.blocked_chats:
            return self._err(method, args, 403, "Forbidden: bot was blocked by the user")
        text = str(args.get("text") or "")
        if not text.strip():
            return self._err(method, args, 400, "Bad Request: message text is empty")
        if len(text.encode("utf-16-le")) // 2 > 4096:
            return self._err(method, args, 400, "Bad Request: message is too long")
        now = self.clock()
        if self.per_chat_interval and now - self._last.get(chat, -1e9) < self.per_chat_interval:
            return self._err(
                method,
                args,
                429,
                f"Too Many Requests: retry after {self.flood_retry_after}",
                {"retry_after": self.flood_retry_after},
            )
        self._last[chat] = now
        message = {
            "message_id": next(self._ids),
            "date": int(time.time()),
            "chat": {"id": chat, "type": "private"},
            "from": BOT,
            "text": text,
        }
        if args.get("reply_markup"):
            message["reply_markup"] = args["reply_markup"]
        self.sent.append(
            {
                "chat_id": chat,
                "text": text,
                "at": now,
                "message_id": message["message_id"],
                "reply_markup": args.get("reply_markup"),
            }
        )
        return self._ok(method, args, message)

    async def m_answerCallbackQuery(self, method: str, args: dict[str, Any]) -> web.Response:  # noqa: N802
        qid = str(args.get("callback_query_id") or "")
        if qid not in self._queries:
            return self._err(
                method,
                args,
                400,
                "Bad Request: query is too old and response timeout expired or query ID is invalid",
            )
        self._queries.discard(qid)
        self.answered[qid] = args
        return self._ok(method, args, True)

    async def m_editMessageReplyMarkup(self, method: str, args: dict[str, Any]) -> web.Response:  # noqa: N802
        chat, mid = int(args.get("chat_id") or 0), int(args.get("message_id") or 0)
        sent = next(
            (m for m in self.sent if m["chat_id"] == chat and m["message_id"] == mid), None
        )
        if sent is None:
            return self._err(method, args, 400, "Bad Request: message to edit not found")
        markup = args.get("reply_markup") or None
        if markup == sent["reply_markup"]:
            return self._err(
                method,
                args,
                400,
                "Bad Request: message is not modified: specified new message content and reply "
                "markup are exactly the same as a current content and reply markup of the message",
            )
        sent["reply_markup"] = markup
        message = {
            "message_id": mid,
            "date": int(time.time()),
            "edit_date": int(time.time()),
            "chat": {"id": chat, "type": "private"},
            "from": BOT,
            "text": sent["text"],
        }
        if markup:
            message["reply_markup"] = markup
        return self._ok(method, args, message)

    async def start(self) -> FakeTelegram:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self.handle)
        # Its access log is Telegram's, not ours (and it has the token in every path).
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server(access_log=None)
        return self

    async def close(self) -> None:
        self._arrived.set()
        if self.server is not None:
            await self.server.close()


def _connected(request: web.Request) -> bool:
    transport = request.transport
    return transport is not None and not transport.is_closing()


# ---------------------------------------------------------------------- updates as Telegram sends


def _user(chat: int, first: str, last: str | None, username: str | None) -> dict[str, Any]:
    user: dict[str, Any] = {"id": chat, "is_bot": False, "first_name": first}
    if last:
        user["last_name"] = last
    if username:
        user["username"] = username
    return user


def message_update(
    update_id: int,
    chat: int,
    *,
    text: str | None = None,
    first: str = "Lena",
    last: str | None = "Novak",
    username: str | None = "lena_n",
    edited: bool = False,
    chat_type: str = "private",
    **extra: Any,
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "message_id": update_id,
        "date": int(time.time()),
        "chat": {"id": chat, "type": chat_type, "first_name": first},
        "from": _user(chat, first, last, username),
        **extra,
    }
    if text is not None:
        message["text"] = text
    if edited:
        message["edit_date"] = int(time.time())
    return {"update_id": update_id, ("edited_message" if edited else "message"): message}


def text_update(update_id: int, chat: int, text: str, **kw: Any) -> dict[str, Any]:
    return message_update(update_id, chat, text=text, **kw)


def member_update(update_id: int, chat: int, status: str) -> dict[str, Any]:
    """my_chat_member: the shopper blocked ("kicked") or unblocked ("member") the bot."""
    old = "member" if status == "kicked" else "kicked"
    now = int(time.time())
    user = _user(chat, "Lena", "Novak", "lena_n")
    return {
        "update_id": update_id,
        "my_chat_member": {
            "chat": {"id": chat, "type": "private", "first_name": "Lena"},
            "from": user,
            "date": now,
            "old_chat_member": {
                "status": old,
                "user": BOT,
                **({"until_date": 0} if old == "kicked" else {}),
            },
            "new_chat_member": {
                "status": status,
                "user": BOT,
                **({"until_date": 0} if status == "kicked" else {}),
            },
        },
    }


def callback_update(
    update_id: int, chat: int, message: dict[str, Any] | None, data: str, *, query_id: str = ""
) -> dict[str, Any]:
    """A tap on an inline keyboard button under `message` (one of FakeTelegram.sent; None: a
    message too old for Telegram to include)."""
    query: dict[str, Any] = {
        "id": query_id or f"q{update_id}",
        "from": _user(chat, "Lena", "Novak", "lena_n"),
        "chat_instance": f"ci{chat}",
        "data": data,
    }
    if message is not None:
        query["message"] = {
            "message_id": message["message_id"],
            "date": int(time.time()),
            "chat": {"id": message["chat_id"], "type": "private", "first_name": "Lena"},
            "from": BOT,
            "text": message["text"],
            **({"reply_markup": message["reply_markup"]} if message["reply_markup"] else {}),
        }
    return {"update_id": update_id, "callback_query": query}
