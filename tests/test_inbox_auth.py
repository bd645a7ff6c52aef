"""Who may use the web inbox, and under whose name: named staff accounts with one-time logins,
server-side sessions in an HttpOnly cookie, a bootstrap INBOX_TOKEN only if it is strong, and
sign-in guessing throttled per client address. Everything over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import WSServerHandshakeError
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from bot.app import build_app
from bot.cli import main
from core.bridge import ConfigurationError
from core.staff import secret_bits
from storage.models import StaffSession, StateEvent, utcnow
from tests.conftest import INBOX_COOKIE, INBOX_TOKEN, inbox_login, make_settings, services

STATIC = Path(__file__).resolve().parent.parent / "bridges" / "webinbox" / "static"


async def _handed_off(client: TestClient) -> tuple[int, str]:
    data = await (await client.post("/api/conversations", json={})).json()
    cid, token = data["conversation_id"], data["token"]
    await client.post(
        f"/api/conversations/{cid}/messages?token={token}",
        json={"text": "Can I talk to a person please?", "client_id": "1"},
    )
    await services(client).core.idle()
    return cid, token


async def _login(client: TestClient, token: str, **headers: str) -> aiohttp.ClientResponse:
    return await client.post("/inbox/api/login", json={"token": token}, headers=headers)


# ---------------------------------------------------------------- the bootstrap token


@pytest.mark.parametrize("weak", ["a", "inbox-secret", "correct horse battery", "a" * 64, "ab" * 40, "0123456789abcdef"])
def test_a_guessable_inbox_token_is_refused_at_start(
    weak: str, tmp_path: Path, store_config: Any
) -> None:
    for demo in (False, True):
        with pytest.raises(ConfigurationError, match="INBOX_TOKEN is too weak"):
            build_app(make_settings(tmp_path, "http://127.0.0.1:9", inbox_token=weak, demo=demo), store_config)


def test_handoff_run_refuses_a_weak_inbox_token_with_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/x.db")
    monkeypatch.setenv("INBOX_TOKEN", "a")
    assert main(["run", "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert "refusing to start" in err and "INBOX_TOKEN is too weak" in err and "128" in err


def test_random_tokens_of_128_bits_pass_and_shorter_ones_do_not() -> None:
    assert secret_bits(secrets.token_urlsafe(16)) >= 128  # 22 characters of base64url
    assert secret_bits(secrets.token_hex(16)) >= 128  # 32 hex digits
    assert secret_bits(INBOX_TOKEN) >= 128
    assert secret_bits(secrets.token_hex(15)) < 128
    assert secret_bits(secrets.token_urlsafe(12)) < 128


async def test_the_bootstrap_token_signs_in_as_admin_and_is_not_a_bearer_token(make_client: Any) -> None:
    client = await make_client()
    for headers in ({"Authorization": f"Bearer {INBOX_TOKEN}"}, {}):
        assert (await client.get("/inbox/api/conversations", headers=headers)).status == 401
    resp = await _login(client, INBOX_TOKEN)
    assert resp.status == 200 and await resp.json() == {"name": "admin", "admin": True}
    assert (await client.get("/inbox/api/me")).status == 200
    # Staff accounts are not admins: they cannot manage the team.
    maria = await inbox_login(client, "Maria Lopez")
    assert (await client.post("/inbox/api/staff", json={"name": "Eve"}, headers=maria)).status == 403
    assert (await client.get("/inbox/api/staff", headers=maria)).status == 403


# ---------------------------------------------------------------- guessing


async def test_sign_in_guessing_is_throttled_per_client_address(make_client: Any) -> None:
    client = await make_client(inbox_login_limit="5/15minutes", trusted_proxies="127.0.0.1")
    attacker = {"X-Forwarded-For": "203.0.113.7"}
    for i in range(5):
        resp = await _login(client, f"guess-{i}", **attacker)
        assert resp.status == 401
    limited = await _login(client, "guess-6", **attacker)
    assert limited.status == 429
    assert int(limited.headers["Retry-After"]) >= 1
    # While limited, even the right token is not tried: guessing cannot go on at all.
    assert (await _login(client, INBOX_TOKEN, **attacker)).status == 429
    # Someone else (another address behind the same trusted proxy) is unaffected.
    assert (await _login(client, INBOX_TOKEN, **{"X-Forwarded-For": "198.51.100.2"})).status == 200


async def test_a_forged_forwarded_for_does_not_escape_the_limit(make_client: Any) -> None:
    client = await make_client(inbox_login_limit="3/15minutes")  # no trusted proxies
    statuses = [
        (await _login(client, f"guess-{i}", **{"X-Forwarded-For": f"198.51.100.{i}"})).status
        for i in range(6)
    ]
    assert statuses == [401, 401, 401, 429, 429, 429]


async def test_a_success_clears_the_address_count(make_client: Any) -> None:
    client = await make_client(inbox_login_limit="3/15minutes")
    for _ in range(2):
        assert (await _login(client, "typo")).status == 401
    assert (await _login(client, INBOX_TOKEN)).status == 200
    for _ in range(3):
        assert (await _login(client, "typo")).status == 401


# ---------------------------------------------------------------- one-time logins and sessions


async def test_a_login_link_works_once_and_its_session_is_a_hashed_server_side_row(make_client: Any) -> None:
    client = await make_client()
    invite = await services(client).staff.add("Maria Lopez")
    assert invite.link("https://support.example.com") == f"https://support.example.com/inbox#login={invite.token}"
    resp = await _login(client, invite.token)
    assert resp.status == 200 and (await resp.json())["name"] == "Maria Lopez"
    session_id = resp.cookies[INBOX_COOKIE].value
    assert (await _login(client, invite.token)).status == 401  # used up
    async with services(client).core.sessions() as s:
        stored = list(await s.scalars(select(StaffSession.id_hash)))
    assert stored == [hashlib.sha256(session_id.encode()).hexdigest()]
    assert session_id not in stored


async def test_an_expired_login_link_is_refused(make_client: Any) -> None:
    client = await make_client()
    staff = services(client).staff
    staff.link_lifetime = timedelta(seconds=-1)
    invite = await staff.add("Maria Lopez")
    assert (await _login(client, invite.token)).status == 401


async def test_a_session_expires_unused_and_renews_while_in_use(make_client: Any) -> None:
    client = await make_client(inbox_session_days=14)
    staff = services(client).staff
    maria = await inbox_login(client, "Maria Lopez")
    start = utcnow()

    def at(days: float) -> None:
        staff.clock = lambda: start + timedelta(days=days)

    at(10)  # past half its life: this use renews it, and the page's cookie with it
    resp = await client.get("/inbox/api/me", headers=maria)
    assert resp.status == 200 and "Max-Age=1209600" in resp.headers["Set-Cookie"]
    at(20)  # beyond the first 14 days, within the renewed ones
    assert (await client.get("/inbox/api/me", headers=maria)).status == 200
    at(20 + 15)  # then 15 days unused
    assert (await client.get("/inbox/api/me", headers=maria)).status == 401


async def test_the_session_cookie_is_httponly_strict_and_secure_over_https(make_client: Any) -> None:
    client = await make_client(trusted_proxies="127.0.0.1/32")
    cookie = (await _login(client, INBOX_TOKEN)).headers["Set-Cookie"]
    attrs = {a.strip().split("=")[0].lower() for a in cookie.split(";")}
    assert {"httponly", "samesite", "path", "max-age"} <= attrs and "secure" not in attrs  # plain http
    assert re.search(r"SameSite=Strict", cookie) and re.search(r"Path=/inbox(;|$)", cookie)
    # Behind the trusted proxy that terminated TLS: Secure.
    cookie = (await _login(client, INBOX_TOKEN, **{"X-Forwarded-Proto": "https"})).headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie


async def test_x_forwarded_proto_from_an_untrusted_peer_is_ignored(make_client: Any) -> None:
    client = await make_client()  # no trusted proxies: the header could be anyone's
    cookie = (await _login(client, INBOX_TOKEN, **{"X-Forwarded-Proto": "https"})).headers["Set-Cookie"]
    assert "Secure" not in cookie


async def test_logout_ends_the_session(make_client: Any) -> None:
    client = await make_client()
    maria = await inbox_login(client, "Maria Lopez")
    assert (await client.get("/inbox/api/me", headers=maria)).status == 200
    resp = await client.post("/inbox/api/logout", json={}, headers=maria)
    assert resp.status == 200
    assert resp.cookies[INBOX_COOKIE].value == ""  # the browser drops it
    assert (await client.get("/inbox/api/me", headers=maria)).status == 401
    assert (await client.get("/inbox/api/conversations", headers=maria)).status == 401


async def test_a_removed_person_loses_access_at_once_including_an_open_socket(make_client: Any) -> None:
    client = await make_client()
    services(client).bridges["web"].routes.session_recheck_seconds = 0.1
    cid, _ = await _handed_off(client)
    maria = await inbox_login(client, "Maria Lopez")
    admin = {"Cookie": f"{INBOX_COOKIE}={(await _login(client, INBOX_TOKEN)).cookies[INBOX_COOKIE].value}"}
    client.session.cookie_jar.clear()  # two people on one client: each request names its own
    ws = await client.ws_connect("/inbox/ws", headers=maria)
    assert (await client.get(f"/inbox/api/conversations/{cid}", headers=maria)).status == 200
    assert (await client.post("/inbox/api/staff/remove", json={"name": "maria  lopez"}, headers=admin)).status == 200
    assert (await client.get(f"/inbox/api/conversations/{cid}", headers=maria)).status == 401
    reply = await client.post(f"/inbox/api/conversations/{cid}/reply", json={"text": "still here"}, headers=maria)
    assert reply.status == 401

    async def closed() -> aiohttp.WSMessage:
        while (msg := await ws.receive()).type == aiohttp.WSMsgType.TEXT:
            continue  # events queued before the removal
        return msg

    end = await asyncio.wait_for(closed(), 5)
    assert end.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), end
    assert ws.close_code == 4401
    with pytest.raises(WSServerHandshakeError) as refused:
        await client.ws_connect("/inbox/ws", headers=maria)
    assert refused.value.status == 401
    assert [m.text for m in await services(client).core.history(cid, include_notes=True) if m.role == "human"] == []


async def test_staff_commands_add_list_remove(make_client: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    client = await make_client()
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/handoff.db")  # the service's
    monkeypatch.setenv("PUBLIC_URL", "https://support.example.com")
    assert await asyncio.to_thread(main, ["staff", "add", "Lee Chan"]) == 0
    out = capsys.readouterr().out
    [link] = re.findall(r"https://support\.example\.com/inbox#login=(\S+)", out)
    assert "?" not in out and link in out.split("token alone")[1]  # the bare token, for pasting
    resp = await _login(client, link)
    assert resp.status == 200 and (await resp.json())["name"] == "Lee Chan"
    lee = {"Cookie": f"{INBOX_COOKIE}={resp.cookies[INBOX_COOKIE].value}"}
    assert await asyncio.to_thread(main, ["staff", "list"]) == 0
    assert re.search(r"Lee Chan\t1 signed-in session\t", capsys.readouterr().out)
    assert await asyncio.to_thread(main, ["staff", "add", "admin"]) == 2  # the INBOX_TOKEN account
    assert await asyncio.to_thread(main, ["staff", "remove", "Lee Chan"]) == 0
    assert (await client.get("/inbox/api/me", headers=lee)).status == 401
    assert await asyncio.to_thread(main, ["staff", "remove", "Lee Chan"]) == 1


# ---------------------------------------------------------------- authorship


async def test_the_author_is_the_signed_in_person_whatever_the_body_says(make_client: Any) -> None:
    client = await make_client()
    cid, token = await _handed_off(client)
    maria = await inbox_login(client, "Maria Lopez")
    resp = await client.post(
        f"/inbox/api/conversations/{cid}/reply",
        json={"text": "Hi, how can I help?", "author": "The CEO"},
        headers=maria,
    )
    assert resp.status == 200 and (await resp.json())["message"]["author"] == "Maria Lopez"
    resp = await client.post(
        f"/inbox/api/conversations/{cid}/command",
        json={"command": "tag", "args": ["+vip"], "author": "Mallory", "actor": "Mallory"},
        headers=maria,
    )
    assert resp.status == 200
    seen = (await (await client.get(f"/api/conversations/{cid}/messages?token={token}")).json())["messages"]
    assert [m["author"] for m in seen if m["role"] == "human"] == ["Maria Lopez"]
    detail = await (await client.get(f"/inbox/api/conversations/{cid}", headers=maria)).json()
    assert detail["conversation"]["owner"] == "Maria Lopez"
    async with services(client).core.sessions() as s:
        actors = set(await s.scalars(select(StateEvent.actor).where(StateEvent.conversation_id == cid)))
    assert "Mallory" not in actors and "The CEO" not in actors and "Maria Lopez" in actors


# ---------------------------------------------------------------- no tokens in URLs, CSP


async def test_no_token_in_urls_or_page_storage(make_client: Any) -> None:
    client = await make_client()
    assert (await client.get(f"/inbox/api/conversations?token={INBOX_TOKEN}")).status == 401
    with pytest.raises(WSServerHandshakeError) as refused:
        await client.ws_connect(f"/inbox/ws?token={INBOX_TOKEN}")
    assert refused.value.status == 401
    for page in ("inbox.js", "stats.js"):
        source = (STATIC / page).read_text()
        assert "localStorage" not in source and "sessionStorage" not in source
        assert "token=" not in source and "Authorization" not in source


@pytest.mark.parametrize("path", ["/inbox", "/inbox/stats", "/inbox/api/me", "/inbox/static/inbox.js"])
async def test_inbox_pages_carry_a_csp_that_forbids_framing_and_inline_script(make_client: Any, path: str) -> None:
    client = await make_client()
    resp = await client.get(path)
    csp = resp.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


def test_the_pages_have_no_inline_script_or_style_for_the_csp_to_block() -> None:
    for page in ("inbox.html", "stats.html"):
        html = (STATIC / page).read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), page
        assert not re.search(r"\son[a-z]+\s*=", html, re.I), page
        assert "<style" not in html and "style=" not in html, page
        assert "javascript:" not in html, page
