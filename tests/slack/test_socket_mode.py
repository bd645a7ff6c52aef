"""Socket Mode: no public URL. The real Bolt app and slack_sdk's aiohttp Socket Mode client
against the fake Slack: `apps.connections.open` (with the app-level token) answers a ws:// URL,
the fake says hello and sends envelopes; the service acknowledges each by its envelope_id, and
what came in acts as it would over HTTP."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

import pytest
from aiohttp.test_utils import TestClient

from core.bridge import ConfigurationError
from tests.conftest import eventually
from tests.slack.conftest import INBOX, Harness, slack_settings
from tests.slack.fake_slack import (
    APP_TOKEN,
    TOKEN,
    FakeSlack,
    action_body,
    command_body,
    event_body,
)


async def socket_harness(make_client: Any, slack: FakeSlack, **overrides: Any) -> Harness:
    # Socket Mode only: no signing secret, and the HTTP endpoint refuses everything.
    settings = slack_settings(slack, slack_app_token=APP_TOKEN, slack_signing_secret=None)
    settings.update(overrides)
    client: TestClient = await make_client(**settings)

    async def connected() -> bool:
        return bool(slack.sockets)

    await eventually(connected)
    return Harness(client, slack)


def form_payload(body: str) -> dict[str, Any]:
    """What an interaction's form body carries, as Socket Mode sends it: the JSON itself."""
    return dict(json.loads(parse_qs(body)["payload"][0]))


async def test_a_thread_reply_and_a_button_round_trip_over_socket_mode(
    make_client: Any, slack: FakeSlack
) -> None:
    h = await socket_harness(make_client, slack)
    [opened] = [c for c in slack.calls if c.method == "apps.connections.open"]
    cid, token = await h.shopper("Can I talk to a person please?")
    channel, ts = await h.thread(cid)

    # A reply in the ticket's thread: acknowledged by its envelope id, and it reaches the shopper.
    reply = h.reply_event(channel, ts, "Hi Ann, Maria here. Let me check.", user="U1")
    payload = json.loads(event_body(reply, "EvSock1"))
    envelope = await slack.envelope("events_api", payload)
    assert await slack.acked(envelope) == {"envelope_id": envelope}
    await h.settle()

    async def reached() -> list[str] | None:
        seen = [m["text"] for m in await h.seen_by_shopper(cid, token)]
        return seen if "Hi Ann, Maria here. Let me check." in seen else None

    seen = await eventually(reached)
    # Slack retries an envelope it thinks was not acknowledged: same event, acked, taken once.
    retry = await slack.envelope("events_api", payload, retry_attempt=1)
    assert (await slack.acked(retry))["envelope_id"] == retry
    await h.settle()
    assert [m["text"] for m in await h.seen_by_shopper(cid, token)] == seen

    # A button press on the ticket (Claim, by Sam): acknowledged, and it acts.
    action = {"action_id": "handoff_claim", "type": "button", "value": str(cid)}
    press = form_payload(action_body(action, channel, ts, "U2", slack.response_url()))
    envelope = await slack.envelope("interactive", press)
    assert (await slack.acked(envelope))["envelope_id"] == envelope
    await h.settle()
    conv = await h.svc.core.get(cid)
    assert conv.state == "claimed" and conv.owner == "Sam Chen"
    assert "claimed by Sam Chen" in h.parent_text(ts)

    # /handoff resolve #N: acknowledged, resolved, and the shopper is told.
    command = {k: v[0] for k, v in parse_qs(command_body(f"resolve #{cid}", INBOX, "U2")).items()}
    envelope = await slack.envelope("slash_commands", command, accepts_response_payload=True)
    ack = await slack.acked(envelope)
    # The answer only the person sees travels in the acknowledgement itself.
    assert ack == {
        "envelope_id": envelope,
        "payload": {"text": f"Resolved #{cid}.", "response_type": "ephemeral"},
    }
    await h.settle()
    assert (await h.svc.core.get(cid)).state == "resolved"
    assert any("marked as resolved" in m["text"] for m in await h.seen_by_shopper(cid, token))
    # One connection all along; the HTTP endpoint took nothing (no signing secret to check).
    assert [c for c in slack.calls if c.method == "apps.connections.open"] == [opened]
    resp = await h.client.post("/slack/events", json={"type": "url_verification"})
    assert resp.status == 401


async def test_slack_away_at_start_does_not_hold_the_service_up(
    make_client: Any, slack: FakeSlack
) -> None:
    slack.fail_status = 503  # apps.connections.open and auth.test fail: the service starts anyway
    client: TestClient = await make_client(
        **slack_settings(slack, slack_app_token=APP_TOKEN, slack_signing_secret=None)
    )
    assert (await client.get("/healthz")).status == 200
    assert not slack.sockets


async def test_a_bot_token_given_as_the_app_token_is_refused_at_start(
    make_client: Any, slack: FakeSlack
) -> None:
    with pytest.raises(ConfigurationError, match="app-level token"):
        await make_client(**slack_settings(slack, slack_app_token=TOKEN))
