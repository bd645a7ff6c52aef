"""Token buckets keyed by destination, so a burst is paced below the platform's limit instead of
turning into a storm of 429s (Slack: ~1 post/s per channel; Telegram: ~1/s per chat, 30/s total)."""

from __future__ import annotations

from dataclasses import dataclass

from core.clock import SYSTEM_CLOCK, Clock


@dataclass
class Bucket:
    rate: float  # tokens per second
    burst: float
    tokens: float
    stamp: float


class Pacer:
    def __init__(self, clock: Clock = SYSTEM_CLOCK) -> None:
        self._clock = clock.monotonic
        self._limits: dict[str, tuple[float, float]] = {}
        self._shared: dict[str, float] = {}
        self._buckets: dict[str, Bucket] = {}
        self._blocked_until: dict[str, float] = {}

    def limit(self, prefix: str, rate: float, burst: float = 1.0, *, shared: bool = False) -> None:
        """Keys starting with `prefix` (up to the first ':') get this rate. `shared`: the limit
        is the platform's for all of us, so several instances keep it together (a slot per
        send in the database) rather than each keeping it alone."""
        self._limits[prefix] = (rate, burst)
        if shared:
            self._shared[prefix] = rate

    def shared_rates(self) -> dict[str, float]:
        return dict(self._shared)

    def _bucket(self, key: str, now: float) -> Bucket | None:
        prefix = key.split(":", 1)[0]
        if prefix not in self._limits:
            return None
        b = self._buckets.get(key)
        if b is None:
            rate, burst = self._limits[prefix]
            b = self._buckets[key] = Bucket(rate, burst, burst, now)
        else:
            b.tokens = min(b.burst, b.tokens + (now - b.stamp) * b.rate)
            b.stamp = now
        return b

    def wait_time(self, keys: list[str]) -> float:
        """Seconds until every key has a token (0 = go now). Does not take tokens."""
        now = self._clock()
        wait = 0.0
        for key in keys:
            wait = max(wait, self._blocked_until.get(key, 0.0) - now)
            b = self._bucket(key, now)
            if b is not None and b.tokens < 1.0:
                wait = max(wait, (1.0 - b.tokens) / b.rate)
        return max(wait, 0.0)

    def take(self, keys: list[str]) -> None:
        now = self._clock()
        for key in keys:
            b = self._bucket(key, now)
            if b is not None:
                b.tokens -= 1.0

    def block(self, keys: list[str], seconds: float) -> None:
        """The platform said Retry-After: nothing more to these keys until then."""
        until = self._clock() + seconds
        for key in keys:
            self._blocked_until[key] = max(self._blocked_until.get(key, 0.0), until)
            b = self._buckets.get(key)
            if b is not None:
                b.tokens = min(b.tokens, 0.0)
