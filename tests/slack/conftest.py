"""The Slack suite's harness: the whole service on 127.0.0.1 with the real Bolt app and slack_sdk
client pointed at a fake Slack, and a shopper on the widget's HTTP API.

`Harness` speaks as each side does: a shopper posts to /api/conversations, Slack sends signed
events, commands and button presses into /slack/events, and the fake records what Slack was
asked to show."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from bot.app import Services
from bridges.slack.listeners import SlackContext
from tests.conftest import eventually, inbox_login, services, signed
from tests.slack.fake_slack import (
    SIGNING_SECRET,
    TOKEN,
    FakeSlack,
    action_body,
    command_body,
    event_body,
    sign,
)

INBOX = "C_INBOX"
FORM = "application/x-www-form-urlencoded"


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    fake = await FakeSlack().start()
    yield fake
    await fake.close()


def slack_settings(slack: FakeSlack, **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "slack_bot_token": TOKEN,
        "slack_signing_secret": SIGNING_SECRET,
        "slack_inbox_channel": INBOX,
        "slack_api_url": slack.url,
        "slack_post_rate": 50.0,
    }
    base.update(overrides)
    return base


class Harness:
    def __init__(self, client: TestClient, slack: FakeSlack) -> None:
        self.client = client
        self.slack = slack
        self._events = 0
        self._ts = 0

    @property
    def svc(self) -> Services:
        return services(self.client)

    @property
    def ctx(self) -> SlackContext:
        return self.svc.bridges["slack"].context

    # ---------------------------------------------------------------- shopper side

    async def shopper(self, *texts: str, email: str = "ann@example.com", name: str = "Ann") -> tuple[int, str]:
        resp = await self.client.post("/api/conversations", json=signed(email, name=name))
        data = await resp.json()
        cid, token = data["conversation_id"], data["token"]
        for text in texts:
            await self.say(cid, token, text)
        return cid, token

    async def say(self, cid: int, token: str, text: str) -> None:
        resp = await self.client.post(
            f"/api/conversations/{cid}/messages?token={token}",
            json={"text": text, "client_id": f"{cid}-{self._next()}"},
        )
        assert resp.status in (200, 201), await resp.text()
        await self.svc.core.idle()

    async def seen_by_shopper(self, cid: int, token: str) -> list[dict[str, Any]]:
        resp = await self.client.get(f"/api/conversations/{cid}/messages?token={token}")
        return (await resp.json())["messages"]

    async def staff_view(self, cid: int) -> dict[str, Any]:
        """The conversation as the web inbox shows it to a signed-in person."""
        resp = await self.client.get(f"/inbox/api/conversations/{cid}", headers=await inbox_login(self.client))
        return await resp.json()

    # ---------------------------------------------------------------- Slack side

    async def thread(self, cid: int) -> tuple[str, str]:
        """Wait for the conversation's ticket in Slack; (channel, parent ts)."""

        async def ref() -> dict[str, Any] | None:
            r = (await self.svc.core.get(cid)).inbox_ref
            return r if r and r.get("ts") and r.get("last_message_id") else None

        r = await eventually(ref)
        await self.svc.worker.drain()
        return r["channel"], r["ts"]

    def parent(self, ts: str) -> dict[str, Any]:
        return next(m for m in self.slack.parents() if m["ts"] == ts)

    def parent_text(self, ts: str) -> str:
        return json.dumps(self.parent(ts)["blocks"], ensure_ascii=False)

    def _next(self) -> int:
        self._ts += 1
        return self._ts

    async def post(self, body: str, content_type: str = "application/json", **headers: str) -> ClientResponse:
        return await self.client.post(
            "/slack/events",
            data=body.encode(),
            headers={"Content-Type": content_type, **sign(body), **headers},
        )

    def reply_event(
        self, channel: str, thread_ts: str, text: str, user: str = "U1", **extra: Any
    ) -> dict[str, Any]:
        return {
            "type": "message",
            "channel": channel,
            "channel_type": "channel",
            "user": user,
            "text": text,
            "ts": f"1800000000.{self._next():06d}",
            "thread_ts": thread_ts,
            **extra,
        }

    async def event(self, event: dict[str, Any], event_id: str | None = None) -> ClientResponse:
        self._events += 1
        return await self.post(event_body(event, event_id or f"Ev{self._events:05d}"))

    async def reply(self, channel: str, thread_ts: str, text: str, user: str = "U1") -> ClientResponse:
        resp = await self.event(self.reply_event(channel, thread_ts, text, user))
        assert resp.status == 200
        await self.settle()
        return resp

    async def press(
        self, action_id: str, value: str, channel: str, ts: str, user: str = "U1"
    ) -> ClientResponse:
        action = {"action_id": action_id, "type": "button", "value": value}
        body = action_body(action, channel, ts, user, response_url=self.slack.response_url())
        resp = await self.post(body, FORM)
        assert resp.status == 200
        await self.settle()
        return resp

    async def pick_tag(self, cid: int, tag: str, channel: str, ts: str, user: str = "U1") -> None:
        action = {
            "action_id": "handoff_tag",
            "type": "static_select",
            "selected_option": {"value": json.dumps([cid, tag]), "text": {"type": "plain_text", "text": tag}},
        }
        resp = await self.post(action_body(action, channel, ts, user, self.slack.response_url()), FORM)
        assert resp.status == 200
        await self.settle()

    async def command(self, text: str, channel: str = INBOX, user: str = "U1") -> str:
        """/handoff <text>: the ephemeral answer (from the acknowledgement or the response URL)."""
        url = self.slack.response_url()
        resp = await self.post(command_body(text, channel, user, url), FORM)
        assert resp.status == 200, await resp.text()
        body = await resp.text()
        answer = json.loads(body) if body.startswith("{") else {"text": body}
        assert answer.get("response_type", "ephemeral") == "ephemeral"
        await self.settle()
        return str(answer.get("text", ""))

    async def settle(self) -> None:
        """Wait until every acknowledged Slack request has been handled and delivered."""
        await self.ctx.drain()
        await self.svc.core.idle()
        await self.svc.worker.drain()


@pytest.fixture
async def h(make_client: Any, slack: FakeSlack) -> Harness:
    client: TestClient = await make_client(**slack_settings(slack))
    return Harness(client, slack)
