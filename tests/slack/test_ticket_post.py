"""One post per ticket: the thread's parent carries the conversation, so a burst of handoffs in
a channel paced at Slack's ~1 post/s costs one post (and one second) each, not two; a long
conversation folds, its beginning in one threaded reply; nothing is shown twice."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from core import delivery
from tests.clock import FakeClock
from tests.conftest import eventually
from tests.slack.conftest import INBOX, Harness, slack_settings
from tests.slack.fake_slack import FakeSlack

ASK = "Can I talk to a person please?"


@pytest.fixture
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(delivery, "backoff", lambda attempt, base=1.0, cap=60.0: 0.1)
    yield


def thread_replies(slack: FakeSlack) -> list[dict[str, Any]]:
    return [m for m in slack.posts() if m.get("thread_ts")]


def inline(parent: dict[str, Any]) -> str:
    """The parent's sections, as one string (what a person reads in the channel)."""
    return "\n".join(
        b["text"]["text"] for b in parent["blocks"] if b["type"] == "section" and "text" in b
    )


async def test_a_burst_of_handoffs_costs_one_post_and_one_pace_slot_each(
    make_client: Any, slack: FakeSlack
) -> None:
    clock = FakeClock()
    slack.clock = clock.monotonic
    slack.min_interval = 0.95  # Slack's ~1 post a second per channel
    h = Harness(
        await make_client(clock=clock, **slack_settings(slack, slack_post_rate=1.0)), slack
    )
    await h.svc.worker.stop()  # the burst arrives before anything goes out
    convs = [
        await h.shopper(
            "How long does delivery to Austria take?", f"{ASK} [{i}]", email=f"s{i}@example.com"
        )
        for i in range(6)
    ]
    await h.svc.worker.drain(timeout=60)
    posts = [c for c in slack.calls if c.method == "chat.postMessage"]
    assert len(posts) == 6 and all(c.status == 200 for c in posts)  # no 429 either
    assert not thread_replies(slack)
    # Each ticket a second after the one before: the history no longer takes a slot between.
    at = [c.at for c in posts]
    assert all(0.95 <= b - a <= 1.1 for a, b in zip(at, at[1:], strict=False)), at
    for i, (cid, _) in enumerate(convs):
        parent = next(p for p in slack.parents() if p["text"].startswith(f"#{cid} "))
        shown = inline(parent)
        question = shown.index("*Shopper:* How long does delivery to Austria take?")
        answer = shown.index("*Assistant:*")
        asked = shown.index(f"*Shopper:* {ASK} [{i}]")
        assert question < answer < asked  # the whole conversation, in order
        assert "minutes" in shown[asked:]  # and what the shopper was told last
        assert "The conversation so far" in json.dumps(parent["blocks"])


async def test_the_ticket_keeps_its_conversation_when_edited_and_later_messages_follow(
    h: Harness,
) -> None:
    cid, token = await h.shopper("What payment methods do you accept?", ASK)
    channel, ts = await h.thread(cid)
    assert not thread_replies(h.slack)
    before = inline(h.parent(ts))
    await h.press("handoff_claim", str(cid), channel, ts, user="U2")
    parent = h.parent(ts)
    assert parent["edits"] >= 1 and "claimed by Sam" in json.dumps(parent["blocks"])
    assert inline(parent) == before  # the edit shows the same messages
    await h.say(cid, token, "thanks, I'll wait")
    await h.svc.worker.drain()
    # What happens after the ticket opened goes into its thread, once each.
    assert [p["text"] for p in thread_replies(h.slack)] == [
        "_Sam from our team has joined the chat._",
        "*Shopper:* thanks, I'll wait",
    ]


async def test_a_long_conversation_folds_its_beginning_into_one_threaded_reply(h: Harness) -> None:
    started = await h.svc.core.start_conversation(
        "widget", name="Ann", email="ann@example.com", with_token=True
    )
    cid, token = started.conversation.id, started.token
    texts = [f"[m{i:02d}] " + ("my parcel went astray again " * 110)[:2900] for i in range(16)]
    for i, text in enumerate(texts):
        await h.svc.core.shopper_message(cid, text, source="widget", platform_id=f"p{i}", answer=False)
    await h.say(cid, token, ASK)
    _, ts = await h.thread(cid)
    [reply] = h.slack.posts(thread_ts=ts)  # the beginning, in one threaded reply
    parent = h.parent(ts)
    assert len(parent["blocks"]) <= 50 and len(reply["blocks"]) <= 50
    for post in (parent, reply):
        sections = [b["text"]["text"] for b in post["blocks"] if b["type"] == "section" and "text" in b]
        assert all(len(x) <= 3000 for x in sections)
        assert sum(len(x) for x in sections) <= 40_000
    earlier, later = reply["text"], inline(parent)
    folded = [t for t in texts if t in earlier]
    assert folded and texts[: len(folded)] == folded  # the first messages...
    assert all(t in later for t in texts[len(folded) :])  # ...the rest inline, with the request
    assert later.index(texts[-1]) < later.index(f"*Shopper:* {ASK}")
    assert all((earlier + later).count(t[:12]) == 1 for t in texts)  # each once
    title = json.dumps(parent["blocks"])
    assert f"{len(folded)} earlier messages are in the thread" in title


async def test_messages_written_while_slack_is_down_are_in_the_ticket_once(
    h: Harness, quick_backoff: None
) -> None:
    h.slack.fail_status = 500
    cid, token = await h.shopper(ASK)
    await h.say(cid, token, "hello? [1]")
    await h.say(cid, token, "my order is FP-100234 [2]")
    await eventually(lambda: _failed(h.slack))
    h.slack.fail_status = None
    _, ts = await h.thread(cid)
    await h.svc.worker.drain()
    shown = inline(h.parent(ts))
    assert shown.index(ASK) < shown.index("hello? [1]") < shown.index("[2]")
    assert not h.slack.posts(thread_ts=ts)  # the rows for the two later messages posted nothing
    assert len(h.slack.ok_calls("chat.postMessage")) == 1


async def _failed(slack: FakeSlack) -> bool:
    return any(c.status >= 500 for c in slack.calls)


async def test_a_ticket_whose_reference_was_not_recorded_is_not_posted_again(
    h: Harness, quick_backoff: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Slack took the post, then recording its ts failed (the database was busy): the retry
    reuses that ticket instead of posting a second."""
    worker = h.svc.worker
    save = worker._save_ref
    failures = [RuntimeError("database is locked")]

    async def flaky(conv_id: int, ref: dict[str, Any]) -> None:
        if failures:
            raise failures.pop()
        await save(conv_id, ref)

    monkeypatch.setattr(worker, "_save_ref", flaky)
    cid, _ = await h.shopper(ASK)
    channel, ts = await h.thread(cid)
    assert not failures  # it did fail once
    assert [p["ts"] for p in h.slack.parents()] == [ts] and channel == INBOX
