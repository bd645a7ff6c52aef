"""Claim, release, tag, resolve and back-to-AI, by button, tag picker and /handoff command; the
ticket is edited in place after each."""

from __future__ import annotations

import json

from tests.conftest import eventually
from tests.slack.conftest import INBOX, Harness


async def test_buttons_claim_release_tag_resolve_and_back_to_ai(h: Harness) -> None:
    cid, token = await h.shopper("Can I talk to a person please?")
    channel, ts = await h.thread(cid)

    await h.press("handoff_claim", str(cid), channel, ts, user="U2")
    conv = await h.svc.core.get(cid)
    assert conv.state == "claimed" and conv.owner == "Sam Chen"
    body = h.parent_text(ts)
    assert "claimed by Sam Chen" in body and "handoff_release" in body and "handoff_claim" not in body

    await h.press("handoff_release", str(cid), channel, ts, user="U2")
    assert (await h.svc.core.get(cid)).state == "queued"
    body = h.parent_text(ts)
    assert "waiting for a person" in body and "handoff_claim" in body

    await h.pick_tag(cid, "vip", channel, ts)
    assert (await h.svc.core.get(cid)).tags == ("human-requested", "vip")
    assert ":star:`vip`" in h.parent_text(ts) and "✓ vip" in h.parent_text(ts)
    await h.pick_tag(cid, "human-requested", channel, ts)  # picking a ticked tag removes it
    assert (await h.svc.core.get(cid)).tags == ("vip",)
    assert "`human-requested`" not in h.parent(ts)["blocks"][1]["fields"][3]["text"]

    await h.press("handoff_resolve", str(cid), channel, ts)
    assert (await h.svc.core.get(cid)).state == "resolved"
    assert "resolved" in h.parent_text(ts) and "handoff_resolve" not in h.parent_text(ts)
    seen = [m["text"] for m in await h.seen_by_shopper(cid, token)]
    assert any("marked as resolved" in t for t in seen)

    await h.press("handoff_bot", str(cid), channel, ts)
    assert (await h.svc.core.get(cid)).state == "bot"
    assert "with the AI" in h.parent_text(ts) and "handoff_bot" not in h.parent_text(ts)
    await h.say(cid, token, "How long does delivery to Germany take?")
    last = (await h.seen_by_shopper(cid, token))[-1]
    assert last["role"] == "agent" and last["sources"] == ["shipping.md"]  # the AI answers again

    # Every change edited the one parent; none posted a new one.
    assert len(h.slack.parents()) == 1
    assert h.parent(ts)["edits"] == len(h.slack.ok_calls("chat.update")) >= 6
    assert not h.slack.responses  # nothing went wrong, so nobody was told anything


async def test_a_button_that_cannot_act_says_why_to_the_person_only(h: Harness) -> None:
    cid, _ = await h.shopper("Can I talk to a person please?")
    channel, ts = await h.thread(cid)
    await h.press("handoff_release", str(cid), channel, ts)
    [answer] = h.slack.responses
    assert answer["text"] == f"#{cid} is not claimed."
    assert answer["response_type"] == "ephemeral" and answer["replace_original"] is False
    await h.press("handoff_claim", "999", channel, ts)
    assert "There is no conversation #999" in h.slack.responses[-1]["text"]
    await h.press("handoff_claim", str(cid), "C_RANDOM", ts)
    assert "only in the support inbox" in h.slack.responses[-1]["text"]
    assert (await h.svc.core.get(cid)).state == "queued"


async def test_a_ticket_shared_outside_the_inbox_cannot_retag_or_correct(h: Harness) -> None:
    """A ticket forwarded to another channel keeps its controls; they must not act there."""
    cid, _ = await h.shopper("Can I talk to a person please?")
    channel, ts = await h.thread(cid)
    await h.pick_tag(cid, "vip", "C_RANDOM", ts)
    assert "only in the support inbox" in h.slack.responses[-1]["text"]
    await h.press("handoff_wrong", str(cid), "C_RANDOM", ts)
    assert "only in the support inbox" in h.slack.responses[-1]["text"]
    assert h.slack.responses[-1]["response_type"] == "ephemeral"
    conv = await h.svc.core.get(cid)
    assert conv.tags == ("human-requested",)
    await h.pick_tag(cid, "vip", channel, ts)  # the same pick inside the inbox does act
    assert (await h.svc.core.get(cid)).tags == ("human-requested", "vip")


async def test_slash_command_claim_release_tag_resolve_bot(h: Harness) -> None:
    cid, token = await h.shopper("Can I talk to a person please?")
    _, ts = await h.thread(cid)
    assert await h.command(f"claim #{cid}", user="U2") == f"You claimed #{cid}."
    assert (await h.svc.core.get(cid)).owner == "Sam Chen"
    assert "claimed by Sam Chen" in h.parent_text(ts)
    assert await h.command(f"tag #{cid} +vip -human-requested") == f"#{cid}: +vip, -human-requested"
    assert (await h.svc.core.get(cid)).tags == ("vip",)
    assert ":star:`vip`" in h.parent_text(ts)
    assert await h.command(f"release {cid}") == f"Released #{cid} back to the queue."
    assert "waiting for a person" in h.parent_text(ts)
    assert await h.command(f"resolve #{cid}") == f"Resolved #{cid}."
    assert await h.command(f"resolve #{cid}") == f"#{cid} is already resolved."
    assert await h.command(f"bot #{cid}") == f"#{cid} is back with the AI."
    assert "with the AI" in h.parent_text(ts)
    seen = [m["text"] for m in await h.seen_by_shopper(cid, token)]
    assert "You're chatting with our assistant again." in seen[-1]
    assert len(h.slack.parents()) == 1


async def test_slash_command_errors_say_what_to_type(h: Harness) -> None:
    cid, _ = await h.shopper("Can I talk to a person please?")
    await h.thread(cid)
    assert await h.command("claim") == "Which conversation? Type `/handoff claim #42`."
    assert await h.command("resolve forty-two") == (
        "`forty-two` is not a conversation number. Type `/handoff resolve #42`."
    )
    assert await h.command(f"tag #{cid}") == "Say which tags: `/handoff tag #42 +vip -cancellation`."
    unknown = await h.command(f"tag #{cid} +urgent")
    assert unknown.startswith("There is no tag `urgent`. Tags: `payment-failure`,")
    assert "Type `/handoff tag #42 +vip -cancellation`." in unknown
    assert (await h.command("claim #9999")).startswith("There is no conversation #9999.")
    dance = await h.command("dance")
    assert dance.startswith("I don't know `dance`.") and "/handoff claim #42" in dance
    assert "/handoff list" in await h.command("")
    assert "not a period" in await h.command("stats forever")
    refused = await h.command(f"resolve #{cid}", channel="C_RANDOM")
    assert refused.startswith("`/handoff` works only in the support inbox channels") and INBOX in refused
    assert (await h.svc.core.get(cid)).state == "queued" and (await h.svc.core.get(cid)).tags == (
        "human-requested",
    )


async def test_list_shows_the_open_queue_by_priority_then_age_and_stats_count_tags(h: Harness) -> None:
    first, _ = await h.shopper("Can I talk to a person please?")
    second, _ = await h.shopper("Can I talk to a person please?", email="bo@example.com", name="Bo")
    vip, _ = await h.shopper("I'd like to speak to a human", email="vera@example.com", name="Vera")
    for cid in (first, second, vip):
        await h.thread(cid)
    assert (await h.svc.core.get(vip)).priority > (await h.svc.core.get(first)).priority
    await h.command(f"claim #{second}")
    listing = (await h.command("list")).splitlines()
    assert listing[0].startswith("*Open: 3*")
    assert [line.split("|")[1].split(">")[0] for line in listing[1:]] == [
        f"#{vip}", f"#{first}", f"#{second}"
    ]
    assert "Vera" in listing[1] and ":star:`vip`" in listing[1] and "P5" in listing[1]
    assert "claimed by Maria Lopez" in listing[3] and "waiting" in listing[2]
    ref = (await h.svc.core.get(vip)).inbox_ref
    assert ref is not None
    assert f"<https://example.slack.com/archives/{ref['channel']}/p{ref['ts'].replace('.', '')}|#{vip}>" in listing[1]
    stats = await h.command("stats")
    assert "3 handed off" in stats and "2 waiting, 1 claimed" in stats
    assert "• `human-requested` 2" in stats and "• `vip` 1" in stats
    await h.command(f"resolve #{first}")
    await h.command(f"resolve #{second}")
    await h.command(f"resolve #{vip}")
    assert await h.command("list") == ":tada: The queue is empty."
    assert "• `vip` 1" in await h.command("stats 7d")


async def test_a_slow_command_is_acknowledged_at_once_and_answered_later(h: Harness) -> None:
    cid, _ = await h.shopper("Can I talk to a person please?")
    await h.thread(cid)
    h.ctx.ack_budget = 0.0  # as if the database were slow: Slack still gets its answer in time
    assert await h.command(f"claim #{cid}") == ":hourglass_flowing_sand: Working on it…"
    await eventually(lambda: _answered(h))
    assert h.slack.responses[-1]["text"] == f"You claimed #{cid}."
    assert h.slack.responses[-1]["response_type"] == "ephemeral"


async def _answered(h: Harness) -> bool:
    return bool(h.slack.responses)


async def test_tag_picker_values_name_their_conversation(h: Harness) -> None:
    a, _ = await h.shopper("Can I talk to a person please?")
    b, _ = await h.shopper("Can I talk to a person please?", email="bo@example.com")
    channel, ts_a = await h.thread(a)
    _, ts_b = await h.thread(b)
    picker = next(b for b in h.parent(ts_b)["blocks"] if b["type"] == "actions")["elements"][-1]
    assert all(json.loads(o["value"])[0] == b for o in picker["options"])
    await h.pick_tag(b, "fraud-review", channel, ts_a)  # whatever message it came from
    assert "fraud-review" in (await h.svc.core.get(b)).tags
    assert "fraud-review" not in (await h.svc.core.get(a)).tags
