"""The in-process rate limiter and the client address it counts against (core/limits.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from multidict import CIMultiDict

from core.limits import Rate, RateLimiter, SlotLimit, client_address, parse_networks


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeRequest:
    remote: str | None
    headers: CIMultiDict[str] = field(default_factory=CIMultiDict)


def test_rates_parse() -> None:
    assert Rate.parse("30/minute") == Rate(30, 60.0)
    assert Rate.parse("5/10s") == Rate(5, 10.0)
    assert Rate.parse(" 1000 / hour ") == Rate(1000, 3600.0)
    assert not Rate.parse("0/minute").enabled
    for bad in ("30", "thirty/minute", "30/fortnight", "-1/minute", "5/0s"):
        with pytest.raises(ValueError):
            Rate.parse(bad)


def test_a_burst_then_one_per_interval_with_the_wait_to_announce() -> None:
    clock = Clock()
    limiter = RateLimiter("3/minute", clock=clock)
    assert [limiter.hit("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.hit("a") == pytest.approx(20.0)  # one token every 20 s
    assert limiter.retry_after("a") == 20
    assert limiter.hit("b") == 0.0  # keys are independent
    clock.now += 19.5
    assert limiter.retry_after("a") == 1  # refused calls did not push recovery away
    clock.now += 0.5
    assert limiter.hit("a") == 0.0
    assert limiter.hit("a") > 0


def test_memory_is_bounded() -> None:
    clock = Clock()
    limiter = RateLimiter("2/minute", clock=clock, max_keys=100)
    for i in range(1000):
        limiter.hit(f"k{i}")
    assert len(limiter) == 100
    clock.now += 61  # every bucket has refilled: nothing left worth remembering
    limiter.hit("new")
    assert len(limiter) == 1


def test_a_zero_rate_is_off_and_forget_clears() -> None:
    limiter = RateLimiter("0/minute")
    assert all(limiter.hit("a") == 0.0 for _ in range(100))
    limiter = RateLimiter("1/hour")
    limiter.hit("a")
    assert limiter.hit("a") > 0
    limiter.forget("a")
    assert limiter.hit("a") == 0.0


def test_slots() -> None:
    slots = SlotLimit(2)
    with slots.hold("c") as one, slots.hold("c") as two, slots.hold("c") as three:
        assert (one, two, three) == (True, True, False)
        assert slots.count("c") == 2
    assert slots.count("c") == 0


def _req(peer: str, *xff: str) -> FakeRequest:
    headers: CIMultiDict[str] = CIMultiDict()
    for value in xff:
        headers.add("X-Forwarded-For", value)
    return FakeRequest(peer, headers)


def test_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy() -> None:
    assert client_address(_req("203.0.113.9", "1.2.3.4")) == "203.0.113.9"
    trusted = parse_networks("10.0.0.0/8, 127.0.0.1")
    assert client_address(_req("203.0.113.9", "1.2.3.4"), trusted) == "203.0.113.9"


def test_behind_trusted_proxies_the_rightmost_untrusted_hop_is_the_client() -> None:
    trusted = parse_networks("10.0.0.0/8,127.0.0.1")
    # The client made up "6.6.6.6"; the first proxy appended what it saw (198.51.100.7).
    assert (
        client_address(_req("10.0.0.2", "6.6.6.6, 198.51.100.7, 10.0.0.5"), trusted)
        == "198.51.100.7"
    )
    assert client_address(_req("127.0.0.1", "6.6.6.6", "198.51.100.7"), trusted) == "198.51.100.7"
    assert client_address(_req("10.0.0.2"), trusted) == "10.0.0.2"  # no header: the proxy itself
    assert client_address(_req("10.0.0.2", "garbage, 198.51.100.7"), trusted) == "198.51.100.7"
    assert client_address(_req("10.0.0.2", "198.51.100.7, not-an-ip"), trusted) == "10.0.0.2"
    assert client_address(_req("10.0.0.2", "[2001:db8::1]:443"), trusted) == "2001:db8::1"
    assert client_address(_req("::ffff:10.0.0.2", "198.51.100.8"), trusted) == "198.51.100.8"


def test_no_peer() -> None:
    assert client_address(FakeRequest(None)) == "unknown"
