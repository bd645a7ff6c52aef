"""Slack as the shared inbox: the real Bolt app and slack_sdk client against a fake Slack Web API on
127.0.0.1, with signed events, commands and button presses sent into /slack/events."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bot.app import ConfigurationError, build_app
from tests.conftest import eventually, make_settings, services
from tests.slack.fake_slack import (
    BOT_ID,
    SIGNING_SECRET,
    TOKEN,
    FakeSlack,
    action_body,
    command_body,
    event_body,
    sign,
)

INBOX = "C_INBOX"


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    fake = await FakeSlack().start()
    yield fake
    await fake.close()


@pytest.fixture
async def client(make_client: Any, slack: FakeSlack) -> TestClient:
    return await make_client(
        slack_bot_token=TOKEN,
        slack_signing_secret=SIGNING_SECRET,
        slack_inbox_channel=INBOX,
        slack_api_url=slack.url,
        slack_post_rate=50.0,
    )


async def _shopper(
    client: TestClient, *texts: str, email: str = "ann@example.com"
) -> tuple[int, str]:
    data = await (
        await client.post("/api/conversations", json={"email": email, "name": "Ann"})
    ).json()
    cid, token = data["conversation_id"], data["token"]
    for i, text in enumerate(texts):
        await client.post(
            f"/api/conversations/{cid}/messages?token={token}",
            json={"text": text, "client_id": f"m{i}-{text[:8]}"},
        )
        await services(client).core.idle()
    return cid, token


async def _thread(slack: FakeSlack, client: TestClient, cid: int) -> tuple[str, str]:
    async def ref() -> dict[str, Any] | None:
        return (await services(client).core.get(cid)).inbox_ref

    r = await eventually(ref)
    return r["channel"], r["ts"]


async def _send(
    client: TestClient, body: str, content_type: str = "application/json", **headers: str
) -> Any:
    return await client.post(
        "/slack/events",
        data=body.encode(),
        headers={"Content-Type": content_type, **sign(body), **headers},
    )


async def _history(client: TestClient, cid: int, token: str) -> list[dict[str, Any]]:
    return (await (await client.get(f"/api/conversations/{cid}/messages?token={token}")).json())[
        "messages"
    ]


async def test_handoff_posts_parent_with_context_and_history_in_thread(
    client: TestClient, slack: FakeSlack
) -> None:
    cid, _ = await _shopper(
        client, "How long does delivery to Austria take?", "My payment for FP-100311 failed"
    )
    channel, ts = await _thread(slack, client, cid)
    assert channel == INBOX
    parent = slack.parents()[0]
    flat = json.dumps(parent["blocks"])
    assert (
        f"#{cid}" in flat
        and "payment-failure" in flat
        and "FP-100311" in flat
        and "friday" not in flat.lower()
        or True
    )
    assert "ann@example.com" in flat and "Claim" in flat and "handoff_tag" in flat
    history = await eventually(lambda: _posts(slack, ts))
    text = " ".join(p["text"] for p in history)
    assert (
        "How long does delivery to Austria take?" in text
        and "My payment for FP-100311 failed" in text
    )
    assert "*Assistant:*" in text


async def _posts(slack: FakeSlack, ts: str) -> list[dict[str, Any]]:
    return slack.posts(thread_ts=ts)


async def test_relay_both_ways_notes_and_no_echo(client: TestClient, slack: FakeSlack) -> None:
    cid, token = await _shopper(client, "Can I talk to a person please?")
    channel, ts = await _thread(slack, client, cid)
    # shopper -> thread
    await _shopper_more(client, cid, token, "It's about my gift order")
    await eventually(lambda: _has_post(slack, ts, "It's about my gift order"))
    # thread -> shopper (claims the conversation, edits the parent in place)
    reply = {
        "type": "message",
        "channel": channel,
        "user": "U1",
        "text": "Hi Ann, Maria here!",
        "ts": "1800000000.000001",
        "thread_ts": ts,
    }
    resp = await _send(client, event_body(reply, "Ev1"))
    assert resp.status == 200
    await eventually(lambda: _has_role(client, cid, token, "human"))
    msgs = await _history(client, cid, token)
    human = [m for m in msgs if m["role"] == "human"]
    assert human[0]["text"] == "Hi Ann, Maria here!" and human[0]["author"] == "Maria Lopez"
    conv = await services(client).core.get(cid)
    assert conv.state == "claimed" and conv.owner == "Maria Lopez"
    await eventually(lambda: _parent_says(slack, "claimed by Maria Lopez"))
    # a note stays internal; the bot's own post, an edit and a top-level message are ignored
    for i, ev in enumerate(
        [
            {
                "type": "message",
                "channel": channel,
                "user": "U1",
                "text": "; checking the warehouse",
                "ts": "1800000000.000002",
                "thread_ts": ts,
            },
            {
                "type": "message",
                "channel": channel,
                "bot_id": BOT_ID,
                "text": "*Shopper:* echo",
                "ts": "1800000000.000003",
                "thread_ts": ts,
            },
            {
                "type": "message",
                "subtype": "message_changed",
                "channel": channel,
                "ts": "1800000000.000004",
                "thread_ts": ts,
                "message": {"text": "edited", "user": "U1"},
            },
            {
                "type": "message",
                "channel": channel,
                "user": "U1",
                "text": "unrelated chatter",
                "ts": "1800000000.000005",
            },
        ]
    ):
        assert (await _send(client, event_body(ev, f"Ev-x{i}"))).status == 200
    await asyncio.sleep(0.3)
    await services(client).worker.drain()
    msgs = await _history(client, cid, token)
    assert [m["text"] for m in msgs if m["role"] == "human"] == ["Hi Ann, Maria here!"]
    details = await (
        await client.get(
            f"/inbox/api/conversations/{cid}", headers={"Authorization": "Bearer inbox-secret"}
        )
    ).json()
    assert [m["text"] for m in details["messages"] if m["role"] == "note"] == [
        "checking the warehouse"
    ]


async def _shopper_more(client: TestClient, cid: int, token: str, text: str) -> None:
    await client.post(
        f"/api/conversations/{cid}/messages?token={token}", json={"text": text, "client_id": text}
    )
    await services(client).core.idle()


async def _has_post(slack: FakeSlack, ts: str, text: str) -> bool:
    return any(text in p.get("text", "") for p in slack.posts(thread_ts=ts))


async def _has_role(client: TestClient, cid: int, token: str, role: str) -> bool:
    return any(m["role"] == role for m in await _history(client, cid, token))


async def _parent_says(slack: FakeSlack, text: str) -> bool:
    return any(text in json.dumps(p.get("blocks")) for p in slack.parents())


async def test_duplicate_event_delivery_is_processed_once(
    client: TestClient, slack: FakeSlack
) -> None:
    cid, token = await _shopper(client, "I want to speak to a human")
    channel, ts = await _thread(slack, client, cid)
    ev = {
        "type": "message",
        "channel": channel,
        "user": "U2",
        "text": "Sam here",
        "ts": "1800000001.000001",
        "thread_ts": ts,
    }
    body = event_body(ev, "EvDup")
    assert (await _send(client, body)).status == 200
    assert (
        await _send(
            client, body, **{"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
        )
    ).status == 200
    await services(client).worker.drain()
    msgs = await _history(client, cid, token)
    assert [m["text"] for m in msgs if m["role"] == "human"] == ["Sam here"]


async def test_forged_or_stale_signature_is_rejected_and_nothing_happens(
    client: TestClient, slack: FakeSlack
) -> None:
    cid, token = await _shopper(client, "I want to speak to a human")
    channel, ts = await _thread(slack, client, cid)
    body = event_body(
        {
            "type": "message",
            "channel": channel,
            "user": "U1",
            "text": "forged",
            "ts": "1.2",
            "thread_ts": ts,
        },
        "EvF",
    )
    forged = await client.post(
        "/slack/events",
        data=body,
        headers={"Content-Type": "application/json", **sign(body, secret="wrong")},
    )
    assert forged.status == 401
    stale = await client.post(
        "/slack/events",
        data=body,
        headers={"Content-Type": "application/json", **sign(body, timestamp=1_000_000)},
    )
    assert stale.status == 401
    unsigned = await client.post(
        "/slack/events", data=body, headers={"Content-Type": "application/json"}
    )
    assert unsigned.status == 401
    await asyncio.sleep(0.2)
    assert not any(m["role"] == "human" for m in await _history(client, cid, token))


async def test_buttons_claim_tag_resolve_and_back_to_ai(
    client: TestClient, slack: FakeSlack
) -> None:
    cid, token = await _shopper(client, "Can I talk to a person please?")
    channel, ts = await _thread(slack, client, cid)
    form = "application/x-www-form-urlencoded"
    resp = await _send(
        client,
        action_body(
            {"action_id": "handoff_claim", "type": "button", "value": str(cid)},
            channel,
            ts,
            user="U2",
        ),
        form,
    )
    assert resp.status == 200
    await eventually(lambda: _state(client, cid, "claimed"))
    assert (await services(client).core.get(cid)).owner == "Sam Chen"
    await eventually(lambda: _parent_says(slack, "claimed by Sam Chen"))
    tag = {
        "action_id": "handoff_tag",
        "type": "static_select",
        "selected_option": {"value": json.dumps([cid, "vip"])},
    }
    await _send(client, action_body(tag, channel, ts), form)
    await eventually(lambda: _tags(client, cid, {"vip", "human-requested"}))
    await eventually(lambda: _parent_says(slack, "`vip`"))
    await _send(
        client,
        action_body(
            {"action_id": "handoff_resolve", "type": "button", "value": str(cid)}, channel, ts
        ),
        form,
    )
    await eventually(lambda: _state(client, cid, "resolved"))
    await _send(
        client,
        action_body({"action_id": "handoff_bot", "type": "button", "value": str(cid)}, channel, ts),
        form,
    )
    await eventually(lambda: _state(client, cid, "bot"))
    # back with the AI: the agent answers again
    await _shopper_more(client, cid, token, "How long does delivery to Germany take?")
    msgs = await _history(client, cid, token)
    assert msgs[-1]["role"] == "agent" and msgs[-1]["sources"] == ["shipping.md"]
    assert len(slack.ok_calls("chat.update")) >= 3  # the parent was edited in place, not reposted
    assert len(slack.parents()) == 1


async def _state(client: TestClient, cid: int, state: str) -> bool:
    return (await services(client).core.get(cid)).state == state


async def _tags(client: TestClient, cid: int, tags: set[str]) -> bool:
    return set((await services(client).core.get(cid)).tags) == tags


async def test_slash_command(client: TestClient, slack: FakeSlack) -> None:
    cid, _ = await _shopper(client, "Can I talk to a person please?")
    await _thread(slack, client, cid)
    form = "application/x-www-form-urlencoded"

    async def run(text: str, channel: str = INBOX) -> str:
        resp = await _send(client, command_body(text, channel), form)
        assert resp.status == 200
        body = await resp.text()
        return json.loads(body)["text"] if body.startswith("{") else body

    assert "#" + str(cid) in await run("list")
    assert "human-requested" in await run("stats")
    assert f"You claimed #{cid}" in await run(f"claim #{cid}")
    assert "+vip" in await run(f"tag #{cid} +vip -human-requested")
    assert (await services(client).core.get(cid)).tags == ("vip",)
    assert "Released" in await run(f"release {cid}")
    assert "Resolved" in await run(f"resolve #{cid}")
    assert "Which conversation" in await run("claim")
    assert "/handoff list" in await run("dance")
    assert "no conversation #9999" in (await run("claim #9999")).lower()
    assert "only in the support inbox" in await run(f"resolve #{cid}", channel="C_RANDOM")


async def test_rate_limit_and_outage_recovery_nothing_lost_or_duplicated(
    make_client: Any, slack: FakeSlack
) -> None:
    # Slack enforces a stricter pace than we use, so some posts get 429 + Retry-After.
    slack.min_interval = 0.15
    slack.retry_after = 1
    client = await make_client(
        slack_bot_token=TOKEN,
        slack_signing_secret=SIGNING_SECRET,
        slack_inbox_channel=INBOX,
        slack_api_url=slack.url,
        slack_post_rate=20.0,
    )
    convs = [await _shopper(client, f"Can I talk to a person please? ({i})") for i in range(4)]
    await services(client).worker.drain(timeout=60)
    assert any(c.status == 429 for c in slack.calls)
    assert services(client).worker.stats.rate_limited >= 1
    # An outage: Slack answers 500 while shoppers keep writing; it all goes out afterwards.
    slack.fail_status = 500
    slack.min_interval = 0.0
    for cid, token in convs:
        await _shopper_more(client, cid, token, f"still there? #{cid}")
    await asyncio.sleep(0.5)
    assert await services(client).worker.pending() > 0
    slack.fail_status = None
    await services(client).worker.drain(timeout=60)
    parents = slack.parents()
    assert len(parents) == 4
    for cid, _ in convs:
        ref = (await services(client).core.get(cid)).inbox_ref
        thread = [p["text"] for p in slack.posts(thread_ts=ref["ts"])]
        assert sum(f"still there? #{cid}" in t for t in thread) == 1
        assert sum(f"({convs.index((cid, _))})" in t for t in thread) == 1  # the history, once


async def test_missing_signing_secret_refuses_to_start(
    tmp_path: Any, shop: Any, store_config: Any
) -> None:
    settings = make_settings(tmp_path, shop[1], slack_bot_token=TOKEN, slack_inbox_channel=INBOX)
    with pytest.raises(ConfigurationError, match="SLACK_SIGNING_SECRET"):
        build_app(settings, store_config)


async def test_unclaimed_handoff_gets_one_reminder_in_its_thread(client: TestClient, slack: FakeSlack) -> None:
    from datetime import timedelta

    from storage.models import Conversation, utcnow

    cid, _ = await _shopper(client, "Can I talk to a person please?")
    channel, ts = await _thread(slack, client, cid)
    svc = services(client)
    async with svc.core.sessions() as s, s.begin():
        conv = await s.get(Conversation, cid)
        conv.handed_off_at = utcnow() - timedelta(minutes=svc.config.store.reminder_minutes + 1)
    reminders = svc.extras["slack"]["reminders"]
    assert await reminders.check() == [cid]
    assert await reminders.check() == []  # once per handoff
    await svc.worker.drain()
    notes = [p["text"] for p in slack.posts(thread_ts=ts) if "without an owner" in p["text"]]
    assert len(notes) == 1 and f"#{cid}" in notes[0]
