"""A fake Slack on 127.0.0.1 that speaks the real wire format, for the real slack_sdk client and
Bolt app: form or JSON bodies, a bearer token, `{"ok": false, "error": ...}` answers, and HTTP
429 with Retry-After when a channel is posted to faster than its limit.

Web API methods: auth.test, chat.postMessage, chat.update, chat.postEphemeral, users.info,
usergroups.users.list (members of `groups`; `missing_scope` when `usergroups_scope` is off),
views.open (recorded in `views`) (anything else answers `unknown_method`, so an unexpected call shows up in `calls`). It also
serves response URLs (what Bolt's `respond()` posts to) and records them.

Socket Mode: `apps.connections.open` (with the app-level token) answers the ws:// URL of the
fake's own WebSocket endpoint, which says `hello`, sends envelopes (`events_api`, `interactive`,
`slash_commands`, each with an `envelope_id`) and records the client's acknowledgements
(`{"envelope_id": ..., "payload": ...}`); an envelope left unacknowledged is what Slack retries.

It records every call, and can fail on demand: `fail_status` answers every call with that HTTP
status (an outage), `stall` holds every call that long and then answers 503 without doing it
(a timeout for a client with a shorter one), `errors[(method, channel)]` answers one Slack
error, `min_interval` is the per-channel posting limit (0: none)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestServer

TOKEN = "xoxb-test-token"
APP_TOKEN = "xapp-1-A1-test-app-token"
SIGNING_SECRET = "test-signing-secret"
BOT_USER = "UBOT"
BOT_ID = "BBOT"
TEAM_URL = "https://example.slack.com/"
USERS = {"U1": "Maria Lopez", "U2": "Sam Chen", "U3": "Eve Stone"}


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    at: float
    status: int
    error: str | None = None


@dataclass
class FakeSlack:
    min_interval: float = 0.0  # seconds between posts to one channel before 429 (0: no limit)
    retry_after: int = 1
    fail_status: int | None = None  # answer every call with this status (an outage)
    stall: float = 0.0  # hold every call this long, then answer 503 without doing it
    errors: dict[tuple[str, str], str] = field(default_factory=dict)  # (method, channel) -> error
    calls: list[Call] = field(default_factory=list)
    messages: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # channel -> posts
    ephemerals: list[dict[str, Any]] = field(default_factory=list)
    responses: list[dict[str, Any]] = field(default_factory=list)  # bodies posted to response URLs
    groups: dict[str, list[str]] = field(default_factory=dict)  # user group id -> member ids
    usergroups_scope: bool = True  # False: the token lacks usergroups:read
    views: list[dict[str, Any]] = field(default_factory=list)  # views.open: the views opened
    _last_post: dict[str, float] = field(default_factory=dict)
    # What "now" is for the limits and the calls' times: the service's fake clock in tests that
    # run the service on one, so that Slack and the service agree on how much time passed.
    clock: Callable[[], float] = time.monotonic
    _ts: itertools.count = field(default_factory=lambda: itertools.count(1))
    _urls: itertools.count = field(default_factory=lambda: itertools.count(1))
    server: TestServer | None = None
    # Socket Mode: tickets handed out by apps.connections.open, the sockets connected with one,
    # and the acknowledgements received (envelope id -> the client's whole answer).
    _tickets: set[str] = field(default_factory=set)
    sockets: list[web.WebSocketResponse] = field(default_factory=list)
    acks: dict[str, dict[str, Any]] = field(default_factory=dict)
    _acked: dict[str, asyncio.Event] = field(default_factory=dict)
    _envelopes: itertools.count = field(default_factory=lambda: itertools.count(1))

    # ------------------------------------------------------------------ queries

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("/api/"))

    def response_url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url(f"/respond/{next(self._urls)}"))

    def ok_calls(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method and c.status == 200 and not c.error]

    def posts(
        self, channel: str | None = None, thread_ts: str | None = None
    ) -> list[dict[str, Any]]:
        out = [m for ch, msgs in self.messages.items() if channel in (None, ch) for m in msgs]
        if thread_ts is not None:
            out = [m for m in out if m.get("thread_ts") == thread_ts]
        return out

    def parents(self, channel: str | None = None) -> list[dict[str, Any]]:
        return [m for m in self.posts(channel) if not m.get("thread_ts")]

    def thread_text(self, thread_ts: str) -> str:
        """Everything shown in a thread, as one string (blocks when present, else text): the
        parent first, as Slack shows a thread, then the replies."""
        out = []
        parent = [m for m in self.parents() if m["ts"] == thread_ts]
        for m in parent + self.posts(thread_ts=thread_ts):
            if m.get("blocks"):
                out.extend(b.get("text", {}).get("text", "") for b in m["blocks"])
            else:
                out.append(m.get("text", ""))
        return "\n".join(out)

    # ------------------------------------------------------------------ server

    async def handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if request.method == "GET":
            args: dict[str, Any] = dict(request.query)
        elif request.content_type == "application/json":
            args = await request.json()
        else:
            args = dict(await request.post())
        for key in ("blocks", "attachments", "view"):
            if isinstance(args.get(key), str):
                args[key] = json.loads(args[key])
        auth = request.headers.get("Authorization", "")
        now = self.clock()
        if self.stall:
            # Recorded first: a client that gives up disconnects, and the server may cancel us.
            self.calls.append(Call(method, args, now, 503))
            await asyncio.sleep(self.stall)
            return web.Response(status=503, text="upstream timed out", content_type="text/html")
        if self.fail_status:
            self.calls.append(Call(method, args, now, self.fail_status))
            return web.json_response(
                {"ok": False, "error": "internal_error"}, status=self.fail_status
            )
        token = auth.removeprefix("Bearer ") if auth else args.get("token")
        if method == "apps.connections.open":
            return self._connections_open(args, now, token)
        if token != TOKEN:
            return self._error(method, args, now, "not_authed" if not token else "invalid_auth")
        channel = str(args.get("channel", ""))
        if (method, channel) in self.errors:
            return self._error(method, args, now, self.errors[(method, channel)])
        if method == "chat.postMessage":
            return self._post(args, now)
        if method == "auth.test":
            self.calls.append(Call(method, args, now, 200))
            return web.json_response(
                {
                    "ok": True,
                    "url": TEAM_URL,
                    "team": "Example",
                    "user": "handoff",
                    "team_id": "T1",
                    "user_id": BOT_USER,
                    "bot_id": BOT_ID,
                    "is_enterprise_install": False,
                }
            )
        if method == "chat.update":
            for m in self.messages.get(channel, []):
                if m["ts"] == args.get("ts"):
                    m.update({k: v for k, v in args.items() if k in ("text", "blocks")})
                    m["edits"] = m.get("edits", 0) + 1
                    self.calls.append(Call(method, args, now, 200))
                    return web.json_response({"ok": True, "channel": channel, "ts": m["ts"]})
            return self._error(method, args, now, "message_not_found")
        if method == "chat.postEphemeral":
            if not args.get("user"):
                return self._error(method, args, now, "user_not_in_channel")
            self.ephemerals.append(args)
            self.calls.append(Call(method, args, now, 200))
            return web.json_response({"ok": True, "message_ts": f"{time.time():.6f}"})
        if method == "users.info":
            uid = str(args.get("user"))
            if uid not in USERS:
                return self._error(method, args, now, "user_not_found")
            self.calls.append(Call(method, args, now, 200))
            first, last = USERS[uid].split()
            return web.json_response(
                {
                    "ok": True,
                    "user": {
                        "id": uid,
                        "name": uid.lower(),
                        "real_name": USERS[uid],
                        "profile": {
                            "real_name": USERS[uid],
                            "display_name": first.lower(),
                            "first_name": first,
                            "last_name": last,
                        },
                    },
                }
            )
        if method == "usergroups.users.list":
            return self._usergroup(args, now)
        if method == "views.open":
            if not args.get("trigger_id") and not args.get("interactivity_pointer"):
                return self._error(method, args, now, "invalid_arguments")
            view = args.get("view")
            if not isinstance(view, dict) or not view.get("blocks"):
                return self._error(method, args, now, "invalid_arguments")
            opened = {
                "id": f"V{len(self.views) + 1:08d}",
                "team_id": "T1",
                "hash": f"{time.time():.6f}.abcd",
                "state": {"values": {}},
                "previous_view_id": None,
                "root_view_id": f"V{len(self.views) + 1:08d}",
                "app_id": "A1",
                "bot_id": BOT_ID,
                **view,
            }
            self.views.append(opened)
            self.calls.append(Call(method, args, now, 200))
            return web.json_response({"ok": True, "view": opened})
        return self._error(method, args, now, "unknown_method")

    def _usergroup(self, args: dict[str, Any], now: float) -> web.Response:
        """usergroups.users.list: `{"ok": true, "users": [ids]}`, or Slack's errors."""
        method = "usergroups.users.list"
        if not self.usergroups_scope:
            self.calls.append(Call(method, args, now, 200, "missing_scope"))
            return web.json_response(
                {
                    "ok": False,
                    "error": "missing_scope",
                    "needed": "usergroups:read",
                    "provided": "chat:write,commands,users:read",
                }
            )
        group = str(args.get("usergroup") or "")
        if not group:
            return self._error(method, args, now, "invalid_arguments")
        if group not in self.groups:
            return self._error(method, args, now, "no_such_subteam")
        self.calls.append(Call(method, args, now, 200))
        return web.json_response({"ok": True, "users": list(self.groups[group])})

    def _error(self, method: str, args: dict[str, Any], now: float, error: str) -> web.Response:
        self.calls.append(Call(method, args, now, 200, error))
        return web.json_response({"ok": False, "error": error})

    def _post(self, args: dict[str, Any], now: float) -> web.Response:
        channel = str(args.get("channel", ""))
        last = self._last_post.get(channel)
        if self.min_interval and last is not None and now - last < self.min_interval:
            self.calls.append(Call("chat.postMessage", args, now, 429))
            return web.json_response(
                {"ok": False, "error": "ratelimited"},
                status=429,
                headers={"Retry-After": str(self.retry_after)},
            )
        if not args.get("text") and not args.get("blocks"):
            return self._error("chat.postMessage", args, now, "no_text")
        self._last_post[channel] = now
        ts = f"{1700000000 + next(self._ts)}.000100"
        msg = {"ts": ts, "channel": channel, **args}
        self.messages.setdefault(channel, []).append(msg)
        self.calls.append(Call("chat.postMessage", args, now, 200))
        return web.json_response(
            {
                "ok": True,
                "channel": channel,
                "ts": ts,
                "message": {"ts": ts, "text": args.get("text"), "bot_id": BOT_ID},
            }
        )

    # ------------------------------------------------------------------ Socket Mode

    def _connections_open(self, args: dict[str, Any], now: float, token: str | None) -> web.Response:
        if not token:
            return self._error("apps.connections.open", args, now, "not_authed")
        if token == TOKEN:  # a bot token where an app-level one belongs
            return self._error("apps.connections.open", args, now, "not_allowed_token_type")
        if token != APP_TOKEN:
            return self._error("apps.connections.open", args, now, "invalid_auth")
        assert self.server is not None
        ticket = f"t{next(self._urls)}"
        self._tickets.add(ticket)
        self.calls.append(Call("apps.connections.open", args, now, 200))
        url = self.server.make_url(f"/link/?ticket={ticket}&app_id=A1")
        return web.json_response({"ok": True, "url": str(url).replace("http://", "ws://", 1)})

    async def link(self, request: web.Request) -> web.StreamResponse:
        """The WebSocket a Socket Mode client connects to with the URL it was given."""
        ticket = request.query.get("ticket", "")
        if ticket not in self._tickets:
            return web.Response(status=401, text="invalid ticket")
        self._tickets.discard(ticket)  # each URL is good for one connection
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_json(
            {
                "type": "hello",
                "num_connections": len(self.sockets) + 1,
                "debug_info": {"host": "applink-fake", "approximate_connection_time": 18060},
                "connection_info": {"app_id": "A1"},
            }
        )
        self.sockets.append(ws)
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                answer = json.loads(msg.data)
                envelope_id = str(answer.get("envelope_id", ""))
                if envelope_id:
                    self.acks[envelope_id] = answer
                    self._acked.setdefault(envelope_id, asyncio.Event()).set()
        finally:
            self.sockets.remove(ws)
        return ws

    async def envelope(
        self,
        kind: str,
        payload: dict[str, Any],
        *,
        accepts_response_payload: bool = False,
        retry_attempt: int | None = None,
        envelope_id: str | None = None,
    ) -> str:
        """Send one envelope to the connected app (as Slack does, to one of its sockets)."""
        if not self.sockets:
            raise AssertionError("no Socket Mode connection")
        envelope: dict[str, Any] = {
            "envelope_id": envelope_id or f"env-{next(self._envelopes):04d}",
            "payload": payload,
            "type": kind,
            "accepts_response_payload": accepts_response_payload,
        }
        if kind == "events_api":
            envelope["retry_attempt"] = retry_attempt or 0
            envelope["retry_reason"] = "timeout" if retry_attempt else ""
        self._acked.setdefault(envelope["envelope_id"], asyncio.Event())
        await self.sockets[-1].send_json(envelope)
        return str(envelope["envelope_id"])

    async def acked(self, envelope_id: str, timeout: float = 3.0) -> dict[str, Any]:
        """The app's acknowledgement of an envelope; fails if it did not come in `timeout`
        seconds (Slack's 3)."""
        event = self._acked.setdefault(envelope_id, asyncio.Event())
        await asyncio.wait_for(event.wait(), timeout)
        return self.acks[envelope_id]

    async def respond(self, request: web.Request) -> web.Response:
        self.responses.append(await request.json())
        return web.Response(text="ok")

    async def start(self) -> FakeSlack:
        app = web.Application()
        app.router.add_post("/api/{method}", self.handle)
        app.router.add_get("/api/{method}", self.handle)
        app.router.add_post("/respond/{n}", self.respond)
        app.router.add_get("/link/", self.link)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()
        return self

    async def close(self) -> None:
        for ws in list(self.sockets):
            await ws.close()
        if self.server is not None:
            await self.server.close()


# ---------------------------------------------------------------------- signed requests


def sign(body: str, secret: str = SIGNING_SECRET, timestamp: int | None = None) -> dict[str, str]:
    """Slack's v0 signature: HMAC-SHA256 of `v0:{timestamp}:{body}` with the signing secret."""
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


def command_body(
    text: str, channel: str, user: str = "U1", response_url: str = "http://127.0.0.1:9/unused"
) -> str:
    return urlencode(
        {
            "token": "legacy",
            "team_id": "T1",
            "team_domain": "example",
            "channel_id": channel,
            "channel_name": "support",
            "user_id": user,
            "user_name": user.lower(),
            "command": "/handoff",
            "text": text,
            "response_url": response_url,
            "trigger_id": "t1",
            "api_app_id": "A1",
        }
    )


def action_body(
    action: dict[str, Any],
    channel: str,
    message_ts: str,
    user: str = "U1",
    response_url: str = "http://127.0.0.1:9/unused",
) -> str:
    payload = {
        "type": "block_actions",
        "team": {"id": "T1", "domain": "example"},
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": "T1"},
        "api_app_id": "A1",
        "token": "legacy",
        "trigger_id": "t1",
        "channel": {"id": channel, "name": "support"},
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel,
            "is_ephemeral": False,
        },
        "message": {"ts": message_ts, "type": "message", "bot_id": BOT_ID},
        "response_url": response_url,
        "actions": [{"block_id": "b", "action_ts": f"{time.time():.6f}", **action}],
    }
    return urlencode({"payload": json.dumps(payload)})


def view_submission_body(view: dict[str, Any], values: dict[str, Any], user: str = "U1") -> str:
    """A modal submitted: the opened view (as views.open answered it) with its inputs' values,
    `values` as {block_id: {action_id: value}} for plain-text inputs."""
    state = {
        "values": {
            block: {
                action: {"type": "plain_text_input", "value": value}
                for action, value in inputs.items()
            }
            for block, inputs in values.items()
        }
    }
    payload = {
        "type": "view_submission",
        "team": {"id": "T1", "domain": "example"},
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": "T1"},
        "api_app_id": "A1",
        "token": "legacy",
        "trigger_id": "t2",
        "view": {**view, "state": state},
        "response_urls": [],
        "is_enterprise_install": False,
    }
    return urlencode({"payload": json.dumps(payload)})
