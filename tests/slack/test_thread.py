"""The thread is the ticket: the parent message, the history, and the relay both ways."""

from __future__ import annotations

import json
from typing import Any

from domain.storeconfig import StoreConfig
from tests.conftest import eventually, inbox_login
from tests.slack.conftest import INBOX, Harness, slack_settings
from tests.slack.fake_slack import BOT_ID, FakeSlack


async def test_handoff_opens_a_ticket_with_customer_context_buttons_and_history(h: Harness) -> None:
    cid, _ = await h.shopper(
        "How long does delivery to Austria take?", "My payment for FP-100311 failed"
    )
    channel, ts = await h.thread(cid)
    assert channel == INBOX
    parent = h.parent(ts)
    assert parent["text"].startswith(f"#{cid} payment-failure")
    blocks = parent["blocks"]
    assert blocks[0]["type"] == "header" and blocks[0]["text"]["text"].startswith(f"#{cid} · Ann")
    fields = " ".join(f["text"] for f in blocks[1]["fields"])
    for shown in ("Ann", "ann@example.com", "regular tier", "Web chat", "waiting for a person",
                  "`payment-failure`", "P2"):
        assert shown in fields, shown
    body = h.parent_text(ts)
    assert "Payment failed on FP-100311" in body  # the reason
    assert "*FP-100311*: pending, payment *failed*, sale black-friday, 59.0 EUR" in body
    assert "Hoodie ×1 (stock 2)" in body and "lookup_order: ok" in body  # captured context
    actions = next(b for b in blocks if b["type"] == "actions")["elements"]
    assert [e["action_id"] for e in actions] == [
        "handoff_claim", "handoff_resolve", "handoff_bot", "handoff_tag"
    ]
    picker = actions[-1]["options"]
    assert picker[0]["text"]["text"] == "✓ payment-failure"  # tags it has are ticked
    assert {json.loads(o["value"])[1] for o in picker} >= {"vip", "cancellation"}
    # The history follows in the thread, in order, before anything else.
    thread = h.slack.thread_text(ts)
    first = thread.index("*Shopper:* How long does delivery to Austria take?")
    second = thread.index("*Shopper:* My payment for FP-100311 failed")
    assert first < thread.index("*Assistant:*") < second


async def test_later_shopper_messages_are_posted_into_the_thread_in_order(h: Harness) -> None:
    cid, token = await h.shopper("Can I talk to a person please?")
    _, ts = await h.thread(cid)
    for i in range(5):
        await h.say(cid, token, f"follow-up {i} <!channel> & more")
    await h.svc.worker.drain()
    posts = [p["text"] for p in h.slack.posts(thread_ts=ts) if "follow-up" in p["text"]]
    # In order, each once, and a shopper cannot @-mention the channel.
    assert posts == [f"*Shopper:* follow-up {i} &lt;!channel&gt; &amp; more" for i in range(5)]


async def test_reply_in_thread_reaches_the_shopper_claims_and_edits_the_parent(h: Harness) -> None:
    cid, token = await h.shopper("Can I talk to a person please?")
    channel, ts = await h.thread(cid)
    await h.reply(channel, ts, "Hi Ann, Maria here! Let me check.", user="U1")
    seen = await h.seen_by_shopper(cid, token)
    human = [m for m in seen if m["role"] == "human"]
    assert [m["text"] for m in human] == ["Hi Ann, Maria here! Let me check."]
    assert human[0]["author"] == "Maria Lopez"  # a name, never the Slack user id
    conv = await h.svc.core.get(cid)
    assert conv.state == "claimed" and conv.owner == "Maria Lopez"
    # The ticket was edited in place: still one parent, now claimed, with Release.
    assert len(h.slack.parents()) == 1 and h.parent(ts).get("edits", 0) >= 1
    body = h.parent_text(ts)
    assert "claimed by Maria Lopez" in body and "handoff_release" in body
    assert "handoff_claim" not in body
    # The person's own reply is not posted back into the thread (no echo).
    assert "Maria here" not in h.slack.thread_text(ts)


async def test_a_second_person_replying_does_not_take_the_ticket_over(h: Harness) -> None:
    cid, token = await h.shopper("Can I talk to a person please?")
    channel, ts = await h.thread(cid)
    await h.reply(channel, ts, "Maria here.", user="U1")
    await h.reply(channel, ts, "Sam here too.", user="U2")
    conv = await h.svc.core.get(cid)
    assert conv.owner == "Maria Lopez"
    seen = [m["author"] for m in await h.seen_by_shopper(cid, token) if m["role"] == "human"]
    assert seen == ["Maria Lopez", "Sam Chen"]


async def test_note_prefix_keeps_a_reply_internal(h: Harness) -> None:
    cid, token = await h.shopper("Can I talk to a person please?")
    channel, ts = await h.thread(cid)
    await h.reply(channel, ts, "; checking the warehouse first")
    assert not [m for m in await h.seen_by_shopper(cid, token) if m["role"] in ("human", "note")]
    staff = await h.staff_view(cid)
    notes = [m for m in staff["messages"] if m["role"] == "note"]
    assert [(m["text"], m["author"]) for m in notes] == [("checking the warehouse first", "Maria Lopez")]
    assert (await h.svc.core.get(cid)).state == "queued"  # a note does not claim


async def test_bot_posts_edits_deletions_and_other_messages_are_never_relayed(h: Harness) -> None:
    cid, token = await h.shopper("Can I talk to a person please?")
    channel, ts = await h.thread(cid)
    await h.say(cid, token, "anyone there?")
    await h.svc.worker.drain()
    own = h.slack.posts(thread_ts=ts)[0]["ts"]  # one of our own thread posts
    ignored: list[dict[str, Any]] = [
        h.reply_event(channel, ts, "*Shopper:* echo", bot_id=BOT_ID),  # a bot post (ours)
        h.reply_event(channel, ts, "from another app", app_id="A999", bot_id="B999"),
        {**h.reply_event(channel, ts, "echo of ours"), "ts": own},  # a ts we posted
        h.reply_event(channel, ts, "edited", subtype="message_changed"),
        h.reply_event(channel, ts, "", subtype="message_deleted"),
        h.reply_event(channel, ts, "<@U2> has joined", subtype="channel_join"),
        {**h.reply_event(channel, ts, "top-level chatter"), "thread_ts": None},
        h.reply_event(channel, "1699999999.000001", "another thread"),
        h.reply_event("C_OTHER", ts, "same ts, other channel"),
    ]
    for ev in ignored:
        assert (await h.event(ev)).status == 200
    await h.reply(channel, ts, "the only real reply")
    seen = [m["text"] for m in await h.seen_by_shopper(cid, token) if m["role"] == "human"]
    assert seen == ["the only real reply"]


async def test_slack_markup_reaches_the_shopper_as_plain_text(h: Harness) -> None:
    cid, token = await h.shopper("Can I talk to a person please?")
    channel, ts = await h.thread(cid)
    await h.reply(
        channel,
        ts,
        "Fish &amp; chips &lt;3 see <https://shop.example/faq|our FAQ>, "
        "<https://shop.example/returns> or <mailto:help@shop.example|help@shop.example>; "
        "<@U2> can help too",
    )
    seen = [m["text"] for m in await h.seen_by_shopper(cid, token) if m["role"] == "human"]
    assert seen == [
        "Fish & chips <3 see our FAQ (https://shop.example/faq), https://shop.example/returns "
        "or help@shop.example; @Sam Chen can help too"
    ]


async def test_a_reply_that_cannot_be_sent_is_explained_to_its_author(h: Harness) -> None:
    cid, token = await h.shopper("Can I talk to a person please?")
    channel, ts = await h.thread(cid)
    await h.reply(channel, ts, "x" * 5000, user="U2")
    assert not [m for m in await h.seen_by_shopper(cid, token) if m["role"] == "human"]
    [note] = h.slack.ephemerals
    assert note["user"] == "U2" and note["channel"] == channel and note["thread_ts"] == ts
    assert "Not sent to the shopper" in note["text"] and "too long" in note["text"]
    files = h.reply_event(channel, ts, "see attached", subtype="file_share")
    assert (await h.event(files)).status == 200
    await h.settle()
    assert "Files can't be passed on" in h.slack.ephemerals[-1]["text"]
    assert not [m for m in await h.seen_by_shopper(cid, token) if m["role"] == "human"]


async def test_replies_from_the_web_inbox_are_posted_into_the_thread(h: Harness) -> None:
    cid, token = await h.shopper("Can I talk to a person please?")
    _, ts = await h.thread(cid)
    resp = await h.client.post(
        f"/inbox/api/conversations/{cid}/reply",
        headers=await inbox_login(h.client, "Lee"),
        json={"text": "Answered from the web inbox"},
    )
    assert resp.status == 200
    await h.svc.worker.drain()
    assert "*Lee:* Answered from the web inbox" in h.slack.thread_text(ts)
    assert [m["text"] for m in await h.seen_by_shopper(cid, token) if m["role"] == "human"] == [
        "Answered from the web inbox"
    ]


async def test_a_long_history_is_split_within_slack_limits_and_nothing_is_lost(h: Harness) -> None:
    started = await h.svc.core.start_conversation("widget", name="Ann", email="ann@example.com", with_token=True)
    cid, token = started.conversation.id, started.token
    texts = [(f"[m{i:02d}] " + ("all work and no play " * 180)[: 3500 + i]).strip() for i in range(40)]
    for i, text in enumerate(texts):
        await h.svc.core.shopper_message(cid, text, source="widget", platform_id=f"p{i}", answer=False)
    await h.say(cid, token, "Can I talk to a person please?")
    _, ts = await h.thread(cid)
    posts = h.slack.posts(thread_ts=ts)
    # About 145,000 characters: the parent shows the end, the thread the beginning, in several
    # posts since one holds at most 40,000 characters.
    assert len(posts) >= 3
    for p in posts:
        assert len(p["blocks"]) <= 50 and len(p["text"]) <= 40_000
        assert all(len(b["text"]["text"]) <= 3000 for b in p["blocks"])
        # The text fallback is the blocks' text, not a cut of it.
        assert p["text"] == "\n".join(b["text"]["text"] for b in p["blocks"])
    parent = h.parent(ts)
    assert len(parent["blocks"]) <= 50
    assert all(len(b["text"]["text"]) <= 3000 for b in parent["blocks"] if b["type"] == "section" and "text" in b)
    replies = "\n".join(b["text"]["text"] for p in posts for b in p["blocks"])
    inline = "\n".join(b["text"]["text"] for b in parent["blocks"] if b["type"] == "section" and "text" in b)
    shown = (replies + "\n" + inline).replace("\n", "")  # the beginning, then the end
    order = [shown.index(f"[m{i:02d}]") for i in range(40)]
    assert order == sorted(order)
    for text in texts:  # every character of every message, once
        assert shown.count(text[:40]) == 1
        assert text.replace("\n", "") in shown


async def test_tag_routing_opens_the_ticket_in_the_tags_channel(
    make_client: Any, slack: FakeSlack, store_config: StoreConfig
) -> None:
    tags = dict(store_config.tags)
    tags["payment-failure"] = tags["payment-failure"].model_copy(update={"channel": "C_PAY"})
    tags["human-requested"] = tags["human-requested"].model_copy(update={"channel": "C_GONE"})
    config = store_config.model_copy(update={"tags": tags})
    slack.errors[("chat.postMessage", "C_GONE")] = "channel_not_found"
    h = Harness(await make_client(config, **slack_settings(slack)), slack)
    paid, paid_token = await h.shopper("My payment for FP-100311 failed")
    channel, ts = await h.thread(paid)
    assert channel == "C_PAY" and h.slack.parents("C_PAY")[0]["ts"] == ts
    assert "*Shopper:* My payment for FP-100311 failed" in h.slack.thread_text(ts)
    await h.reply(channel, ts, "On it")  # replies in a routed channel's thread work too
    assert [m["text"] for m in await h.seen_by_shopper(paid, paid_token) if m["role"] == "human"] == ["On it"]
    assert f"#{paid}" in await h.command("list", channel="C_PAY")  # the command works there
    # A tag routed to a channel Slack does not know: the ticket opens in the inbox, saying why.
    asked, _ = await h.shopper("Can I talk to a person please?", email="bo@example.com", name="Bo")
    channel, ts = await h.thread(asked)
    assert channel == INBOX
    assert "channel_not_found" in h.parent_text(ts) and "<#C_GONE>" in h.parent_text(ts)


async def test_an_unclaimed_handoff_gets_one_reminder_with_a_mention(
    make_client: Any, slack: FakeSlack, store_config: StoreConfig
) -> None:
    from datetime import timedelta

    from storage.models import Conversation, utcnow

    store = store_config.store.model_copy(update={"reminder_mention": "<!subteam^S0SUPPORT>"})
    config = store_config.model_copy(update={"store": store})
    h = Harness(await make_client(config, **slack_settings(slack)), slack)
    waiting, _ = await h.shopper("Can I talk to a person please?")
    claimed, _ = await h.shopper("Can I talk to a person please?", email="bo@example.com")
    recent, _ = await h.shopper("Can I talk to a person please?", email="cy@example.com")
    _, ts = await h.thread(waiting)
    channel, claimed_ts = await h.thread(claimed)
    await h.thread(recent)
    await h.reply(channel, claimed_ts, "mine")
    async with h.svc.core.sessions() as s, s.begin():
        for cid in (waiting, claimed):
            conv = await s.get(Conversation, cid)
            assert conv is not None
            conv.handed_off_at = utcnow() - timedelta(minutes=16)  # past the 15-minute SLA
    reminders = h.svc.bridges["slack"].reminders
    assert await reminders.check() == [waiting]
    assert await reminders.check() == []  # once per handoff
    await h.svc.worker.drain()
    [note] = [p["text"] for p in h.slack.posts() if "without an owner" in p["text"]]
    assert note.startswith("<!subteam^S0SUPPORT> :alarm_clock:")  # a real mention, not escaped
    assert f"#{waiting} has waited 16 minutes" in note
    assert note in h.slack.thread_text(ts)


async def test_the_shopper_sees_people_by_first_name_when_a_ticket_is_claimed(h: Harness) -> None:
    cid, token = await h.shopper("Can I talk to a person please?")
    channel, ts = await h.thread(cid)
    await h.press("handoff_claim", str(cid), channel, ts, user="U2")
    seen = await eventually(lambda: _system(h, cid, token))
    assert "Sam from our team has joined the chat." in seen
    assert not any("U2" in m for m in seen)


async def _system(h: Harness, cid: int, token: str) -> list[str]:
    return [m["text"] for m in await h.seen_by_shopper(cid, token) if m["role"] == "system" and "joined" in m["text"]]
