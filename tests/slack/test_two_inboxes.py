"""Slack and the web inbox at once: one ticket (Slack's thread), both inboxes in step, the team's
alerts in both, and no configuration that would give a conversation two tickets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.app import build_app
from core.bridge import BridgeSetup, Capabilities, ConfigurationError
from domain.storeconfig import StoreConfig
from tests.conftest import eventually, inbox_login, make_settings
from tests.fakes import FakeInbox
from tests.slack.conftest import Harness, slack_settings
from tests.slack.fake_slack import FakeSlack


async def test_a_web_inbox_reply_reaches_the_slack_thread_and_alerts_reach_both(
    make_client: Any, slack: FakeSlack
) -> None:
    h = Harness(await make_client(**slack_settings(slack)), slack)
    assert (await (await h.client.get("/healthz")).json())["inboxes"] == ["slack", "web"]
    cid, token = await h.shopper("Can I talk to a person please?")
    channel, ts = await h.thread(cid)
    staff = await inbox_login(h.client)
    resp = await h.client.post(
        f"/inbox/api/conversations/{cid}/reply", json={"text": "Hi Ann, Maria here."}, headers=staff
    )
    assert resp.status == 200, await resp.text()
    await h.settle()
    assert "Maria here" in h.slack.thread_text(ts)  # the ticket shows what was said elsewhere
    await h.reply(channel, ts, "And Sam, also here.")
    texts = [m["text"] for m in (await h.staff_view(cid))["messages"]]
    assert texts.count("And Sam, also here.") == 1  # the web inbox reads the same record
    assert "And Sam" not in h.slack.thread_text(ts)  # Slack has it already: we post it nowhere

    await h.svc.core.enqueue_alert("Spike in `payment-failed`")
    await h.settle()

    async def in_both() -> bool:
        in_slack = any("Spike in" in p.get("text", "") for p in h.slack.posts())
        return in_slack and "Spike in `payment-failed`" in h.svc.bridges["web"].alerts

    await eventually(in_both)


class TicketInbox(FakeInbox):
    """A second inbox that would keep its own ticket per conversation."""

    capabilities = Capabilities(exclusive=True)


def test_two_inboxes_that_keep_tickets_refuse_to_start(
    tmp_path: Path, store_config: StoreConfig, slack: FakeSlack
) -> None:
    settings = make_settings(tmp_path, "http://127.0.0.1:9", **slack_settings(slack))

    def other(setup: BridgeSetup) -> FakeInbox:
        return TicketInbox(name="helpdesk")

    from bot.app import BRIDGES

    with pytest.raises(ConfigurationError, match="only one inbox can keep the tickets"):
        build_app(settings, store_config, bridges=[*BRIDGES, other])
