"""Every request's signature is checked before anything runs; retried events count once; a
missing signing secret stops a production start."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from bot.app import ConfigurationError, build_app
from domain.storeconfig import StoreConfig
from storage import repo
from tests.conftest import make_settings
from tests.slack.conftest import FORM, INBOX, Harness, slack_settings
from tests.slack.fake_slack import (
    SIGNING_SECRET,
    TOKEN,
    FakeSlack,
    action_body,
    command_body,
    event_body,
    sign,
)


async def test_forged_stale_or_missing_signatures_get_401_and_change_nothing(h: Harness) -> None:
    cid, token = await h.shopper("Can I talk to a person please?")
    channel, ts = await h.thread(cid)
    calls = len(h.slack.calls)
    bodies = [
        ("application/json", event_body(h.reply_event(channel, ts, "forged reply"), "EvForged")),
        (FORM, command_body(f"resolve #{cid}", INBOX)),
        (FORM, action_body({"action_id": "handoff_claim", "type": "button", "value": str(cid)}, channel, ts)),
    ]
    for content_type, body in bodies:
        attempts = {
            "wrong secret": sign(body, secret="not-the-secret"),
            "stale (6 minutes old)": sign(body, timestamp=int(time.time()) - 360),
            "from the future": sign(body, timestamp=int(time.time()) + 360),
            "other body": sign(body + " "),
            "unsigned": {},
        }
        for why, headers in attempts.items():
            resp = await h.client.post(
                "/slack/events", data=body.encode(), headers={"Content-Type": content_type, **headers}
            )
            assert resp.status == 401, (why, body[:40])
    await h.settle()
    conv = await h.svc.core.get(cid)
    assert conv.state == "queued" and conv.owner is None
    assert not [m for m in await h.seen_by_shopper(cid, token) if m["role"] == "human"]
    assert len(h.slack.calls) == calls  # not even users.info
    async with h.svc.core.sessions() as s, s.begin():
        assert await repo.mark_processed(s, "slack-event", "EvForged")  # never recorded


async def test_a_signed_request_within_five_minutes_is_accepted(h: Harness) -> None:
    cid, token = await h.shopper("Can I talk to a person please?")
    channel, ts = await h.thread(cid)
    body = event_body(h.reply_event(channel, ts, "four minutes late"), "EvLate")
    resp = await h.client.post(
        "/slack/events",
        data=body.encode(),
        headers={"Content-Type": "application/json", **sign(body, timestamp=int(time.time()) - 240)},
    )
    assert resp.status == 200
    await h.settle()
    assert [m["text"] for m in await h.seen_by_shopper(cid, token) if m["role"] == "human"] == [
        "four minutes late"
    ]


async def test_a_retried_event_is_processed_once(h: Harness) -> None:
    cid, token = await h.shopper("I want to speak to a human")
    channel, ts = await h.thread(cid)
    event = h.reply_event(channel, ts, "Sam here", user="U2")
    body = event_body(event, "EvDup")
    assert (await h.post(body)).status == 200
    for n, reason in ((1, "http_timeout"), (2, "http_error")):
        retry = await h.post(body, **{"X-Slack-Retry-Num": str(n), "X-Slack-Retry-Reason": reason})
        assert retry.status == 200
    # Retries racing the first delivery, and the same message under another event id.
    racing = event_body(h.reply_event(channel, ts, "racing", user="U2"), "EvRace")
    answers = await asyncio.gather(*[h.post(racing) for _ in range(5)])
    assert [r.status for r in answers] == [200] * 5
    assert (await h.post(event_body(event, "EvOther"))).status == 200
    await h.settle()
    seen = [m["text"] for m in await h.seen_by_shopper(cid, token) if m["role"] == "human"]
    assert seen == ["Sam here", "racing"]


async def test_events_slack_cannot_authorize_yet_are_refused_so_slack_retries(
    make_client: Any, slack: FakeSlack
) -> None:
    slack.fail_status = 500  # Slack is down when we start: auth.test cannot answer
    h = Harness(await make_client(**slack_settings(slack)), slack)
    cid, token = await h.shopper("Can I talk to a person please?")
    body = event_body({"type": "app_mention", "user": "U1", "text": "hi", "ts": "1.1", "channel": INBOX}, "EvEarly")
    resp = await h.post(body)
    assert resp.status == 500  # not a 200 that would make Slack drop it
    slack.fail_status = None
    channel, ts = await h.thread(cid)  # the queued ticket goes out once Slack is back
    reply = event_body(h.reply_event(channel, ts, "back online"), "EvAfter")
    slack.fail_status = 500
    h.svc.bridges["slack"].identity.info = None  # as on a fresh start
    assert (await h.post(reply)).status == 500
    slack.fail_status = None
    assert (await h.post(reply, **{"X-Slack-Retry-Num": "1"})).status == 200
    await h.settle()
    assert [m["text"] for m in await h.seen_by_shopper(cid, token) if m["role"] == "human"] == ["back online"]


async def test_missing_signing_secret_refuses_to_start_outside_demo_mode(
    tmp_path: Path, shop: Any, store_config: StoreConfig
) -> None:
    settings = make_settings(
        tmp_path, shop[1], slack_bot_token=TOKEN, slack_inbox_channel=INBOX, inbox_token=None
    )
    with pytest.raises(ConfigurationError, match="SLACK_SIGNING_SECRET is not set"):
        build_app(settings, store_config)


async def test_demo_mode_without_a_signing_secret_posts_but_accepts_nothing(
    make_client: Any, slack: FakeSlack
) -> None:
    settings = slack_settings(slack, slack_signing_secret=None, demo=True)
    h = Harness(await make_client(**settings), slack)
    cid, token = await h.shopper("Can I talk to a person please?")
    channel, ts = await h.thread(cid)  # handoffs still reach Slack
    body = event_body(h.reply_event(channel, ts, "unverifiable"), "EvDemo")
    for headers in (sign(body), sign(body, secret=""), {}):
        resp = await h.client.post(
            "/slack/events", data=body.encode(), headers={"Content-Type": "application/json", **headers}
        )
        assert resp.status == 401
        assert "SLACK_SIGNING_SECRET" in json.loads(await resp.text())["error"]
    assert not [m for m in await h.seen_by_shopper(cid, token) if m["role"] == "human"]


async def test_url_verification_challenge_is_answered(h: Harness) -> None:
    body = json.dumps({"token": "legacy", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", "type": "url_verification"})
    resp = await h.post(body)
    assert resp.status == 200
    assert (await resp.json())["challenge"].startswith("3eZbrw1aBm2")
    assert SIGNING_SECRET not in await resp.text()
