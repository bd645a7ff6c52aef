"""The web inbox for stores without Slack (and the demo): queue, history, reply, commands, live.

As an `Inbox` it has little to do: the page reads the database directly, so opening a thread or
posting to it is just a nudge to open pages. Every API call needs the shared `INBOX_TOKEN`."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web
from sqlalchemy import func, select

from core.lifecycle import Core, CoreError, UnknownConversation
from core.live import LiveHub
from domain.ports import ConversationView, MessageView
from storage import repo
from storage.models import Conversation, Message

STATIC = Path(__file__).resolve().parent / "static"
COMMANDS = {"claim", "release", "tag", "resolve", "bot"}


class WebInbox:
    name = "web"

    def __init__(self, live: LiveHub) -> None:
        self.live = live
        self.alerts: list[str] = []

    async def open_thread(self, conversation: ConversationView, history: list[MessageView], context: dict[str, Any]) -> dict[str, Any]:
        self.live.publish("inbox", {"type": "changed", "conversation_id": conversation.id})
        return {"inbox": "web"}

    async def post(self, ref: dict[str, Any], conversation: ConversationView, message: dict[str, Any]) -> dict[str, Any] | None:
        self.live.publish("inbox", {"type": "changed", "conversation_id": conversation.id})
        return None

    async def post_history(self, ref: dict[str, Any], conversation: ConversationView, history: list[MessageView]) -> int:
        self.live.publish("inbox", {"type": "changed", "conversation_id": conversation.id})
        return history[-1].id

    async def update(self, ref: dict[str, Any], conversation: ConversationView) -> None:
        self.live.publish("inbox", {"type": "changed", "conversation_id": conversation.id})

    async def alert(self, text: str) -> None:
        self.alerts = [*self.alerts[-49:], text]
        self.live.publish("inbox", {"type": "alert", "text": text})

    def rate_keys(self, conversation: ConversationView | None, kind: str = "post") -> list[str]:
        return []


def conversation_json(c: ConversationView, *, detail: bool = False, last_text: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": c.id,
        "state": c.state,
        "owner": c.owner,
        "priority": c.priority,
        "tags": list(c.tags),
        "reason": c.reason,
        "summary": c.summary,
        "channel": c.channel,
        "customer": {
            "name": c.customer.name,
            "email": c.customer.email or (c.context.get("customer") or {}).get("email"),
            "tier": (c.context.get("customer") or {}).get("tier") or c.customer.tier,
            "username": c.customer.username,
        },
        "handed_off_at": c.handed_off_at.isoformat() if c.handed_off_at else None,
        "created_at": c.created_at.isoformat(),
        "blocked": c.blocked,
        "last_text": last_text,
    }
    if detail:
        out["context"] = c.context
        out["inbox_ref"] = {k: v for k, v in (c.inbox_ref or {}).items() if k in ("channel", "ts")} or None
    return out


class WebInboxRoutes:
    def __init__(self, core: Core, live: LiveHub, token: str, tags: list[dict[str, Any]]) -> None:
        self.core = core
        self.live = live
        self.token = token
        self.tags = tags

    def register(self, app: web.Application) -> None:
        app.router.add_get("/inbox", self.page)
        app.router.add_static("/inbox/static", STATIC, show_index=False)
        app.router.add_get("/inbox/api/conversations", self.list)
        app.router.add_get("/inbox/api/conversations/{id}", self.detail)
        app.router.add_post("/inbox/api/conversations/{id}/reply", self.reply)
        app.router.add_post("/inbox/api/conversations/{id}/command", self.command)
        app.router.add_get("/inbox/api/tags", self.tag_list)
        app.router.add_get("/inbox/api/stats", self.stats)
        app.router.add_get("/inbox/stats", self.stats_page)
        app.router.add_get("/inbox/ws", self.websocket)

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        given = header[7:] if header.startswith("Bearer ") else request.query.get("token", "")
        return bool(self.token) and hmac.compare_digest(given.encode(), self.token.encode())

    def _check(self, request: web.Request) -> None:
        if not self._authorized(request):
            raise web.HTTPUnauthorized(text=json.dumps({"error": "a valid inbox token is required"}), content_type="application/json")

    async def page(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "inbox.html", headers={"Content-Type": "text/html; charset=utf-8"})

    async def stats_page(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "stats.html", headers={"Content-Type": "text/html; charset=utf-8"})

    async def stats(self, request: web.Request) -> web.Response:
        """Counts and timings for the stats page: `since` (24h), `bucket` (1h), optional `tag`."""
        from core.analytics import compute_stats, parse_duration, tag_series
        from storage.models import utcnow

        self._check(request)
        try:
            since = parse_duration(request.query.get("since", "24h"))
            bucket = parse_duration(request.query.get("bucket", "1h"))
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        if since / bucket > 500:
            return web.json_response({"error": "too many buckets: use a larger bucket"}, status=400)
        tag = request.query.get("tag") or None
        until = utcnow()
        async with self.core.sessions() as s:
            st = await compute_stats(s, until - since, until, tag)
            series = await tag_series(s, until - since, until, bucket, tag)
        return web.json_response({"stats": st.as_json(), "series": series})

    async def tag_list(self, request: web.Request) -> web.Response:
        self._check(request)
        return web.json_response({"tags": self.tags})

    async def list(self, request: web.Request) -> web.Response:
        self._check(request)
        state = request.query.get("state", "open")
        states = {"open": ("queued", "claimed"), "all": ("bot", "queued", "claimed", "resolved")}.get(state, (state,))
        async with self.core.sessions() as s:
            convs = await repo.open_queue(s, tuple(states))
            last_ids = dict(
                (await s.execute(
                    select(Message.conversation_id, func.max(Message.id))
                    .where(Message.conversation_id.in_([c.id for c in convs]), Message.role != "note")
                    .group_by(Message.conversation_id)
                )).all()
            ) if convs else {}
            texts = dict((await s.execute(select(Message.id, Message.text).where(Message.id.in_(list(last_ids.values()))))).all()) if last_ids else {}
        if state == "all":
            convs.sort(key=lambda c: c.id, reverse=True)
        return web.json_response({"conversations": [conversation_json(c, last_text=(texts.get(last_ids.get(c.id)) or "")[:200]) for c in convs[:500]]})

    def _id(self, request: web.Request) -> int:
        try:
            return int(request.match_info["id"])
        except ValueError:
            raise web.HTTPNotFound(text=json.dumps({"error": "no such conversation"}), content_type="application/json") from None

    async def detail(self, request: web.Request) -> web.Response:
        self._check(request)
        cid = self._id(request)
        try:
            conv = await self.core.get(cid)
        except UnknownConversation as exc:
            return web.json_response({"error": str(exc)}, status=404)
        hist = await self.core.history(cid, include_notes=True)
        return web.json_response({"conversation": conversation_json(conv, detail=True), "messages": [m.as_json() for m in hist]})

    async def _body(self, request: web.Request) -> dict[str, Any]:
        if request.content_length and request.content_length > 64 * 1024:
            raise web.HTTPRequestEntityTooLarge(max_size=64 * 1024, actual_size=request.content_length)
        try:
            data = await request.json()
        except ValueError:
            raise web.HTTPBadRequest(text=json.dumps({"error": "the body is not valid JSON"}), content_type="application/json") from None
        if not isinstance(data, dict):
            raise web.HTTPBadRequest(text=json.dumps({"error": "the body must be a JSON object"}), content_type="application/json")
        return data

    def _author(self, data: dict[str, Any]) -> str:
        author = str(data.get("author") or "").strip()[:100]
        return author or "Team"

    async def reply(self, request: web.Request) -> web.Response:
        self._check(request)
        cid = self._id(request)
        data = await self._body(request)
        try:
            msg = await self.core.staff_reply(cid, str(data.get("text") or ""), author=self._author(data), source="web")
        except UnknownConversation as exc:
            return web.json_response({"error": str(exc)}, status=404)
        except CoreError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"message": msg.as_json() if msg else None})

    async def command(self, request: web.Request) -> web.Response:
        self._check(request)
        cid = self._id(request)
        data = await self._body(request)
        command = str(data.get("command") or "")
        args = data.get("args") or []
        if command not in COMMANDS or not isinstance(args, list):
            return web.json_response({"error": f"command must be one of {sorted(COMMANDS)}"}, status=400)
        try:
            result = await self.core.staff_command(cid, command, actor=self._author(data), args=[str(a) for a in args])
        except UnknownConversation as exc:
            return web.json_response({"error": str(exc)}, status=404)
        except CoreError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        if not result.ok:
            return web.json_response({"error": result.text}, status=409)
        return web.json_response({
            "ok": True,
            "text": result.text,
            "conversation": conversation_json(result.conversation, detail=True) if result.conversation else None,
        })

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        self._check(request)
        ws = web.WebSocketResponse(heartbeat=25)
        await ws.prepare(request)
        async with self.live.subscribe("inbox") as queue:
            async def pump() -> None:
                while not ws.closed:
                    event = await queue.get()
                    with contextlib.suppress(ConnectionResetError, RuntimeError):
                        await ws.send_json(event)

            task = asyncio.create_task(pump())
            try:
                async for frame in ws:
                    if frame.type == WSMsgType.ERROR:
                        break
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        return ws


async def conversation_count(core: Core) -> int:
    async with core.sessions() as s:
        return int(await s.scalar(select(func.count()).select_from(Conversation)) or 0)
