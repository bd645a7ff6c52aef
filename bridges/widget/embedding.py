"""The widget on a store's own site: which pages may embed it, who a shopper is, how much a
stranger may ask of the service.

A browser tells us which page is calling (`Origin`); only listed stores' pages (and the
service's own) get CORS headers, and a socket or request from any other page is refused, so
another site cannot run chats in its visitors' browsers. Non-browser clients send no `Origin`:
they could send any, so the limits, not the origin, are what holds them."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from core.limits import Network, Rate, RateLimiter, SlotLimit, parse_networks
from domain.settings import Settings

_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize_origin(text: str) -> str | None:
    """`scheme://host[:port]` as a browser sends it in `Origin` (lower case, no default port),
    or None for anything that is not an origin (a path, a query, no host)."""
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def sign_email(secret: str | bytes, email: str) -> str:
    """What the store's server puts in `data-user-hash`: hex HMAC-SHA256 of the email."""
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, email.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


@dataclass
class WidgetPolicy:
    """Everything the widget's routes enforce, built once from the settings."""

    origins: frozenset[str] = frozenset()
    any_origin: bool = False
    public_origin: str | None = None
    identity_secret: bytes | None = None
    create_limiter: RateLimiter = field(default_factory=lambda: RateLimiter("30/minute"))
    message_limiter: RateLimiter = field(default_factory=lambda: RateLimiter("30/minute"))
    sockets: SlotLimit = field(default_factory=lambda: SlotLimit(5))
    trusted_proxies: tuple[Network, ...] = ()
    history_page: int = 100
    demo: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> WidgetPolicy:
        problems = widget_problems(settings)
        if problems:
            raise ValueError("; ".join(problems))
        items = [o.strip() for o in settings.widget_origins.split(",") if o.strip()]
        secret = settings.widget_identity_secret
        return cls(
            origins=frozenset(o for o in (normalize_origin(i) for i in items if i != "*") if o),
            any_origin="*" in items,
            public_origin=normalize_origin(settings.public_url) if settings.public_url else None,
            identity_secret=secret.get_secret_value().encode() if secret else None,
            create_limiter=RateLimiter(settings.widget_create_limit),
            message_limiter=RateLimiter(settings.widget_message_limit),
            sockets=SlotLimit(settings.widget_socket_limit),
            trusted_proxies=parse_networks(settings.trusted_proxies),
            history_page=settings.widget_history_page,
            demo=settings.demo,
        )

    def allows(self, origin: str, host: str | None) -> bool:
        """May a page of `origin` use the widget served at `host` (the request's Host)?"""
        if self.any_origin:
            return True
        normal = normalize_origin(origin)
        if normal is None:  # "null" (a sandboxed frame, a file), or garbage
            return False
        if normal in self.origins or normal == self.public_origin:
            return True
        # The service's own pages: same host and port, whatever the scheme a proxy terminated.
        return bool(host) and urlsplit(normal).netloc == (host or "").lower()

    def verified_email(self, email: str | None, user_hash: str | None) -> bool:
        """True only for an email the store signed with WIDGET_IDENTITY_SECRET (constant time)."""
        if not (self.identity_secret and email and user_hash):
            return False
        expected = sign_email(self.identity_secret, email).encode()
        return hmac.compare_digest(expected, user_hash.strip().lower().encode("utf-8", "replace"))


def widget_problems(settings: Settings) -> list[str]:
    """What is wrong with the widget's settings, in words an operator can act on."""
    problems = []
    items = [o.strip() for o in settings.widget_origins.split(",") if o.strip()]
    for item in items:
        if item == "*":
            if not settings.demo:
                problems.append(
                    "WIDGET_ORIGINS=* lets any website run chats on this service: list the "
                    "store's origins (https://shop.example.com) instead; * is for demo mode only"
                )
        elif normalize_origin(item) is None:
            problems.append(f"WIDGET_ORIGINS: {item!r} is not an origin like https://shop.example.com")
    for name in ("widget_create_limit", "widget_message_limit"):
        try:
            Rate.parse(getattr(settings, name))
        except ValueError as exc:
            problems.append(f"{name.upper()}: {exc}")
    try:
        parse_networks(settings.trusted_proxies)
    except ValueError as exc:
        problems.append(f"TRUSTED_PROXIES: {exc}")
    return problems
