"""Shopper-chosen text in Slack is escaped everywhere it is mrkdwn: a name like `<!channel>`
must not notify the whole support channel, in the `/handoff list` queue or in the ticket's
fallback `text` (what notifications and clients without blocks show)."""

from __future__ import annotations

from datetime import UTC, datetime

from bridges.slack.blocks import parent_blocks
from domain.ports import ConversationView, CustomerView
from tests.slack.conftest import Harness

HOSTILE = "<!channel> <@U123|boss> & <https://evil.example|your bank>"


async def test_the_queue_escapes_the_shoppers_name(h: Harness) -> None:
    cid, _ = await h.shopper("Can I talk to a person please?", name=HOSTILE)
    await h.thread(cid)
    listing = await h.command("list")
    assert f"#{cid}" in listing
    assert "<!channel>" not in listing and "<@U123" not in listing and "<https://evil" not in listing
    assert "&lt;!channel&gt; &lt;@U123|boss&gt; &amp; &lt;https://evil.example|your bank&gt;" in listing


def test_the_tickets_fallback_text_is_escaped() -> None:
    conv = ConversationView(
        id=7, channel="widget", channel_ref=None, state="queued", owner=None, priority=0,
        tags=("human-requested",), reason=f"The shopper wrote: {HOSTILE}", summary=None,
        context={}, memory={}, sale=None, inbox_ref=None, blocked=False,
        customer=CustomerView(id=1, channel="widget", external_id="w", name=HOSTILE),
        created_at=datetime(2026, 11, 25, tzinfo=UTC),
    )
    fallback, blocks = parent_blocks(conv, ["human-requested"], {})
    assert fallback.startswith("#7 ")
    assert "<!channel>" not in fallback and "<@U123" not in fallback and "<https://" not in fallback
    assert "&lt;!channel&gt;" in fallback and "&amp;" in fallback
