"""The web widget: its HTTP + WebSocket API, the script itself, and the demo page.

The widget is a `ShopperChannel` whose `send` pushes to the shopper's open sockets; the messages
table is the record, so a socket that was closed catches up from `after=` on reconnect."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from core.lifecycle import Core, CoreError, UnknownConversation
from core.live import LiveHub
from domain.outbox import DeliveryResult
from domain.ports import ConversationView

log = logging.getLogger("handoff.widget")
STATIC = Path(__file__).resolve().parent / "static"
MAX_BODY = 64 * 1024


class WidgetChannel:
    name = "widget"
    # Delivery is the live event: the core publishes it when the change commits (no outbox row).
    live_delivery = True

    def __init__(self, live: LiveHub) -> None:
        self.live = live

    async def send(self, conversation: ConversationView, message: dict[str, Any], *, step: int = 0) -> DeliveryResult:
        n = self.live.publish(f"conv:{conversation.id}", {"type": "message", **message})
        return DeliveryResult.done(sockets=n)

    async def state(self, conversation: ConversationView) -> None:
        self.live.publish(f"conv:{conversation.id}", {"type": "state", "state": conversation.state})

    async def typing(self, conversation: ConversationView) -> None:
        self.live.publish(f"conv:{conversation.id}", {"type": "typing"})

    def rate_keys(self, conversation: ConversationView | None, kind: str = "send") -> list[str]:
        return []


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class WidgetRoutes:
    def __init__(self, core: Core, live: LiveHub, *, max_text: int = 4000) -> None:
        self.core = core
        self.live = live
        self.max_text = max_text

    def register(self, app: web.Application) -> None:
        app.router.add_get("/", self.demo_page)
        app.router.add_get("/widget.js", self.script)
        app.router.add_post("/api/conversations", self.create)
        app.router.add_get("/api/conversations/{id}/messages", self.messages)
        app.router.add_post("/api/conversations/{id}/messages", self.post_message)
        app.router.add_get("/api/conversations/{id}/ws", self.websocket)
        app.router.add_post("/api/conversations/{id}/rating", self.rating)

    async def demo_page(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "demo.html", headers={"Content-Type": "text/html; charset=utf-8"})

    async def script(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(
            STATIC / "widget.js",
            headers={
                "Content-Type": "application/javascript; charset=utf-8",
                "Access-Control-Allow-Origin": "*",
                "Cache-Control": "public, max-age=300",
            },
        )

    async def _auth(self, request: web.Request) -> int:
        """The conversation id and its token must match; a wrong token says nothing more."""
        return (await self._auth_state(request))[0]

    async def _auth_state(self, request: web.Request) -> tuple[int, str]:
        """As `_auth`, with the conversation's state from the same query."""
        try:
            cid = int(request.match_info["id"])
        except ValueError:
            raise web.HTTPForbidden(text=json.dumps({"error": "forbidden"}), content_type="application/json") from None
        state = await self.core.check_token(cid, request.query.get("token"))
        if state is None:
            raise web.HTTPForbidden(text=json.dumps({"error": "forbidden"}), content_type="application/json")
        return cid, state

    async def _json(self, request: web.Request) -> dict[str, Any]:
        if request.content_length is not None and request.content_length > MAX_BODY:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=request.content_length)
        raw = await request.content.read(MAX_BODY + 1)
        if len(raw) > MAX_BODY:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=len(raw))
        if not raw:
            return {}
        try:
            data = json.loads(raw)
        except ValueError:
            raise web.HTTPBadRequest(text=json.dumps({"error": "the body is not valid JSON"}), content_type="application/json") from None
        if not isinstance(data, dict):
            raise web.HTTPBadRequest(text=json.dumps({"error": "the body must be a JSON object"}), content_type="application/json")
        return data

    async def create(self, request: web.Request) -> web.Response:
        data = await self._json(request)
        name = str(data.get("name") or "")[:200] or None
        email = str(data.get("email") or "")[:320] or None
        started = await self.core.start_conversation("widget", name=name, email=email, with_token=True)
        return web.json_response(
            {"conversation_id": started.conversation.id, "token": started.token},
            headers={"Access-Control-Allow-Origin": "*"},
        )

    async def messages(self, request: web.Request) -> web.Response:
        cid, state = await self._auth_state(request)
        try:
            after = int(request.query.get("after", "0") or 0)
        except ValueError:
            return _error(400, "after must be a message id")
        hist = await self.core.history(cid, after=after)
        return web.json_response({"messages": [m.as_json() for m in hist], "state": state})

    async def post_message(self, request: web.Request) -> web.Response:
        cid = await self._auth(request)
        data = await self._json(request)
        return await self._take(cid, data, as_http=True)  # type: ignore[return-value]

    async def rating(self, request: web.Request) -> web.Response:
        cid = await self._auth(request)
        data = await self._json(request)
        try:
            await self.core.rate(cid, int(data.get("score", 0)), "widget")
        except (CoreError, ValueError, TypeError) as exc:
            return _error(400, str(exc) if isinstance(exc, CoreError) else "score must be 1 or -1")
        return web.json_response({"ok": True})

    async def _take(self, cid: int, data: dict[str, Any], *, as_http: bool) -> web.Response | dict[str, Any]:
        text = data.get("text")
        client_id = data.get("client_id")
        if not isinstance(text, str):
            err = {"error": "text must be a string"}
            return _error(400, err["error"]) if as_http else err
        if client_id is not None and (not isinstance(client_id, str | int) or len(str(client_id)) > 128):
            err = {"error": "client_id must be a short string"}
            return _error(400, err["error"]) if as_http else err
        try:
            msg, _ = await self.core.shopper_message(
                cid, text, source="widget", platform_id=str(client_id) if client_id is not None else None
            )
        except UnknownConversation as exc:
            return _error(404, str(exc)) if as_http else {"error": str(exc)}
        except CoreError as exc:
            return _error(400, str(exc)) if as_http else {"error": str(exc)}
        body = {"message": msg.as_json()}
        return web.json_response(body) if as_http else body

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        try:
            topic = f"conv:{int(request.match_info['id'])}"
        except ValueError:
            raise web.HTTPForbidden(text=json.dumps({"error": "forbidden"}), content_type="application/json") from None
        ws = web.WebSocketResponse(heartbeat=25, max_msg_size=MAX_BODY)
        async with self.live.subscribe(topic) as queue:
            # Subscribed before the state is read, so a change in between is in the queue too;
            # nothing from the queue is sent unless the token matches.
            cid, state = await self._auth_state(request)
            await ws.prepare(request)
            await ws.send_json({"type": "state", "state": state})
            pump = asyncio.create_task(self._pump(ws, queue))
            try:
                async for frame in ws:
                    if frame.type != WSMsgType.TEXT:
                        if frame.type == WSMsgType.ERROR:
                            break
                        continue
                    try:
                        data = json.loads(frame.data)
                    except ValueError:
                        await ws.send_json({"type": "error", "error": "frames must be JSON"})
                        continue
                    if not isinstance(data, dict) or data.get("type") != "message":
                        await ws.send_json({"type": "error", "error": "unknown frame type"})
                        continue
                    result = await self._take(cid, data, as_http=False)
                    assert isinstance(result, dict)
                    if "error" in result:
                        await ws.send_json({"type": "error", "error": result["error"], "client_id": data.get("client_id")})
            finally:
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pump
        return ws

    async def _pump(self, ws: web.WebSocketResponse, queue: asyncio.Queue[dict[str, Any]]) -> None:
        while not ws.closed:
            event = await queue.get()
            try:
                await ws.send_json(event)
            except (ConnectionResetError, RuntimeError):
                return
