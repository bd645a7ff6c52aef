"""The web inbox for stores without Slack (and the demo): queue, history, reply, commands, live.

As a bridge (bridges/webinbox/bridge.py) it has little to do: the page reads the lists through
the core, and open pages are told on commit which conversations changed.

Who is asking is the signed-in staff account behind the session cookie (HttpOnly,
SameSite=Strict, Secure over https, path /inbox): the author of every reply and change is that
account's name, whatever a request body says. No token travels in a URL or sits in the page's
storage; the WebSocket is authenticated by the same cookie."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from core.analytics import parse_duration
from core.approvals import Approver, NotAnApprover
from core.lifecycle import Core, CoreError, UnknownConversation
from core.limits import RateLimiter, client_address, parse_networks
from core.live import LiveHub
from core.queue import MAX_PAGE, QueuePage, QueueReader, tabs_of
from core.staff import Person, StaffAccounts, StaffError
from domain.ports import ConversationView

STATIC = Path(__file__).resolve().parent / "static"
COMMANDS = {"claim", "release", "tag", "resolve", "bot", "wrong"}  # wrong: core/corrections.py
COOKIE = "handoff_inbox"
COOKIE_PATH = "/inbox"
# Scripts, styles and sockets from this origin only; never framed (clickjacking), no plugins,
# no <base> games, forms post only here.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
PAGE_SIZE = 50


def customer_json(c: ConversationView) -> dict[str, Any]:
    """Who the shopper is, as far as it is proved. The agent's lookup (in the context) counts
    only when verified: an order named but not proved may belong to someone else (a VIP), whose
    details are kept apart as the order's owner, not verified, never as the shopper's."""
    customer = c.customer
    found = c.context.get("customer")
    found = found if isinstance(found, dict) else {}
    proved = bool(found.get("verified"))
    claimed = getattr(customer, "claimed_email", None) or found.get("claimed_email")
    out: dict[str, Any] = {
        "name": customer.name,
        "email": customer.email or (found.get("email") if proved else None),
        # An address the shopper's page passed unsigned, or typed: a claim, shown as such.
        "claimed_email": claimed,
        "tier": (found.get("tier") if proved else None) or customer.tier,
        "username": customer.username,
        "order_owner": None,
    }
    own = {e.lower() for e in (customer.email, claimed) if e}
    email = found.get("email")
    owner = c.context.get("order_owner")  # the built-in agent keeps the owner apart itself
    if isinstance(owner, dict) and not proved:
        out["order_owner"] = {"email": owner.get("email"), "tier": owner.get("tier"), "verified": False}
    elif not proved and (found.get("tier") or (email and str(email).lower() not in own)):
        out["order_owner"] = {"email": email, "tier": found.get("tier"), "verified": False}
    return out


def conversation_json(
    c: ConversationView, *, detail: bool = False, last_text: str | None = None, me: str | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": c.id,
        "state": c.state,
        "owner": c.owner,
        "priority": c.priority,
        "tags": list(c.tags),
        "reason": c.reason,
        "summary": c.summary,
        "channel": c.channel,
        "customer": customer_json(c),
        "handed_off_at": c.handed_off_at.isoformat() if c.handed_off_at else None,
        "created_at": c.created_at.isoformat(),
        "blocked": c.blocked,
        "last_text": last_text,
    }
    if me is not None:
        out["tabs"] = tabs_of(c, me)
    if detail:
        out["context"] = c.context
        out["inbox_ref"] = {k: v for k, v in (c.inbox_ref or {}).items() if k in ("channel", "ts")} or None
    return out


def _error(status: int, message: str, **headers: str) -> web.HTTPException:
    cls = {400: web.HTTPBadRequest, 401: web.HTTPUnauthorized, 403: web.HTTPForbidden,
           404: web.HTTPNotFound, 415: web.HTTPUnsupportedMediaType, 429: web.HTTPTooManyRequests}[status]
    return cls(text=json.dumps({"error": message}), content_type="application/json", headers=headers or None)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class WebInboxRoutes:
    """The inbox's pages and API."""

    # How often an open socket checks that its session still stands (a removed person's
    # socket closes within this); HTTP requests check on every call.
    session_recheck_seconds = 30.0

    def __init__(
        self,
        core: Core,
        live: LiveHub,
        tags: list[dict[str, Any]],
        *,
        staff: StaffAccounts,
        reader: QueueReader,
        trusted_proxies: str = "",
        login_limit: str = "10/15minutes",
        session_seconds: float = 14 * 86400,
    ) -> None:
        self.core = core
        self.live = live
        self.tags = tags
        self.staff = staff
        self.reader = reader
        self.trusted = parse_networks(trusted_proxies)
        self.login_limiter = RateLimiter(login_limit)
        self.session_seconds = session_seconds

    def register(self, app: web.Application) -> None:
        app.router.add_get("/inbox", self.page)
        app.router.add_static("/inbox/static", STATIC, show_index=False)
        app.router.add_post("/inbox/api/login", self.login)
        app.router.add_post("/inbox/api/logout", self.logout)
        app.router.add_get("/inbox/api/me", self.me)
        app.router.add_get("/inbox/api/staff", self.staff_list)
        app.router.add_post("/inbox/api/staff", self.staff_add)
        app.router.add_post("/inbox/api/staff/remove", self.staff_remove)
        app.router.add_get("/inbox/api/conversations", self.list)
        app.router.add_get("/inbox/api/conversations/{id}", self.detail)
        app.router.add_post("/inbox/api/conversations/{id}/reply", self.reply)
        app.router.add_post("/inbox/api/conversations/{id}/command", self.command)
        app.router.add_post(
            "/inbox/api/conversations/{id}/prepared/{pid}/{verdict:approve|deny}", self.decide
        )
        app.router.add_get("/inbox/api/tags", self.tag_list)
        app.router.add_get("/inbox/api/stats", self.stats)
        app.router.add_get("/inbox/stats", self.stats_page)
        app.router.add_get("/inbox/ws", self.websocket)
        app.on_response_prepare.append(self._security_headers)

    # ------------------------------------------------------------------ plumbing

    @staticmethod
    async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
        path = request.path
        if path != "/inbox" and not path.startswith("/inbox/"):
            return
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        if path.startswith("/inbox/api/") or path in ("/inbox", "/inbox/stats"):
            response.headers.setdefault("Cache-Control", "no-store")

    def _peer_is_proxy(self, request: web.Request) -> bool:
        try:
            peer = ipaddress.ip_address((request.remote or "").strip("[]"))
        except ValueError:
            return False
        return any(peer.version == net.version and peer in net for net in self.trusted)

    def _https(self, request: web.Request) -> bool:
        """Whether the browser reached us over https: directly, or through a proxy we trust
        that says so (X-Forwarded-Proto from anyone else is ignored)."""
        if request.secure:
            return True
        proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
        return proto == "https" and self._peer_is_proxy(request)

    def _accounts(self) -> StaffAccounts:
        return self.staff

    def _queue(self) -> QueueReader:
        return self.reader

    async def _person(self, request: web.Request) -> Person:
        person = await self._accounts().person(request.cookies.get(COOKIE))
        if person is None:
            raise _error(401, "sign in to the inbox first")
        return person

    async def _admin(self, request: web.Request) -> Person:
        person = await self._person(request)
        if not person.is_admin:
            raise _error(403, "only the admin account manages staff")
        return person

    async def _body(self, request: web.Request) -> dict[str, Any]:
        if request.content_length and request.content_length > 64 * 1024:
            raise web.HTTPRequestEntityTooLarge(max_size=64 * 1024, actual_size=request.content_length)
        if request.content_type != "application/json":
            # A plain form or text/plain post from another site cannot pass as one of ours.
            raise _error(415, "send the body as application/json")
        try:
            data = await request.json()
        except (ValueError, RecursionError):
            raise _error(400, "the body is not valid JSON") from None
        if not isinstance(data, dict):
            raise _error(400, "the body must be a JSON object")
        return data

    def _id(self, request: web.Request) -> int:
        try:
            return int(request.match_info["id"])
        except ValueError:
            raise _error(404, "no such conversation") from None

    # ------------------------------------------------------------------ pages

    async def page(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "inbox.html", headers={"Content-Type": "text/html; charset=utf-8"})

    async def stats_page(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "stats.html", headers={"Content-Type": "text/html; charset=utf-8"})

    # ------------------------------------------------------------------ sign-in

    async def login(self, request: web.Request) -> web.Response:
        """Trade a one-time login token (or the bootstrap INBOX_TOKEN) for a session cookie.
        Attempts are limited per client address; a success clears that address's count."""
        address = client_address(request, self.trusted)
        wait = self.login_limiter.retry_after(address)
        if wait:
            raise _error(429, "too many sign-in attempts: wait a little", **{"Retry-After": str(wait)})
        data = await self._body(request)
        result = await self._accounts().login(str(data.get("token") or "").strip())
        if result is None:
            raise _error(401, "that login link or token is not valid (a link works once)")
        self.login_limiter.forget(address)
        person, session_id = result
        resp = web.json_response({"name": person.name, "admin": person.is_admin})
        self._set_cookie(request, resp, session_id)
        return resp

    def _set_cookie(self, request: web.Request, resp: web.StreamResponse, session_id: str) -> None:
        resp.set_cookie(
            COOKIE,
            session_id,
            path=COOKIE_PATH,
            max_age=int(self.session_seconds),
            httponly=True,
            samesite="Strict",
            secure=self._https(request),
        )

    async def logout(self, request: web.Request) -> web.Response:
        await self._accounts().logout(request.cookies.get(COOKIE))
        resp = web.json_response({"ok": True})
        resp.del_cookie(COOKIE, path=COOKIE_PATH)
        return resp

    async def me(self, request: web.Request) -> web.Response:
        """Who is signed in. The page asks on every load, and the cookie's lifetime is renewed
        with the answer, as the session's is on the server while it is in use."""
        person = await self._person(request)
        resp = web.json_response({"name": person.name, "admin": person.is_admin})
        self._set_cookie(request, resp, request.cookies[COOKIE])
        return resp

    # ------------------------------------------------------------------ staff (admin)

    async def staff_list(self, request: web.Request) -> web.Response:
        await self._admin(request)
        people = await self._accounts().list()
        return web.json_response({"staff": [
            {"name": p.name, "admin": p.is_admin, "sessions": p.sessions,
             "login_pending": p.login_pending, "created_at": p.created_at.isoformat()}
            for p in people
        ]})

    async def staff_add(self, request: web.Request) -> web.Response:
        await self._admin(request)
        data = await self._body(request)
        try:
            invite = await self._accounts().add(str(data.get("name") or ""))
        except StaffError as exc:
            raise _error(400, str(exc)) from None
        # The page builds the link from its own address; the token is shown once.
        return web.json_response({"name": invite.name, "token": invite.token, "created": invite.created,
                                  "expires_at": invite.expires_at.isoformat()})

    async def staff_remove(self, request: web.Request) -> web.Response:
        await self._admin(request)
        data = await self._body(request)
        if not await self._accounts().remove(str(data.get("name") or "")):
            raise _error(404, "no such staff account")
        return web.json_response({"ok": True})

    # ------------------------------------------------------------------ reads

    async def stats(self, request: web.Request) -> web.Response:
        """Counts and timings for the stats page: `since` (24h), `bucket` (1h), optional `tag`."""
        await self._person(request)
        try:
            since = parse_duration(request.query.get("since", "24h"))
            bucket = parse_duration(request.query.get("bucket", "1h"))
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        if since / bucket > 500:
            return web.json_response({"error": "too many buckets: use a larger bucket"}, status=400)
        tag = request.query.get("tag") or None
        return web.json_response(await self._queue().stats(since, bucket, tag, datetime.now(UTC)))

    async def tag_list(self, request: web.Request) -> web.Response:
        await self._person(request)
        return web.json_response({"tags": self.tags})

    @staticmethod
    def _int(request: web.Request, name: str, default: int) -> int:
        try:
            return int(request.query.get(name, default))
        except ValueError:
            raise _error(400, f"{name} must be a number") from None

    def _page_json(self, page: QueuePage, me: str) -> list[dict[str, Any]]:
        return [conversation_json(c, last_text=page.last_texts.get(c.id, ""), me=me) for c in page.conversations]

    async def list(self, request: web.Request) -> web.Response:
        """One page of a tab (`state`: open, waiting, mine, bot, resolved, all; `offset`,
        `limit`) with every tab's count; or, with `ids=1,2,3`, just those conversations (what a
        live event named), each saying which tabs it belongs in now."""
        person = await self._person(request)
        if "ids" in request.query:
            try:
                ids = [int(x) for x in request.query["ids"].split(",") if x.strip()]
            except ValueError:
                raise _error(400, "ids must be numbers") from None
            page = await self._queue().rows(ids, me=person.name)
            return web.json_response({"conversations": self._page_json(page, person.name), "counts": page.counts})
        tab = request.query.get("state", "open")
        offset = max(0, self._int(request, "offset", 0))
        limit = max(1, min(MAX_PAGE, self._int(request, "limit", PAGE_SIZE)))
        try:
            page = await self._queue().page(tab, me=person.name, offset=offset, limit=limit)
        except ValueError as exc:
            raise _error(400, str(exc)) from None
        return web.json_response({
            "conversations": self._page_json(page, person.name),
            "tab": tab,
            "offset": offset,
            "limit": limit,
            "total": page.counts[tab],
            "counts": page.counts,
        })

    async def detail(self, request: web.Request) -> web.Response:
        person = await self._person(request)
        cid = self._id(request)
        try:
            conv = await self.core.get(cid)
        except UnknownConversation as exc:
            return web.json_response({"error": str(exc)}, status=404)
        hist = await self.core.history(cid, include_notes=True)
        return web.json_response({"conversation": self._with_approvals(conversation_json(conv, detail=True, me=person.name), person),
                                  "messages": [m.as_json() for m in hist]})

    def _with_approvals(self, out: dict[str, Any], person: Person) -> dict[str, Any]:
        """Each prepared write says whether this person may approve or deny it (the page shows
        the buttons to everyone, and says who may use them)."""
        approvals = self.core.approvals
        prepared = (out.get("context") or {}).get("prepared")
        if approvals is None or not isinstance(prepared, list):
            return out
        entries = []
        for entry in prepared:
            if isinstance(entry, dict):
                may = approvals.approvers(str(entry.get("action"))).allows_staff(person.name)
                entry = {**entry, "can_decide": may}
            entries.append(entry)
        out["context"] = {**out["context"], "prepared": entries}
        return out

    # ------------------------------------------------------------------ changes

    async def reply(self, request: web.Request) -> web.Response:
        person = await self._person(request)
        cid = self._id(request)
        data = await self._body(request)
        try:
            msg = await self.core.staff_reply(cid, str(data.get("text") or ""), author=person.name, source="web")
        except UnknownConversation as exc:
            return web.json_response({"error": str(exc)}, status=404)
        except CoreError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"message": msg.as_json() if msg else None})

    async def command(self, request: web.Request) -> web.Response:
        person = await self._person(request)
        cid = self._id(request)
        data = await self._body(request)
        command = str(data.get("command") or "")
        args = data.get("args") or []
        if command not in COMMANDS or not isinstance(args, list):
            return web.json_response({"error": f"command must be one of {sorted(COMMANDS)}"}, status=400)
        try:
            result = await self.core.staff_command(cid, command, actor=person.name, args=[str(a) for a in args])
        except UnknownConversation as exc:
            return web.json_response({"error": str(exc)}, status=404)
        except CoreError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        if not result.ok:
            return web.json_response({"error": result.text}, status=409)
        return web.json_response({
            "ok": True,
            "text": result.text,
            "conversation": conversation_json(result.conversation, detail=True, me=person.name) if result.conversation else None,
        })

    async def decide(self, request: web.Request) -> web.Response:
        """Approve or deny a prepared write (deny needs `note`): 403 for someone not on the
        action's approvers list, 409 when it was already decided (by whom, in `error`)."""
        person = await self._person(request)
        cid = self._id(request)
        try:
            pid = int(request.match_info["pid"])
        except ValueError:
            raise _error(404, "no such prepared action") from None
        data = await self._body(request)
        approvals = self.core.approvals
        if approvals is None:
            raise _error(404, "no such prepared action")
        who = Approver(name=person.name, via="web", staff=person.name)
        try:
            if request.match_info["verdict"] == "approve":
                result = await approvals.approve(cid, who, prepared_id=pid)
            else:
                result = await approvals.deny(cid, who, str(data.get("note") or ""), prepared_id=pid)
        except UnknownConversation as exc:
            return web.json_response({"error": str(exc)}, status=404)
        except NotAnApprover as exc:
            return web.json_response({"error": str(exc)}, status=403)
        except CoreError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        if not result.ok:
            return web.json_response({"error": result.text}, status=409)
        conv = result.conversation
        return web.json_response({
            "ok": True,
            "text": result.text,
            "conversation": self._with_approvals(conversation_json(conv, detail=True, me=person.name), person) if conv else None,
        })

    # ------------------------------------------------------------------ live

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        """Live events (ids of changed conversations, alerts) for a signed-in person. The socket
        closes (code 4401) once the session ends: logged out, expired or the account removed."""
        await self._person(request)
        session_id = request.cookies.get(COOKIE)
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
                signed_out = await self._read_until_closed(ws, session_id)
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if signed_out and not ws.closed:
                # Closed here, by the task that reads, once nothing else is sending.
                await ws.close(code=4401, message=b"signed out")
        return ws

    async def _read_until_closed(self, ws: web.WebSocketResponse, session_id: str | None) -> bool:
        """Read the socket until the client goes; True if the session ended first."""
        loop = asyncio.get_running_loop()
        next_check = loop.time() + self.session_recheck_seconds
        while not ws.closed:
            try:
                frame = await ws.receive(timeout=max(0.0, next_check - loop.time()))
            except TimeoutError:
                frame = None
            if frame is not None and frame.type in (
                WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR
            ):
                return False
            if loop.time() >= next_check:
                if await self._accounts().person(session_id) is None:
                    return True
                next_check = loop.time() + self.session_recheck_seconds
        return False
