"""The web widget: its HTTP + WebSocket API, the script itself, and the demo page.

Its delivery is live (bridges/widget/bridge.py): the shopper's open sockets get each event as it
commits; the messages table is the record, so a socket that was closed catches up from `after=`.

Everything here answers strangers: bodies are JSON only (a cross-site form cannot post one
without a CORS preflight), nested or malformed JSON is a 400, every repeatable request is
limited (a 429 with `Retry-After`), and only listed origins may call (bridges/widget/embedding)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from pathlib import Path
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from bridges.widget.embedding import WidgetPolicy
from core.lifecycle import Core, CoreError, UnknownConversation
from core.limits import client_address
from core.live import LiveHub
from domain.masking import mask_sensitive
from domain.textclean import clean_optional

log = logging.getLogger("handoff.widget")
STATIC = Path(__file__).resolve().parent / "static"
MAX_BODY = 64 * 1024
MAX_DEPTH = 8  # the widget's bodies are flat objects; deeper nesting is refused, not parsed on
MAX_ID = 2**31 - 1  # ids are 32-bit integers in PostgreSQL: a larger one is no conversation
API = "/api/conversations"
MAX_REFUSED_FRAMES = 20  # frames in a row sent while told to wait, before the socket is closed


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


def _refuse(exc: type[web.HTTPException], message: str, **kwargs: Any) -> web.HTTPException:
    return exc(text=json.dumps({"error": message}), content_type="application/json", **kwargs)


def _too_many(seconds: int, message: str) -> web.HTTPException:
    """A 429 the widget can read (CORS headers are added on the way out) and show calmly."""
    return web.HTTPTooManyRequests(
        text=json.dumps({"error": message, "retry_after": seconds}),
        content_type="application/json",
        headers={"Retry-After": str(seconds)},
    )


def _depth(value: Any) -> int:
    """How deeply `value` nests (iteratively: a hostile body must not recurse us)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if depth > MAX_DEPTH:
                return depth
            stack.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


def parse_object(raw: str | bytes) -> dict[str, Any]:
    """A JSON object of at most MAX_DEPTH levels, or ValueError with what is wrong."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: "[[[[..." deeper than Python's stack
        raise ValueError("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object")
    if _depth(data) > MAX_DEPTH:
        raise ValueError("the body is nested too deeply")
    return data


def _string(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) else None


class WidgetRoutes:
    def __init__(
        self,
        core: Core,
        live: LiveHub,
        *,
        max_text: int = 4000,
        policy: WidgetPolicy | None = None,
    ) -> None:
        self.core = core
        self.live = live
        self.max_text = max_text
        self.policy = policy or WidgetPolicy()

    def register(self, app: web.Application) -> None:
        if self.policy.demo:  # the sample shop page is a demo, not part of a store's service
            app.router.add_get("/", self.demo_page)
        app.router.add_get("/widget.js", self.script)
        for path, methods in (
            (API, [("POST", self.create)]),
            (API + "/{id}/messages", [("GET", self.messages), ("POST", self.post_message)]),
            (API + "/{id}/rating", [("POST", self.rating)]),
            (API + "/{id}/ws", [("GET", self.websocket)]),
        ):
            for method, handler in methods:
                app.router.add_route(method, path, handler)
            app.router.add_route("OPTIONS", path, self.preflight)
        app.middlewares.append(self.cors)

    # ------------------------------------------------------------------ embedding

    @web.middleware
    async def cors(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Origin check and CORS headers on every widget endpoint, errors included (a 429 the
        page cannot read would look like a dead connection)."""
        if not (request.path == API or request.path.startswith(API + "/")):
            return await handler(request)
        origin = request.headers.get("Origin")
        if origin is not None and not self.policy.allows(origin, request.host):
            log.info("widget call from an unlisted origin refused", extra={"origin": origin[:200]})
            return _error(403, "this site may not use the chat (WIDGET_ORIGINS)")
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            if origin is not None:
                self._cors_headers(exc.headers, origin)
            raise
        if origin is not None and not response.prepared:
            self._cors_headers(response.headers, origin)
        return response

    @staticmethod
    def _cors_headers(headers: Any, origin: str) -> None:
        headers["Access-Control-Allow-Origin"] = origin
        headers["Access-Control-Expose-Headers"] = "Retry-After"
        headers["Vary"] = "Origin"

    async def preflight(self, request: web.Request) -> web.Response:
        """The browser's question before a JSON POST from another origin (the middleware has
        already refused unlisted origins)."""
        if "Origin" not in request.headers:
            return _error(400, "a preflight needs an Origin")
        return web.Response(
            status=204,
            headers={
                "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
                "Access-Control-Allow-Headers": "Content-Type",
                "Access-Control-Max-Age": "600",
            },
        )

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

    # ------------------------------------------------------------------ helpers

    async def _auth(self, request: web.Request) -> int:
        """The conversation id and its token must match; a wrong token says nothing more."""
        return (await self._auth_state(request))[0]

    async def _auth_state(self, request: web.Request) -> tuple[int, str]:
        """As `_auth`, with the conversation's state from the same query."""
        try:
            cid = int(request.match_info["id"])
        except ValueError:
            raise _refuse(web.HTTPForbidden, "forbidden") from None
        if not 0 < cid <= MAX_ID:
            raise _refuse(web.HTTPForbidden, "forbidden")
        token = clean_optional(request.query.get("token"), 200)
        state = await self.core.check_token(cid, token)
        if state is None:
            raise _refuse(web.HTTPForbidden, "forbidden")
        return cid, state

    async def _json(self, request: web.Request) -> dict[str, Any]:
        if request.content_length is not None and request.content_length > MAX_BODY:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=request.content_length)
        raw = await request.content.read(MAX_BODY + 1)
        if len(raw) > MAX_BODY:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=len(raw))
        if not raw:
            return {}
        if request.content_type != "application/json":
            # A page can post text/plain or a form to any site without asking; JSON it cannot.
            raise _refuse(web.HTTPUnsupportedMediaType, "bodies are application/json")
        try:
            return parse_object(raw)
        except ValueError as exc:
            raise _refuse(web.HTTPBadRequest, str(exc)) from None

    def _message_wait(self, cid: int) -> int:
        return self.policy.message_limiter.retry_after(str(cid))

    # ------------------------------------------------------------------ endpoints

    async def create(self, request: web.Request) -> web.Response:
        address = client_address(request, self.policy.trusted_proxies)
        wait = self.policy.create_limiter.retry_after(address)
        if wait:
            log.info("conversation creation limited", extra={"retry_after": wait})
            raise _too_many(wait, "Lots of chats are starting right now. We'll connect you in a moment.")
        data = await self._json(request)
        email = _string(data, "email")
        # Only an email the store signed is the shopper's; an unsigned one is a claim, kept
        # to be shown as such and never used as proof.
        signed = self.policy.verified_email(email, _string(data, "user_hash"))
        started = await self.core.start_conversation(
            "widget",
            name=_string(data, "name"),
            email=email if signed else None,
            claimed_email=None if signed else email,
            with_token=True,
        )
        return web.json_response(
            {"conversation_id": started.conversation.id, "token": started.token, "verified": signed}
        )

    async def messages(self, request: web.Request) -> web.Response:
        """A page of history after `after` (oldest first); `more` says whether to ask again."""
        cid, state = await self._auth_state(request)
        try:
            after = int(request.query.get("after", "0") or 0)
            limit = int(request.query.get("limit", "0") or 0) or self.policy.history_page
        except ValueError:
            return _error(400, "after and limit must be numbers")
        after = min(max(after, 0), MAX_ID)
        limit = min(max(limit, 1), self.policy.history_page)
        hist = await self.core.history(cid, after=after, limit=limit + 1)
        return web.json_response(
            {"messages": [m.as_json() for m in hist[:limit]], "state": state, "more": len(hist) > limit}
        )

    async def post_message(self, request: web.Request) -> web.Response:
        cid = await self._auth(request)
        data = await self._json(request)
        wait = self._message_wait(cid)
        if wait:
            raise _too_many(wait, "You're sending messages quickly. We'll send this one in a moment.")
        return await self._take(cid, data, as_http=True)  # type: ignore[return-value]

    async def rating(self, request: web.Request) -> web.Response:
        cid = await self._auth(request)
        data = await self._json(request)
        score = data.get("score")
        if isinstance(score, bool) or score not in (1, -1):
            return _error(400, "score must be 1 or -1")
        try:
            counted = await self.core.rate(cid, score, "widget")
        except CoreError as exc:
            return _error(400, str(exc))
        if not counted:
            return _error(409, "This conversation has already been rated.")
        return web.json_response({"ok": True})

    async def _take(self, cid: int, data: dict[str, Any], *, as_http: bool) -> web.Response | dict[str, Any]:
        text = data.get("text")
        client_id = data.get("client_id")
        if not isinstance(text, str):
            err = {"error": "text must be a string"}
            return _error(400, err["error"]) if as_http else err
        if client_id is not None and (
            isinstance(client_id, bool) or not isinstance(client_id, str | int) or len(str(client_id)) > 128
        ):
            err = {"error": "client_id must be a short string"}
            return _error(400, err["error"]) if as_http else err
        # The client's id is shopper text too (it is stored and echoed): masked like the rest.
        platform_id = mask_sensitive(str(client_id)) if client_id is not None else None
        try:
            msg, new = await self.core.shopper_message(cid, text, source="widget", platform_id=platform_id)
        except UnknownConversation as exc:
            return _error(404, str(exc)) if as_http else {"error": str(exc)}
        except CoreError as exc:
            return _error(400, str(exc)) if as_http else {"error": str(exc)}
        body: dict[str, Any] = {"message": msg.as_json()}
        if as_http:
            return web.json_response(body)
        return {**body, "again": not new}

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        try:
            cid = int(request.match_info["id"])
        except ValueError:
            raise _refuse(web.HTTPForbidden, "forbidden") from None
        topic = f"conv:{cid}"
        ws = web.WebSocketResponse(heartbeat=25, max_msg_size=MAX_BODY)
        async with self.live.subscribe(topic) as queue:
            # Subscribed before the state is read, so a change in between is in the queue too;
            # nothing from the queue is sent unless the token matches.
            cid, state = await self._auth_state(request)
            with self.policy.sockets.hold(str(cid)) as ok:
                if not ok:
                    raise _too_many(30, "This chat is open in too many tabs.")
                await ws.prepare(request)
                await ws.send_json({"type": "state", "state": state})
                pump = asyncio.create_task(self._pump(ws, queue))
                try:
                    await self._frames(ws, cid)
                finally:
                    pump.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await pump
        return ws

    async def _frames(self, ws: web.WebSocketResponse, cid: int) -> None:
        """Every frame the shopper sends takes one of the conversation's message tokens (garbage
        costs as much as a message); a client that keeps sending while told to wait is cut off."""
        refused = 0
        async for frame in ws:
            if frame.type == WSMsgType.ERROR:
                break
            if frame.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                continue
            wait = self._message_wait(cid)
            if frame.type == WSMsgType.BINARY:
                continue
            try:
                data = parse_object(frame.data)
            except ValueError:
                await ws.send_json({"type": "error", "error": "frames must be JSON objects"})
                continue
            client_id = data.get("client_id") if isinstance(data.get("client_id"), str | int) else None
            if wait:
                refused += 1
                if refused > MAX_REFUSED_FRAMES:
                    await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"too many messages")
                    break
                await ws.send_json(
                    {
                        "type": "error",
                        "error": "You're sending messages quickly. We'll send this one in a moment.",
                        "client_id": client_id,
                        "retry_after": wait,
                    }
                )
                continue
            refused = 0
            if data.get("type") != "message":
                await ws.send_json({"type": "error", "error": "unknown frame type"})
                continue
            result = await self._take(cid, data, as_http=False)
            assert isinstance(result, dict)
            if "error" in result:
                await ws.send_json({"type": "error", "error": result["error"], "client_id": client_id})
            elif result.get("again"):
                # A resend of a message already stored (its first confirmation went out while this
                # socket was not yet listening): confirmed to this socket, or the widget would
                # keep it pending and keep sending it.
                await ws.send_json({"type": "message", **result["message"]})

    async def _pump(self, ws: web.WebSocketResponse, queue: asyncio.Queue[dict[str, Any]]) -> None:
        while not ws.closed:
            event = await queue.get()
            try:
                await ws.send_json(event)
            except (ConnectionResetError, RuntimeError):
                return
