"""Named staff accounts for the web inbox: one-time login links, server-side sessions, removal.

A person signs in once with a link (or token) that `handoff staff add NAME` prints; that makes a
session whose random id lives only in an HttpOnly cookie. The database keeps sha256 hashes of
both secrets: they are 256-bit random values, so a plain hash is enough (there is nothing to
guess), and a copy of the database signs nobody in. Everything a person does in the inbox is
recorded under the account's name, never a name the browser sends.

The shared `INBOX_TOKEN`, when set, is a bootstrap: it signs in as the account "admin", who can
add and remove staff from the inbox itself."""

from __future__ import annotations

import hashlib
import math
import re
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage import repo
from storage.models import utcnow

ADMIN_NAME = "admin"
MIN_SECRET_BITS = 128
MAX_NAME = 100


class StaffError(Exception):
    """A request about staff that cannot be done as asked (a bad or taken name, say)."""


@dataclass(frozen=True)
class Person:
    """Who a session belongs to."""

    staff_id: int
    name: str
    is_admin: bool


@dataclass(frozen=True)
class Invite:
    """A one-time login for `name`: show it once, it is stored only as a hash."""

    name: str
    token: str
    expires_at: datetime
    created: bool  # False when an existing account got a fresh link

    def link(self, base_url: str) -> str:
        """The sign-in link. The token rides in the fragment, which browsers never send to a
        server (so it reaches no access log or proxy), and the page removes it after use."""
        return f"{base_url.rstrip('/')}/inbox#login={self.token}"


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_bits(secret: str) -> float:
    """A generous estimate of a secret's entropy: its length times the bits of the alphabet it
    draws from (hex, or the character classes it uses). Secrets of a handful of distinct
    characters ("aaaa…", "abab…") count only those characters, whatever their length."""
    if not secret:
        return 0.0
    if re.fullmatch(r"[0-9a-f]+|[0-9A-F]+", secret):
        alphabet = 16
    else:
        classes = (string.digits, string.ascii_lowercase, string.ascii_uppercase)
        alphabet = sum(len(c) for c in classes if any(ch in c for ch in secret))
        if any(not ch.isascii() or not ch.isalnum() for ch in secret):
            alphabet += 33
    distinct = len(set(secret))
    if distinct < 10:
        alphabet = min(alphabet, distinct)
    return len(secret) * math.log2(alphabet) if alphabet > 1 else 0.0


def weak_secret_problem(name: str, secret: str) -> str | None:
    """Why `secret` may not guard the inbox, or None when it is strong enough."""
    bits = secret_bits(secret)
    if bits >= MIN_SECRET_BITS:
        return None
    return (
        f"{name} is too weak (about {bits:.0f} bits; at least {MIN_SECRET_BITS} are needed): "
        "use a random value such as `openssl rand -hex 32` or "
        "`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`"
    )


def clean_name(name: str) -> str:
    name = " ".join(str(name or "").split())
    if not name:
        raise StaffError("A staff account needs a name.")
    if len(name) > MAX_NAME:
        raise StaffError(f"A name has at most {MAX_NAME} characters.")
    if any(not ch.isprintable() for ch in name):
        raise StaffError("A name cannot contain control characters.")
    return name


class StaffAccounts:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        bootstrap_token: str = "",
        session_lifetime: timedelta = timedelta(days=14),
        link_lifetime: timedelta = timedelta(hours=72),
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessions = sessions
        self.bootstrap_token = bootstrap_token
        self.session_lifetime = session_lifetime
        self.link_lifetime = link_lifetime
        self.clock = clock

    # ---------------------------------------------------------------- accounts

    async def add(self, name: str, *, _retry: bool = True) -> Invite:
        """Create an account with a one-time login, or give an existing one a fresh login (the
        previous link stops working; signed-in sessions stay)."""
        name = clean_name(name)
        if repo.staff_key(name) == ADMIN_NAME:
            raise StaffError(f'"{ADMIN_NAME}" is the INBOX_TOKEN account; pick another name.')
        token = secrets.token_urlsafe(32)
        expires = self.clock() + self.link_lifetime
        try:
            async with self.sessions() as s, s.begin():
                staff = await repo.find_staff(s, name)
                created = staff is None
                if staff is None:
                    staff = await repo.add_staff(s, name)
                staff.login_hash = digest(token)
                staff.login_expires_at = expires
                name = staff.name
        except IntegrityError:  # added by someone else at the same moment: now it exists
            if not _retry:
                raise
            return await self.add(name, _retry=False)
        return Invite(name, token, expires, created)

    async def list(self) -> list[repo.StaffView]:
        async with self.sessions() as s:
            return await repo.list_staff(s, self.clock())

    async def remove(self, name: str) -> str | None:
        """Delete the account and end every session it has: its next request is refused.
        The account's name as it was stored, or None if there was none."""
        async with self.sessions() as s, s.begin():
            staff = await repo.find_staff(s, name)
            if staff is None:
                return None
            await repo.remove_staff(s, staff.id)
            return staff.name

    # ---------------------------------------------------------------- sessions

    async def login(self, secret: str) -> tuple[Person, str] | None:
        """A one-time login token (or the bootstrap token) for a new session id, or None."""
        if not secret or len(secret) > 512:
            return None
        now = self.clock()
        async with self.sessions() as s, s.begin():
            if self.bootstrap_token and secrets.compare_digest(
                secret.encode(), self.bootstrap_token.encode()
            ):
                person = await self._admin(s)
            else:
                view = await repo.take_login(s, digest(secret), now)
                if view is None:
                    return None
                person = Person(view.id, view.name, view.is_admin)
            await repo.prune_staff_sessions(s, now)  # expired ones go as new ones come
            session_id = secrets.token_urlsafe(32)
            await repo.add_staff_session(
                s, person.staff_id, digest(session_id), now + self.session_lifetime
            )
        return person, session_id

    async def _admin(self, s: AsyncSession) -> Person:
        staff = await repo.find_staff(s, ADMIN_NAME)
        if staff is None:
            staff = await repo.add_staff(s, ADMIN_NAME, is_admin=True)
        elif not staff.is_admin:
            staff.is_admin = True
        return Person(staff.id, staff.name, True)

    async def person(self, session_id: str | None) -> Person | None:
        """Who holds this session, if it is still valid. A session in use is renewed once half
        its lifetime has passed, so a person working every day stays signed in."""
        if not session_id or len(session_id) > 128:
            return None
        now = self.clock()
        key = digest(session_id)
        async with self.sessions() as s:
            found = await repo.session_staff(s, key, now)
        if found is None:
            return None
        staff, expires = found
        if expires - now < self.session_lifetime / 2:
            async with self.sessions() as s, s.begin():
                await repo.extend_staff_session(s, key, now + self.session_lifetime)
        return Person(staff.id, staff.name, staff.is_admin)

    async def logout(self, session_id: str | None) -> None:
        if not session_id:
            return
        async with self.sessions() as s, s.begin():
            await repo.delete_staff_session(s, digest(session_id))

    async def prune(self) -> int:
        async with self.sessions() as s, s.begin():
            return await repo.prune_staff_sessions(s, self.clock())
