"""Rate limits and client addresses, in process, in bounded memory.

Used for everything a stranger can repeat cheaply: creating widget conversations, sending
messages, opening sockets, guessing an inbox login. A limit is per process: with N instances a
client gets at most N times the rate, which still turns a flood into a trickle and needs no
shared store. Memory is bounded: a key whose bucket has refilled is forgotten, and past
`max_keys` the least recently seen key is dropped (which at worst forgives that one client)."""

from __future__ import annotations

import ipaddress
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_UNITS = {
    "s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0,
    "m": 60.0, "min": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hour": 3600.0, "hours": 3600.0,
    "d": 86400.0, "day": 86400.0, "days": 86400.0,
}  # fmt: skip
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*([a-z]+)\s*$")


@dataclass(frozen=True)
class Rate:
    """`count` events per `per` seconds, with bursts of up to `count`."""

    count: int
    per: float

    @classmethod
    def parse(cls, text: str) -> Rate:
        """`30/minute`, `5/10s`, `1000/hour`, `0/minute` (0 turns the limit off)."""
        m = _RATE.match(text.lower())
        if not m or m.group(3) not in _UNITS:
            raise ValueError(f"{text!r} is not a rate like 30/minute, 5/10s or 1000/hour")
        per = float(m.group(2) or 1) * _UNITS[m.group(3)]
        if per <= 0:
            raise ValueError(f"{text!r}: the period must be longer than 0")
        return cls(int(m.group(1)), per)

    @property
    def enabled(self) -> bool:
        return self.count > 0

    def __str__(self) -> str:
        return f"{self.count}/{self.per:g}s"


class RateLimiter:
    """A token bucket per key: `rate.count` at once, then one more every `per/count` seconds.

    `hit(key)` takes a token and returns 0.0, or returns how many seconds until one is free
    (for `Retry-After`) without taking anything, so a client that keeps hammering while limited
    does not push its own recovery further away."""

    def __init__(
        self,
        rate: Rate | str,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = Rate.parse(rate) if isinstance(rate, str) else rate
        self.max_keys = max_keys
        self.clock = clock
        # key -> (tokens, last update); ordered by last update, oldest first.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def hit(self, key: str, cost: float = 1.0) -> float:
        if not self.rate.enabled:
            return 0.0
        now = self.clock()
        self._evict(now)
        capacity = float(self.rate.count)
        per_token = self.rate.per / self.rate.count
        tokens, last = self._buckets.pop(key, (capacity, now))
        tokens = min(capacity, tokens + (now - last) / per_token)
        if tokens >= cost:
            tokens -= cost
            wait = 0.0
        else:
            wait = (cost - tokens) * per_token
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait

    def retry_after(self, key: str, cost: float = 1.0) -> int:
        """`hit`, as the whole seconds a `Retry-After` header takes (0 when allowed)."""
        wait = self.hit(key, cost)
        return max(1, math.ceil(wait)) if wait > 0 else 0

    def forget(self, key: str) -> None:
        """Clear a key (a successful login wipes its failures)."""
        self._buckets.pop(key, None)

    def _evict(self, now: float) -> None:
        # A bucket untouched for a whole period has refilled: the same as no bucket at all.
        while self._buckets:
            key, (_, last) = next(iter(self._buckets.items()))
            if now - last < self.rate.per:
                break
            del self._buckets[key]


class SlotLimit:
    """At most `limit` of something open at once per key (sockets per conversation)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, int] = {}

    def count(self, key: str) -> int:
        return self._open.get(key, 0)

    def try_acquire(self, key: str) -> bool:
        n = self._open.get(key, 0)
        if self.limit > 0 and n >= self.limit:
            return False
        self._open[key] = n + 1
        return True

    def release(self, key: str) -> None:
        n = self._open.get(key, 0) - 1
        if n > 0:
            self._open[key] = n
        else:
            self._open.pop(key, None)

    @contextmanager
    def hold(self, key: str) -> Iterator[bool]:
        """`with slots.hold(k) as ok:` releases on the way out only what it acquired."""
        ok = self.try_acquire(key)
        try:
            yield ok
        finally:
            if ok:
                self.release(key)


def parse_networks(spec: str | Iterable[str] | None) -> tuple[Network, ...]:
    """`TRUSTED_PROXIES`: comma-separated addresses or CIDR ranges (`10.0.0.0/8, 127.0.0.1`)."""
    if not spec:
        return ()
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    return tuple(ipaddress.ip_network(item.strip(), strict=False) for item in items if item.strip())


class _Request(Protocol):
    """What `client_address` needs of a request (aiohttp's `web.Request` has both)."""

    @property
    def remote(self) -> str | None: ...

    @property
    def headers(self) -> Mapping[str, str]: ...


def _address(text: str) -> Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        return addr.ipv4_mapped
    return addr


def _trusted(addr: Address, trusted: tuple[Network, ...]) -> bool:
    return any(addr.version == net.version and addr in net for net in trusted)


def client_address(request: _Request, trusted_proxies: tuple[Network, ...] = ()) -> str:
    """The address a limit should count against.

    `X-Forwarded-For` is believed only when the peer itself is a trusted proxy, and then read
    from the right: each trusted proxy appends the address it saw, so the rightmost address that
    is not one of ours is the client; anything left of it may be made up by the client."""
    peer_text = request.remote or ""
    peer = _address(peer_text)
    if peer is None:
        return peer_text or "unknown"
    if not trusted_proxies or not _trusted(peer, trusted_proxies):
        return str(peer)
    getall = getattr(request.headers, "getall", None)
    values = (
        getall("X-Forwarded-For", []) if getall else [request.headers.get("X-Forwarded-For", "")]
    )
    hops = [h for value in values for h in value.split(",") if h.strip()]
    client = peer
    for hop in reversed(hops):
        addr = _address(hop)
        if addr is None:
            break  # garbage: stop at the last address a trusted hop vouched for
        client = addr
        if not _trusted(addr, trusted_proxies):
            break
    return str(client)
