"""Replies out to Telegram through the outbox: people's replies from the inbox, long replies split
and paced, 429 retry_after honoured, 5xx retried, a blocked bot marked and unmarked."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bridges.telegram.channel import split_text
from tests.clock import FakeClock
from tests.conftest import eventually, services
from tests.telegram.conftest import conversation, history, hook, settle, texts
from tests.telegram.fake_telegram import Call, FakeTelegram, member_update, text_update

Start = Callable[..., Awaitable[TestClient]]


def sentences(n: int) -> str:
    return " ".join(f"Sentence {i} says something useful about your order." for i in range(n))


def assert_paced(calls: list[Call]) -> None:
    """Telegram's per-chat limit as we keep it: 1 a second, bursts of at most 2."""
    sent = [c for c in calls if c.status == 200]
    for a, b in zip(sent, sent[2:], strict=False):
        assert b.at - a.at >= 0.9, (a.at, b.at)


def assert_retry_after_honoured(calls: list[Call]) -> None:
    """After a 429 with retry_after, nothing more was sent to that chat before the time was up."""
    for i, c in enumerate(calls):
        if c.status == 429:
            later = [d for d in calls[i + 1 :] if d.chat == c.chat]
            assert all(d.at - c.at >= 0.95 for d in later), [(d.at - c.at) for d in later]


async def handed_off(client: TestClient, tg: FakeTelegram, chat: int, update_id: int) -> int:
    assert await hook(client, text_update(update_id, chat, "Can I talk to a person please?")) == 200
    await texts(tg, chat, 1)
    conv = await conversation(client, chat)
    assert (await services(client).core.get(conv.id)).state == "queued"
    return conv.id


async def inbox_reply(client: TestClient, cid: int, text: str) -> None:
    """A reply from the inbox by the person the client is signed in as (Maria Lopez)."""
    resp = await client.post(f"/inbox/api/conversations/{cid}/reply", json={"text": text})
    assert resp.status == 200, await resp.text()


@pytest.mark.usefixtures("quick_pace")
async def test_handoff_and_human_replies_from_the_inbox_reach_the_chat(
    client: TestClient, tg: FakeTelegram
) -> None:
    cid = await handed_off(client, tg, 601, 1)
    listing = await (await client.get("/inbox/api/conversations?state=open")).json()
    [row] = listing["conversations"]
    assert row["id"] == cid and row["channel"] == "telegram" and "human-requested" in row["tags"]
    # While a person has it, the shopper's messages go to the inbox and the agent stays silent.
    assert await hook(client, text_update(2, 601, "It's about a gift order")) == 200
    await settle(client)
    assert len(tg.texts(601)) == 1
    await inbox_reply(client, cid, "Hi Lena, Maria here. How can I help?")
    await inbox_reply(client, cid, "; internal: check the gift wrap")  # a note stays internal
    got = await texts(tg, 601, 2)
    assert got[1] == "Maria: Hi Lena, Maria here. How can I help?"
    assert (await services(client).core.get(cid)).state == "claimed"
    resp = await client.post(
        f"/inbox/api/conversations/{cid}/command",
        json={"command": "resolve"},
    )
    assert resp.status == 200
    got = await texts(tg, 601, 3)
    assert "resolved" in got[2]
    await settle(client)
    assert not any("gift wrap" in t for t in tg.texts(601))
    detail = await (await client.get(f"/inbox/api/conversations/{cid}")).json()
    assert "It's about a gift order" in [m["text"] for m in detail["messages"]]
    # Writing again after it was resolved: the agent answers once more.
    assert await hook(client, text_update(3, 601, "How long does delivery to Austria take?")) == 200
    got = await texts(tg, 601, 4)
    assert "2–4 working days" in got[3]


def on_fake_time(tg: FakeTelegram) -> FakeClock:
    """Telegram and the service on one clock that moves only when both wait: pacing and
    Retry-After are checked exactly, and take no real time."""
    clock = FakeClock()
    tg.clock = clock.monotonic
    return clock


async def test_a_long_reply_is_split_on_sentence_bounds_and_paced(
    start_service: Start, tg: FakeTelegram
) -> None:
    client = await start_service(max_message_chars=12000, clock=on_fake_time(tg))
    cid = await handed_off(client, tg, 602, 1)
    long_reply = sentences(170)  # about 9,200 characters
    await inbox_reply(client, cid, long_reply)
    got = await texts(tg, 602, 4)  # the agent's handoff message, then three parts
    parts = got[1:]
    assert len(parts) == 3
    assert all(len(p) <= 4096 for p in parts)
    assert all(p.endswith("order.") for p in parts)  # cut after a sentence, never inside one
    assert " ".join(parts) == "Maria: " + long_reply  # nothing lost, nothing repeated
    assert_paced(tg.attempts("sendMessage", 602))
    row = await settle_and_last_row(client, cid)
    assert row == {"parts": 3, "message_id": 4}


async def settle_and_last_row(client: TestClient, cid: int) -> Any:
    from sqlalchemy import select

    from storage.models import OutboxRow

    await settle(client)
    async with services(client).core.sessions() as s:
        row = await s.scalar(
            select(OutboxRow)
            .where(
                OutboxRow.conversation_id == cid,
                OutboxRow.lane == "shopper",
                OutboxRow.kind == "send",
            )
            .order_by(OutboxRow.id.desc())
            .limit(1)
        )
        assert row is not None and row.status == "sent"
        return row.result


@pytest.mark.usefixtures("quick_pace")
async def test_a_split_reply_goes_on_from_the_failed_part_after_429_and_after_a_restart(
    start_service: Start, tg: FakeTelegram
) -> None:
    clock = on_fake_time(tg)
    client = await start_service(max_message_chars=12000, clock=clock)
    cid = await handed_off(client, tg, 603, 1)
    # Part 2 of the first long reply is refused with 429 retry_after=1.
    tg.fail("sendMessage", 429, chat=603, retry_after=1, after=1)
    first = sentences(170)
    await inbox_reply(client, cid, first)
    got = await texts(tg, 603, 4)
    assert " ".join(got[1:4]) == "Maria: " + first and len(got) == 4
    calls = tg.attempts("sendMessage", 603)
    assert [c.status for c in calls[1:]] == [200, 429, 200, 200]
    assert_retry_after_honoured(calls)

    # Part 2 of the second one meets a Bot API outage (502s) and the service is restarted.
    tg.fail("sendMessage", 502, chat=603, times=1000, after=1)
    second = sentences(200).replace("Sentence", "Line")  # about 9,600 characters: 3 parts
    await inbox_reply(client, cid, second)

    async def outage_seen() -> bool:
        return any(c.status == 502 for c in tg.attempts("sendMessage", 603))

    await eventually(outage_seen)
    await client.close()
    tg.clear_faults()
    client = await start_service(max_message_chars=12000, clock=clock)
    await texts(tg, 603, 7)
    await settle(client)
    got = tg.texts(603)
    assert len(got) == 7, got  # part 1 was not sent again
    assert got[4:] == split_text("Maria: " + second)


async def test_rate_limits_recover_every_answer_once_and_in_order(
    start_service: Start, tg: FakeTelegram
) -> None:
    client = await start_service(clock=on_fake_time(tg))
    tg.per_chat_interval = 0.8  # Telegram in a strict mood: no bursts at all
    questions = [
        "What payment methods do you accept?",
        "How long do I have to return shoes?",
        "When does the next drop start?",
        "How long does delivery to Austria take?",
    ]
    for i, q in enumerate(questions):
        assert await hook(client, text_update(10 + i, 604, q)) == 200
    # another chat meets a Bot API hiccup: two 5xx, then fine
    tg.fail("sendMessage", 502, chat=605, times=2)
    assert await hook(client, text_update(20, 605, "What payment methods do you accept?")) == 200
    await texts(tg, 604, 4, timeout=20)
    await texts(tg, 605, 1)
    await settle(client)
    calls = tg.attempts("sendMessage", 604)
    assert any(c.status == 429 for c in calls)
    assert_retry_after_honoured(calls)
    hist = await history(client, 604)
    assert tg.texts(604) == [m.text for m in hist if m.role == "agent"]  # once each, in order
    assert [m.text for m in hist if m.role == "shopper"] == questions
    assert [c.status for c in tg.attempts("sendMessage", 605)] == [502, 502, 200]
    assert len(tg.texts(605)) == 1
    assert services(client).worker.stats.rate_limited >= 1


@pytest.mark.usefixtures("quick_pace")
async def test_a_blocked_bot_marks_the_conversation_stops_retrying_and_unblocks(
    client: TestClient, tg: FakeTelegram
) -> None:
    tg.blocked_chats.add(606)
    assert await hook(client, text_update(1, 606, "Can I talk to a person please?")) == 200
    await settle(client)
    attempts = tg.attempts("sendMessage", 606)
    assert [c.status for c in attempts] == [403]  # once: no retry storm
    conv = await conversation(client, 606)
    assert conv.blocked
    listing = await (await client.get("/inbox/api/conversations?state=all")).json()
    assert next(c for c in listing["conversations"] if c["id"] == conv.id)["blocked"] is True
    # A person's reply cannot reach a shopper who blocked the bot: not even tried.
    await inbox_reply(client, conv.id, "Hello?")
    await settle(client)
    assert len(tg.attempts("sendMessage", 606)) == 1

    # Unblocked (Telegram tells us) and writing again: replies reach the chat again.
    tg.blocked_chats.clear()
    assert await hook(client, member_update(2, 606, "member")) == 200
    assert not (await conversation(client, 606)).blocked
    assert await hook(client, text_update(3, 606, "Are you there?")) == 200
    await inbox_reply(client, conv.id, "Yes, Maria here.")
    got = await texts(tg, 606, 1)
    assert got == ["Maria: Yes, Maria here."]
    # Blocking is also taken from Telegram's my_chat_member update, before any send fails.
    assert await hook(client, member_update(4, 606, "kicked")) == 200
    assert (await conversation(client, 606)).blocked
    listing = await (await client.get("/inbox/api/conversations?state=all")).json()
    assert next(c for c in listing["conversations"] if c["id"] == conv.id)["blocked"] is True


async def test_writing_again_after_blocking_unblocks(client: TestClient, tg: FakeTelegram) -> None:
    tg.blocked_chats.add(607)
    assert await hook(client, text_update(1, 607, "What payment methods do you accept?")) == 200
    await settle(client)
    assert (await conversation(client, 607)).blocked
    tg.blocked_chats.clear()  # the shopper unblocked the bot; no my_chat_member this time
    assert await hook(client, text_update(2, 607, "How long does delivery to Austria take?")) == 200
    got = await texts(tg, 607, 1)
    assert "2–4 working days" in got[0]
    assert not (await conversation(client, 607)).blocked
