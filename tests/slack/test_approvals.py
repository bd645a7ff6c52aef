"""Approve or deny a prepared write from the Slack ticket, through the real Bolt app and
slack_sdk against the fake Slack, with the sample shop API counting every write: the ticket
shows what the write will do with Approve and Deny; an approver's click or `/handoff approve`
runs it once (a double click, two people and a redelivered interaction included), the ticket is
edited with who and the result, the shopper is told; a failing store API is shown in the
thread; Deny asks for a note; someone not on the approvers list is refused and nothing runs."""

from __future__ import annotations

import asyncio
import json
import os
import re
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.shop_server import ShopData
from bridges.slack.blocks import approval_value
from tests.approval_orders import CANCEL_KEY, DROPPED, FLASH, add_orders, approval_config, cancels
from tests.slack.conftest import FORM, Harness, slack_settings
from tests.slack.fake_slack import FakeSlack, action_body, view_submission_body

LEADS = "S0LEADS1"  # a Slack user group of approvers; Sam (U2) is in it
CANCEL = f"Please cancel my order {FLASH}, I ordered the wrong size"
SUMMARY = f"Cancel order {FLASH} and refund 120.00 EUR"


@pytest.fixture
async def h(make_client: Any, slack: FakeSlack, shop: tuple[ShopData, str]) -> Harness:
    add_orders(shop[0])
    slack.groups[LEADS] = ["U2", "U7"]
    config = approval_config(slack_users=["U1"], slack_groups=[LEADS])
    return Harness(await make_client(config, **slack_settings(slack)), slack)


async def ticket(h: Harness, text: str = CANCEL) -> tuple[int, str, str, str, int]:
    """A shopper's handoff with a prepared write: (cid, token, channel, parent ts, prepared id)."""
    cid, token = await h.shopper(text)
    channel, ts = await h.thread(cid)
    [entry] = (await h.svc.core.get(cid)).context["prepared"]
    return cid, token, channel, ts, int(entry["id"])


def approval(h: Harness, ts: str, cid: int, pid: int) -> tuple[str, list[str]]:
    """The ticket's prepared action: its text, and the action ids of its buttons (if any)."""
    blocks = h.parent(ts)["blocks"]
    i = next(
        i for i, b in enumerate(blocks)
        if b["type"] == "section" and f"`#{cid}:1`" in b.get("text", {}).get("text", "")
    )
    after = blocks[i + 1] if i + 1 < len(blocks) else {}
    buttons = []
    if after.get("block_id") == f"handoff-approval:{cid}:{pid}":
        buttons = [e["action_id"] for e in after["elements"]]
        assert all(e["value"] == approval_value(cid, pid) for e in after["elements"])
    return blocks[i]["text"]["text"], buttons


def thread_notes(h: Harness, ts: str) -> list[str]:
    return [m["text"] for m in h.slack.posts(thread_ts=ts) if "Note" in m["text"]]


async def test_approve_button_runs_the_write_once_edits_the_ticket_and_tells_the_shopper(
    h: Harness, shop: tuple[ShopData, str]
) -> None:
    cid, token, channel, ts, pid = await ticket(h)
    text, buttons = approval(h, ts, cid, pid)
    assert "Waiting for approval" in text and f"*{SUMMARY}*" in text
    assert f"order {FLASH}" in text and "amount 120.00 EUR" in text
    assert buttons == ["handoff_approve", "handoff_deny"]
    assert not shop[0].writes  # nothing runs before a person approves

    await h.press("handoff_approve", approval_value(cid, pid), channel, ts, user="U1")
    [write] = cancels(shop[0])
    assert write.key == CANCEL_KEY and write.status == 200
    assert shop[0].orders[FLASH]["status"] == "cancelled" and len(shop[0].refunds) == 1
    text, buttons = approval(h, ts, cid, pid)
    assert buttons == []  # decided: no buttons left to press
    assert ":white_check_mark: *Done*" in text and "Approved by *Maria Lopez*" in text
    assert "The store's API answered: refund re_0001, refunded 120.0" in text
    assert thread_notes(h, ts)[-1] == (
        f"*:memo: Note:* ✅ Done: {SUMMARY} (approved by Maria Lopez). "
        "The store's API answered: refund re_0001, refunded 120.0."
    )
    seen = [m["text"] for m in await h.seen_by_shopper(cid, token)]
    assert seen[-1].startswith(f"Your order {FLASH} is cancelled, and 120.00 EUR")
    assert not h.slack.responses  # it worked: nobody needed telling anything

    # A second click (the ticket not yet redrawn on someone's screen) runs nothing more.
    await h.press("handoff_approve", approval_value(cid, pid), channel, ts, user="U1")
    assert h.slack.responses[-1]["response_type"] == "ephemeral"
    assert "was already approved and done by Maria Lopez" in h.slack.responses[-1]["text"]
    assert len(cancels(shop[0])) == 1 and len(shop[0].refunds) == 1
    assert len(h.slack.parents()) == 1


async def test_a_double_click_and_two_people_at_once_run_it_once(
    h: Harness, shop: tuple[ShopData, str]
) -> None:
    cid, _, channel, ts, pid = await ticket(h)
    value = approval_value(cid, pid)
    await asyncio.gather(
        *(h.press("handoff_approve", value, channel, ts, user=u) for u in ("U1", "U1", "U2", "U1"))
    )
    await h.settle()
    assert len(cancels(shop[0])) == 1 and len(shop[0].refunds) == 1
    assert len(h.slack.responses) == 3
    assert all("was already approved" in r["text"] for r in h.slack.responses)
    assert ":white_check_mark: *Done*" in approval(h, ts, cid, pid)[0]


async def test_a_redelivered_interaction_does_nothing_more(
    h: Harness, shop: tuple[ShopData, str]
) -> None:
    cid, _, channel, ts, pid = await ticket(h)
    action = {"action_id": "handoff_approve", "type": "button", "value": approval_value(cid, pid)}
    body = action_body(action, channel, ts, "U1", h.slack.response_url())
    assert (await h.post(body, FORM)).status == 200
    retry = await h.post(body, FORM, **{"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})
    assert retry.status == 200
    await h.settle()
    assert len(cancels(shop[0])) == 1 and len(shop[0].refunds) == 1
    assert not h.slack.responses  # the retry is recognised, not answered "already approved"
    assert ":white_check_mark: *Done*" in approval(h, ts, cid, pid)[0]


async def test_approve_by_command_as_a_member_of_an_approver_group(
    h: Harness, shop: tuple[ShopData, str]
) -> None:
    cid, token, _, ts, pid = await ticket(h)
    answer = await h.command(f"approve #{cid}", user="U2")
    assert answer == f"Approved #{cid}:1: {SUMMARY}. Running it now."
    [lookup] = h.slack.ok_calls("usergroups.users.list")
    assert lookup.args["usergroup"] == LEADS  # Sam is not listed by id: his group is asked
    assert len(cancels(shop[0])) == 1
    assert "Approved by *Sam Chen*" in approval(h, ts, cid, pid)[0]
    assert "is cancelled" in (await h.seen_by_shopper(cid, token))[-1]["text"]
    again = await h.command(f"approve #{cid}:1", user="U1")
    assert again == f"#{cid}:1 ({SUMMARY}) was already approved and done by Sam Chen."
    assert len(cancels(shop[0])) == 1
    assert "/handoff approve #42" in await h.command("help")
    assert await h.command("approve") == "Which conversation? Type `/handoff approve #42`."
    assert (await h.command("approve #999")).startswith("There is no conversation #999.")


async def test_a_failing_store_api_is_shown_in_the_thread_with_its_error(
    h: Harness, shop: tuple[ShopData, str]
) -> None:
    cid, token, channel, ts, pid = await ticket(h)
    shop[0].orders[FLASH]["status"] = "shipped"  # the warehouse was faster than the approval
    await h.press("handoff_approve", approval_value(cid, pid), channel, ts, user="U1")
    assert [w.status for w in cancels(shop[0])] == [409]
    error = f"HTTP 409: already_shipped: Order {FLASH} has shipped and can no longer be cancelled"
    assert thread_notes(h, ts)[-1] == (
        f"*:memo: Note:* ❌ Failed: {SUMMARY} (approved by Maria Lopez). The store's API said: {error}"
    )
    text, buttons = approval(h, ts, cid, pid)
    assert ":x: *Failed*" in text and error in text and buttons == []
    assert "couldn't cancel order" in (await h.seen_by_shopper(cid, token))[-1]["text"]
    assert not shop[0].refunds


async def test_deny_opens_a_note_window_and_the_note_goes_on_the_ticket(
    h: Harness, shop: tuple[ShopData, str]
) -> None:
    cid, token, channel, ts, pid = await ticket(h)
    seen = await h.seen_by_shopper(cid, token)
    await h.press("handoff_deny", approval_value(cid, pid), channel, ts, user="U1")
    [opened] = h.slack.views
    [call] = h.slack.ok_calls("views.open")
    assert call.args["trigger_id"] == "t1"  # the press's trigger, within its 3 seconds
    assert opened["callback_id"] == "handoff_deny" and opened["title"]["text"] == f"Deny #{cid}:1"
    assert SUMMARY in json.dumps(opened["blocks"])
    assert "waiting" in approval(h, ts, cid, pid)[0].lower()  # nothing decided yet

    # An empty note keeps the window open with Slack's error under the field.
    resp = await h.post(view_submission_body(opened, {"note": {"note": "  "}}), FORM)
    assert resp.status == 200
    assert (await resp.json()) == {
        "response_action": "errors",
        "errors": {"note": "Say why it is denied: the note is kept on the ticket."},
    }
    body = view_submission_body(opened, {"note": {"note": "Already packed; offering a return instead"}})
    assert (await h.post(body, FORM)).status == 200
    assert (await h.post(body, FORM, **{"X-Slack-Retry-Num": "1"})).status == 200  # redelivered
    await h.settle()
    text, buttons = approval(h, ts, cid, pid)
    assert ":no_entry_sign: *Denied*" in text and buttons == []
    assert "Denied by *Maria Lopez*: Already packed; offering a return instead" in text
    assert thread_notes(h, ts) == [
        f"*:memo: Note:* 🚫 Denied by Maria Lopez: {SUMMARY}. Note: Already packed; offering a return instead"
    ]
    assert await h.seen_by_shopper(cid, token) == seen  # the YAML says nothing on deny
    assert not h.slack.ephemerals and not h.slack.responses
    await h.press("handoff_deny", approval_value(cid, pid), channel, ts, user="U1")
    assert "already denied by Maria Lopez" in h.slack.responses[-1]["text"]
    assert len(h.slack.views) == 1 and not shop[0].writes


async def test_deny_by_command_takes_the_reason(h: Harness, shop: tuple[ShopData, str]) -> None:
    cid, _, _, ts, pid = await ticket(
        h, f"I paid full price for {DROPPED} and now it's in the sale. Can you refund me the difference?"
    )
    text, _ = approval(h, ts, cid, pid)
    assert f"*Refund 25.00 EUR price difference on {DROPPED}*" in text and "amount 30 capped at 25" in text
    answer = await h.command(f"deny #{cid} bought before the sale window", user="U2")
    assert answer == f"Denied #{cid}:1: Refund 25.00 EUR price difference on {DROPPED}."
    assert "Denied by *Sam Chen*: bought before the sale window" in approval(h, ts, cid, pid)[0]
    assert not shop[0].writes


async def test_someone_not_on_the_approvers_list_is_refused_and_nothing_runs(
    h: Harness, shop: tuple[ShopData, str]
) -> None:
    cid, _, channel, ts, pid = await ticket(h)
    refusal = "You're not on the approvers list for cancel_order in the store's YAML, so you can't"
    await h.press("handoff_approve", approval_value(cid, pid), channel, ts, user="U3")
    assert h.slack.responses[-1]["response_type"] == "ephemeral"
    assert h.slack.responses[-1]["text"] == f"{refusal} approve it; nothing was run."
    await h.press("handoff_deny", approval_value(cid, pid), channel, ts, user="U3")
    assert h.slack.responses[-1]["text"] == f"{refusal} deny it; nothing was run."
    assert not h.slack.views  # refused before any note window opens
    assert await h.command(f"approve #{cid}", user="U3") == f"{refusal} approve it; nothing was run."
    assert await h.command(f"deny #{cid} no", user="U3") == f"{refusal} deny it; nothing was run."
    # The buttons work only in the inbox's channels.
    await h.press("handoff_approve", approval_value(cid, pid), "C_RANDOM", ts, user="U1")
    assert "only in the support inbox" in h.slack.responses[-1]["text"]
    await h.settle()
    assert not shop[0].writes
    text, buttons = approval(h, ts, cid, pid)
    assert "Waiting for approval" in text and buttons == ["handoff_approve", "handoff_deny"]
    assert (await h.svc.core.get(cid)).context["prepared"][0]["state"] == "prepared"


async def test_a_group_slack_will_not_list_lets_nobody_in_and_says_why(
    h: Harness, shop: tuple[ShopData, str]
) -> None:
    h.slack.usergroups_scope = False  # the app was installed without usergroups:read
    cid, _, channel, ts, pid = await ticket(h)
    await h.press("handoff_approve", approval_value(cid, pid), channel, ts, user="U2")
    text = h.slack.responses[-1]["text"]
    assert "not on the approvers list" in text and f"Slack did not say who is in `{LEADS}` (missing_scope)" in text
    assert not shop[0].writes
    await h.press("handoff_approve", approval_value(cid, pid), channel, ts, user="U1")  # listed by id
    assert len(cancels(shop[0])) == 1


README = Path(__file__).resolve().parent.parent.parent / "README.md"
README_MARK = "<!-- ticket with a prepared action: tests/slack/test_approvals.py -->"


def readme_json(ticket: dict[str, Any]) -> str:
    """The README's layout of a ticket: one block a line."""
    lines = ",\n  ".join(json.dumps(b, ensure_ascii=False) for b in ticket["blocks"])
    return f'{{"text": {json.dumps(ticket["text"], ensure_ascii=False)},\n "blocks": [\n  {lines}]}}'


async def test_the_readme_shows_the_ticket_as_the_code_renders_it(h: Harness) -> None:
    """The README's ticket is this code's output for the flash-sale cancellation (the number
    made #42, its date fixed, the tag picker cut to the ticked tags, the conversation cut to the
    shopper's message); UPDATE_README=1 rewrites it after a deliberate change to the ticket."""
    cid, _, _, ts, pid = await ticket(h)
    conv = await h.svc.core.get(cid)
    history = await h.svc.core.history(cid, include_notes=True)
    inbox = h.svc.bridges["slack"]
    real = inbox._ticket(conv, history)
    assert real.blocks == h.parent(ts)["blocks"]  # what is rendered here is what Slack got
    prepared = [{**e, "id": 7} for e in conv.context["prepared"]]
    shown = replace(
        conv,
        id=42,
        handed_off_at=datetime(2026, 11, 27, 9, 14, tzinfo=UTC),
        context={**conv.context, "prepared": prepared},
    )
    # The shopper's words only: the assistant's expectation text is not this test's business.
    t = inbox._ticket(shown, [m for m in history if m.role == "shopper"])
    for block in t.blocks:
        for element in block.get("elements", []):
            if element.get("action_id") == "handoff_tag":
                element["options"] = [o for o in element["options"] if "✓" in o["text"]["text"]]
    expected = readme_json({"text": t.text, "blocks": t.blocks})
    text = README.read_text()
    found = re.search(re.escape(README_MARK) + r"\n```json\n(.*?)\n```", text, re.S)
    if os.environ.get("UPDATE_README"):
        assert found, f"README has no {README_MARK}"
        README.write_text(text[: found.start(1)] + expected + text[found.end(1) :])
        return
    assert found and json.loads(found.group(1)) == json.loads(expected), (
        "README's ticket differs from the code's: UPDATE_README=1 pytest -k readme_shows"
    )


def test_the_ticket_says_a_write_is_being_retried_and_escapes_what_it_shows() -> None:
    """What the ticket says between an approval and its outcome, and for a write that could
    not be prepared; text from the store's data is escaped like the shopper's."""
    from bridges.slack.blocks import approval_blocks
    from domain.ports import ConversationView, CustomerView

    entries = [
        {"id": 3, "seq": 1, "state": "approved", "by": "Maria Lopez", "attempts": 2, "max_attempts": 5,
         "error": "HTTP 503: unavailable", "summary": "Cancel order <!channel> & refund", "action": "cancel_order"},
        {"state": "not_prepared", "action": "refund_price_difference", "label": "Refund the difference",
         "order": "FP-1", "problems": ["amount: -3 is below 0.01"]},
    ]
    conv = ConversationView(
        id=9, channel="widget", channel_ref="x", state="queued", owner=None, priority=1, tags=(),
        reason=None, summary=None, context={"prepared": entries}, memory={}, sale=None, inbox_ref=None,
        blocked=False, customer=CustomerView(id=1, channel="widget", external_id="x"),
        created_at=datetime(2026, 11, 27, tzinfo=UTC),
    )
    blocks = approval_blocks(conv)
    assert [b["type"] for b in blocks] == ["section", "section"]  # nothing left to press
    running, unprepared = (b["text"]["text"] for b in blocks)
    assert "*Cancel order &lt;!channel&gt; &amp; refund*" in running and "<!channel>" not in running
    assert "Approved by *Maria Lopez*: running (attempt 2 of 5 failed: HTTP 503: unavailable; retrying)" in running
    assert ":warning: *Not prepared*" in unprepared and "order FP-1" in unprepared
    assert "amount: -3 is below 0.01 (do it by hand in the store's admin)" in unprepared


async def test_deny_by_command_without_a_reason_opens_the_note_window(
    h: Harness, shop: tuple[ShopData, str]
) -> None:
    cid, _, _, ts, pid = await ticket(h)
    answer = await h.command(f"deny #{cid}")
    assert answer == f"Write why #{cid}:1 is denied in the window; nothing is denied until you send it."
    [call] = h.slack.ok_calls("views.open")
    assert call.args["trigger_id"] == "t1"  # the command's own trigger
    [opened] = h.slack.views
    assert opened["callback_id"] == "handoff_deny" and SUMMARY in json.dumps(opened["blocks"])
    assert "waiting" in approval(h, ts, cid, pid)[0].lower()  # nothing decided by opening it
    body = view_submission_body(opened, {"note": {"note": "Outside the price-match window"}})
    assert (await h.post(body, FORM)).status == 200
    await h.settle()
    assert "Denied by *Maria Lopez*: Outside the price-match window" in approval(h, ts, cid, pid)[0]
    assert not shop[0].writes


async def test_deny_by_command_when_slack_cannot_open_the_window_says_what_to_type(
    h: Harness, shop: tuple[ShopData, str]
) -> None:
    cid, _, _, ts, pid = await ticket(h)
    h.slack.errors[("views.open", "")] = "expired_trigger_id"
    assert await h.command(f"deny #{cid}") == (
        "Say why it is denied: the note is kept on the ticket. Type `/handoff deny #42 reason`."
    )
    assert "waiting" in approval(h, ts, cid, pid)[0].lower()
    assert not h.slack.views and not shop[0].writes
