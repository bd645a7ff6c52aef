"""Delivery through the outbox: paced per channel, 429 Retry-After honoured, 5xx and timeouts
retried, ordered per conversation, VIP before backlog, and nothing lost or sent twice across an
outage (or a restart during one)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from core import delivery
from tests.clock import FakeClock
from tests.conftest import eventually
from tests.slack.conftest import INBOX, Harness, slack_settings
from tests.slack.fake_slack import FakeSlack


@pytest.fixture
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Retries after a failure come within 0.1 s instead of seconds: same logic, less waiting."""
    monkeypatch.setattr(delivery, "backoff", lambda attempt, base=1.0, cap=60.0: 0.1)
    yield


def shown(slack: FakeSlack, ts: str) -> list[str]:
    """Each post of a thread, the parent first: its blocks' text, or its text."""
    out = []
    for p in [m for m in slack.parents() if m["ts"] == ts] + slack.posts(thread_ts=ts):
        out.append(json.dumps(p["blocks"]) if p.get("blocks") else p["text"])
    return out


async def assert_each_once_in_order(h: Harness, cid: int, token: str, ts: str) -> None:
    """Every shopper message of the conversation appears in its thread once, in order."""
    msgs = [m["text"] for m in await h.seen_by_shopper(cid, token) if m["role"] == "shopper"]
    posts = shown(h.slack, ts)
    blob = "\n".join(posts)
    where = []
    for text in msgs:
        assert blob.count(text) == 1, (text, posts)
        where.append(blob.index(text))
    assert where == sorted(where)


def on_fake_time(slack: FakeSlack) -> FakeClock:
    """Slack and the service on one clock that moves only when both wait: pacing and
    Retry-After are checked exactly, and take no real time."""
    clock = FakeClock()
    slack.clock = clock.monotonic
    return clock


async def test_paced_below_slacks_limit_no_429_at_all(make_client: Any, slack: FakeSlack) -> None:
    slack.min_interval = 0.1  # Slack allows 10 posts a second per channel here
    h = Harness(await make_client(**slack_settings(slack, slack_post_rate=8.0)), slack)
    convs = [
        await h.shopper(f"Can I talk to a person please? [{i}]", email=f"s{i}@example.com")
        for i in range(4)
    ]
    for cid, _ in convs:
        await h.thread(cid)
    posts = [c for c in slack.calls if c.method == "chat.postMessage"]
    assert len(posts) == 4 and all(c.status == 200 for c in posts)  # one post per ticket
    gaps = [b.at - a.at for a, b in zip(posts, posts[1:], strict=False)]
    assert min(gaps) >= 0.1  # never faster than the channel allows


async def test_429_retry_after_is_honoured_and_nothing_is_lost_or_duplicated(
    make_client: Any, slack: FakeSlack
) -> None:
    clock = on_fake_time(slack)
    slack.min_interval = 0.3  # stricter than our pace: 429s will happen
    slack.retry_after = 1
    h = Harness(
        await make_client(clock=clock, **slack_settings(slack, slack_post_rate=20.0)), slack
    )
    convs = [
        await h.shopper(f"Can I talk to a person please? [{i}]", email=f"s{i}@example.com")
        for i in range(3)
    ]
    for cid, token in convs:
        await h.say(cid, token, f"and one more thing [{cid}]")
    await h.svc.worker.drain(timeout=30)
    limited = [c for c in slack.calls if c.status == 429]
    assert limited and h.svc.worker.stats.rate_limited >= 1
    for hit in limited:  # after a 429, that channel hears nothing until Retry-After has passed
        later = [c for c in slack.calls if c.at > hit.at and c.method == "chat.postMessage"]
        assert later and later[0].at - hit.at >= slack.retry_after - 0.05
    assert len(slack.parents()) == 3
    for cid, token in convs:
        ref = (await h.svc.core.get(cid)).inbox_ref
        assert ref is not None
        await assert_each_once_in_order(h, cid, token, ref["ts"])


async def test_an_outage_queues_everything_and_it_all_goes_out_once_when_slack_is_back(
    make_client: Any, slack: FakeSlack, quick_backoff: None
) -> None:
    h = Harness(await make_client(**slack_settings(slack)), slack)
    before, before_token = await h.shopper("Can I talk to a person please? [before]")
    channel, ts = await h.thread(before)
    slack.fail_status = 500
    during = [
        await h.shopper(f"Can I talk to a person please? [{i}]", email=f"s{i}@example.com")
        for i in range(3)
    ]
    await h.say(before, before_token, "still there? [before]")
    # The reply claims the ticket, so its parent must be edited once Slack is back. (Not
    # `h.reply`: that waits for delivery, which cannot finish while Slack is down.)
    resp = await h.event(h.reply_event(channel, ts, "Yes! Maria here."))
    assert resp.status == 200
    await h.ctx.drain()
    await h.svc.core.idle()
    await eventually(lambda: _failed_calls(slack, 6))
    assert await h.svc.worker.pending() > 0
    assert len(slack.parents()) == 1
    slack.fail_status = None
    await h.svc.worker.drain(timeout=30)
    assert len(slack.parents()) == 4
    # Slack could not say who U1 is during the outage, so the claim names the team.
    assert "claimed by the Flashpoint team" in h.parent_text(ts)
    for cid, token in [(before, before_token), *during]:
        ref = (await h.svc.core.get(cid)).inbox_ref
        assert ref is not None
        await assert_each_once_in_order(h, cid, token, ref["ts"])


async def _failed_calls(slack: FakeSlack, n: int) -> bool:
    return sum(c.status >= 500 for c in slack.calls) >= n


async def test_timeouts_are_retried(
    make_client: Any, slack: FakeSlack, quick_backoff: None
) -> None:
    h = Harness(await make_client(**slack_settings(slack)), slack)
    h.svc.bridges["slack"].client.timeout = 0.2
    slack.stall = 1.0  # Slack holds every call longer than our client waits
    cid, token = await h.shopper("Can I talk to a person please?")
    await eventually(lambda: _failed_calls(slack, 1))
    assert not slack.parents()
    slack.stall = 0.0
    _, ts = await h.thread(cid)
    assert len(slack.parents()) == 1
    await assert_each_once_in_order(h, cid, token, ts)


async def test_an_outage_survives_a_restart(
    make_client: Any, slack: FakeSlack, quick_backoff: None
) -> None:
    slack.fail_status = 503
    first = await make_client(**slack_settings(slack))
    h = Harness(first, slack)
    cid, token = await h.shopper("Can I talk to a person please?")
    await eventually(lambda: _failed_calls(slack, 1))
    await first.close()  # the service stops while Slack is still down
    slack.fail_status = None
    h = Harness(await make_client(**slack_settings(slack)), slack)
    _, ts = await h.thread(cid)
    assert len(slack.parents()) == 1
    await assert_each_once_in_order(h, cid, token, ts)


async def test_vip_handoffs_go_before_the_backlog(make_client: Any, slack: FakeSlack) -> None:
    clock = on_fake_time(slack)
    h = Harness(await make_client(clock=clock, **slack_settings(slack, slack_post_rate=4.0)), slack)
    await clock.stop()  # time stands still while the backlog builds, however loaded the machine
    backlog = [
        (await h.shopper(f"Can I talk to a person please? [{i}]", email=f"s{i}@example.com"))[0]
        for i in range(5)
    ]
    vip, _ = await h.shopper("I'd like to speak to a human", email="vera@example.com", name="Vera")
    already = len(slack.parents())  # the VIP handoff is committed; this much had gone out
    assert already < 4, "the backlog must still be waiting for this test to mean anything"
    clock.run_when_idle(lambda: [*h.svc.worker._tasks, *h.svc.core._tasks])
    await h.svc.worker.drain(timeout=30)
    order = [int(p["text"].split()[0][1:]) for p in slack.parents()]
    assert sorted(order) == sorted([*backlog, vip])
    # Next in line (after at most one post already on its way), ahead of the rest of the backlog.
    assert order.index(vip) <= already + 1 < len(order) - 1


async def test_posts_for_one_conversation_keep_their_order_while_others_interleave(
    make_client: Any, slack: FakeSlack
) -> None:
    h = Harness(await make_client(**slack_settings(slack, slack_post_rate=30.0)), slack)
    a, a_token = await h.shopper("Can I talk to a person please? [a]")
    b, b_token = await h.shopper("Can I talk to a person please? [b]", email="bo@example.com")
    _, ts_a = await h.thread(a)
    _, ts_b = await h.thread(b)
    await asyncio.gather(
        *[h.say(a, a_token, f"a-{i}") for i in range(6)],
    )
    for i in range(6):
        await h.say(b, b_token, f"b-{i}")
    await h.svc.worker.drain()
    for cid, token, ts in ((a, a_token, ts_a), (b, b_token, ts_b)):
        await assert_each_once_in_order(h, cid, token, ts)
    assert INBOX in slack.messages


def test_ticket_edits_do_not_spend_the_channels_post_pace(store_config: Any) -> None:
    """chat.update has its own tier: claiming a ticket must not delay the next thread post."""
    from slack_sdk.web.async_client import AsyncWebClient

    from bridges.slack.inbox import SlackInbox
    from core.pacing import Pacer

    inbox = SlackInbox(AsyncWebClient(token="xoxb-test"), store_config, INBOX)
    pacer = Pacer()
    pacer.limit("slack-channel", 1.0)
    pacer.limit("slack-update", 0.75, burst=5)
    post, edit = inbox.rate_keys(None, "post"), inbox.rate_keys(None, "update")
    pacer.take(edit)
    assert pacer.wait_time(post) == 0
    pacer.take(post)
    assert pacer.wait_time(post) > 0 and pacer.wait_time(edit) == 0


async def test_a_post_held_on_its_way_does_not_make_the_next_one_arrive_too_soon(
    store_config: Any,
) -> None:
    """Slack counts posts as they arrive. A post held up on its way (a busy loop, a slow socket)
    must not let the next one, sent on time, arrive less than the pace after it (a 429); and
    when nothing is held up, the pace is exactly the configured one."""
    from slack_sdk.web.async_client import AsyncWebClient

    from bridges.slack.inbox import SlackInbox

    clock = FakeClock()
    inbox = SlackInbox(AsyncWebClient(token="xoxb-test"), store_config, INBOX, post_rate=1.0, clock=clock)
    arrivals: list[float] = []
    on_the_way = iter([0.05, 0.05, 0.05, 0.40, 0.05, 0.05])  # the 4th is held 350 ms longer

    async def api(method: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        await clock.sleep(next(on_the_way))
        arrivals.append(clock.monotonic())
        await clock.sleep(0.05)  # the answer's way back
        return {"ok": True, "ts": f"{len(arrivals)}.0"}

    inbox._api = api  # type: ignore[method-assign]
    for _ in range(6):
        await inbox._call("chat.postMessage", channel=INBOX, text="x")
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    assert min(gaps) >= 1.0 - 1e-9, gaps
    assert gaps[0] == pytest.approx(1.0) and gaps[1] == pytest.approx(1.0)
