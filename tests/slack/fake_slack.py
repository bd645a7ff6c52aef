"""A fake Slack Web API on 127.0.0.1 that speaks the real wire format: form or JSON bodies, a
bearer token, `{"ok": false, "error": ...}`, and HTTP 429 with Retry-After when a channel is
posted to faster than its limit. It records every call and can fail on demand."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from aiohttp.test_utils import TestServer

TOKEN = "xoxb-test-token"
SIGNING_SECRET = "test-signing-secret"
BOT_USER = "UBOT"
BOT_ID = "BBOT"
USERS = {"U1": "Maria Lopez", "U2": "Sam Chen"}


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    at: float
    status: int


@dataclass
class FakeSlack:
    min_interval: float = 0.0  # seconds between posts to one channel before 429
    retry_after: int = 1
    fail_status: int | None = None  # answer every call with this status (an outage)
    calls: list[Call] = field(default_factory=list)
    messages: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # channel -> posts
    _last_post: dict[str, float] = field(default_factory=dict)
    _ts: itertools.count = field(default_factory=lambda: itertools.count(1))
    server: TestServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("/api/"))

    def ok_calls(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method and c.status == 200]

    def posts(
        self, channel: str | None = None, thread_ts: str | None = None
    ) -> list[dict[str, Any]]:
        out = [m for ch, msgs in self.messages.items() if channel in (None, ch) for m in msgs]
        if thread_ts is not None:
            out = [m for m in out if m.get("thread_ts") == thread_ts]
        return out

    def parents(self) -> list[dict[str, Any]]:
        return [m for m in self.posts() if not m.get("thread_ts")]

    async def handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if request.method == "GET":
            args = dict(request.query)
        elif request.content_type == "application/json":
            args = await request.json()
        else:
            args = dict(await request.post())
        for key in ("blocks", "attachments"):
            if isinstance(args.get(key), str):
                args[key] = json.loads(args[key])
        auth = request.headers.get("Authorization", "")
        now = time.monotonic()
        if self.fail_status:
            self.calls.append(Call(method, args, now, self.fail_status))
            return web.json_response(
                {"ok": False, "error": "internal_error"}, status=self.fail_status
            )
        if auth != f"Bearer {TOKEN}":
            self.calls.append(Call(method, args, now, 200))
            return web.json_response({"ok": False, "error": "invalid_auth"})
        if method == "chat.postMessage":
            channel = args.get("channel", "")
            last = self._last_post.get(channel)
            if last is not None and now - last < self.min_interval:
                self.calls.append(Call(method, args, now, 429))
                return web.json_response(
                    {"ok": False, "error": "ratelimited"},
                    status=429,
                    headers={"Retry-After": str(self.retry_after)},
                )
            self._last_post[channel] = now
            ts = f"{1700000000 + next(self._ts)}.000100"
            msg = {"ts": ts, "channel": channel, **args}
            self.messages.setdefault(channel, []).append(msg)
            self.calls.append(Call(method, args, now, 200))
            return web.json_response(
                {
                    "ok": True,
                    "channel": channel,
                    "ts": ts,
                    "message": {"ts": ts, "text": args.get("text")},
                }
            )
        self.calls.append(Call(method, args, now, 200))
        if method == "auth.test":
            return web.json_response(
                {
                    "ok": True,
                    "url": "https://example.slack.com/",
                    "team": "Example",
                    "user": "handoff",
                    "team_id": "T1",
                    "user_id": BOT_USER,
                    "bot_id": BOT_ID,
                }
            )
        if method == "chat.update":
            for msgs in self.messages.values():
                for m in msgs:
                    if m["ts"] == args.get("ts"):
                        m.update({k: v for k, v in args.items() if k in ("text", "blocks")})
                        return web.json_response(
                            {"ok": True, "channel": args.get("channel"), "ts": args.get("ts")}
                        )
            return web.json_response({"ok": False, "error": "message_not_found"})
        if method == "users.info":
            uid = args.get("user")
            if uid not in USERS:
                return web.json_response({"ok": False, "error": "user_not_found"})
            return web.json_response(
                {
                    "ok": True,
                    "user": {
                        "id": uid,
                        "name": uid.lower(),
                        "real_name": USERS[uid],
                        "profile": {"real_name": USERS[uid], "display_name": USERS[uid].split()[0]},
                    },
                }
            )
        return web.json_response({"ok": False, "error": "unknown_method"})

    async def start(self) -> FakeSlack:
        app = web.Application()
        app.router.add_post("/api/{method}", self.handle)
        app.router.add_get("/api/{method}", self.handle)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()
        return self

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()


def sign(body: str, secret: str = SIGNING_SECRET, timestamp: int | None = None) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


def event_body(event: dict[str, Any], event_id: str) -> str:
    return json.dumps(
        {
            "token": "legacy",
            "team_id": "T1",
            "api_app_id": "A1",
            "type": "event_callback",
            "event_id": event_id,
            "event_time": int(time.time()),
            "event": event,
            "authorizations": [{"team_id": "T1", "user_id": BOT_USER, "is_bot": True}],
        }
    )


def command_body(text: str, channel: str, user: str = "U1") -> str:
    return urlencode(
        {
            "token": "legacy",
            "team_id": "T1",
            "channel_id": channel,
            "user_id": user,
            "user_name": user.lower(),
            "command": "/handoff",
            "text": text,
            "response_url": "http://127.0.0.1:9/unused",
            "trigger_id": "t1",
            "api_app_id": "A1",
        }
    )


def action_body(action: dict[str, Any], channel: str, message_ts: str, user: str = "U1") -> str:
    payload = {
        "type": "block_actions",
        "team": {"id": "T1"},
        "user": {"id": user},
        "api_app_id": "A1",
        "token": "legacy",
        "trigger_id": "t1",
        "channel": {"id": channel},
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel},
        "message": {"ts": message_ts},
        "response_url": "http://127.0.0.1:9/unused",
        "actions": [{"block_id": "b", "action_ts": str(time.time()), **action}],
    }
    return urlencode({"payload": json.dumps(payload)})
