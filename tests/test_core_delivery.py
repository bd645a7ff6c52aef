"""The core and the outbox on SQLite and (when TEST_DATABASE_URL is set) PostgreSQL, with
in-memory fakes of the ports: ordering, idempotency, retries, restarts."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from core.delivery import DeliveryWorker
from core.lifecycle import Core
from core.live import LiveHub
from core.pacing import Pacer
from domain.ports import DeliveryError
from storage import repo
from storage.db import make_engine, make_sessionmaker
from storage.migrate import upgrade_async
from storage.models import OutboxRow, StateEvent, TagEvent
from tests.clock import FakeClock
from tests.conftest import eventually, fresh_pg_database, migrated_sqlite
from tests.fakes import FakeChannel, FakeInbox, ScriptedAgent

BACKENDS = ["sqlite"] + (["postgresql"] if os.environ.get("TEST_DATABASE_URL") else [])


@pytest.fixture(params=BACKENDS)
async def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path
) -> AsyncIterator[str]:
    """An empty, migrated database on each backend."""
    if request.param == "sqlite":
        yield migrated_sqlite(sqlite_template, tmp_path / "core.db")
        return
    async with fresh_pg_database() as url:
        yield url


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """PostgreSQL only, for what only exists there (the pace shared by instances)."""
    async with fresh_pg_database() as url:
        yield url


class Rig:
    """The core and the worker on a fake clock: retries, Retry-After and pacing waits take no
    real time, and the worker runs only when a test drains it (no background loop)."""

    def __init__(
        self, url: str, clock: FakeClock | None = None, channel: FakeChannel | None = None
    ) -> None:
        self.url = url
        self.clock = clock or FakeClock()
        self.channel = channel or FakeChannel(clock=self.clock)
        self.inbox = FakeInbox()
        self.agent = ScriptedAgent()

    async def start(self) -> Rig:
        self.engine = make_engine(self.url)
        self.sessions = make_sessionmaker(self.engine)
        self.live = LiveHub()
        self.pacer = Pacer(self.clock)
        self.worker = DeliveryWorker(
            self.sessions,
            bridges=[self.channel, self.inbox],
            pacer=self.pacer,
            poll_seconds=0.02,
            clock=self.clock,
        )
        self.core = Core(
            sessions=self.sessions,
            agent=self.agent,
            live=self.live,
            multi_instance=self.url.startswith("postgresql"),
            on_outbox=self.worker.kick,
            bridges=[self.channel, self.inbox],
            clock=self.clock,
        )
        return self

    async def settle(self) -> None:
        await self.core.idle()
        await self.worker.drain(timeout=20)

    async def one_pass(self) -> None:
        """One worker tick and the deliveries it started."""
        await self.worker.tick()
        await asyncio.gather(*self.worker._tasks)

    async def stop(self) -> None:
        await self.worker.stop()
        await self.core.close()
        await self.engine.dispose()


@pytest.fixture
async def rig(database_url: str) -> AsyncIterator[Rig]:
    r = await Rig(database_url).start()
    yield r
    await r.stop()


async def test_messages_are_answered_in_order_once_each(rig: Rig) -> None:
    conv = (await rig.core.start_conversation("widget", "s1")).conversation
    texts = [f"message {i}" for i in range(12)]
    results = await asyncio.gather(
        *[
            rig.core.shopper_message(conv.id, t, source="widget", platform_id=f"c{i}")
            for i, t in enumerate(texts)
        ]
    )
    assert all(new for _, new in results)
    # A retried client id is the same message, not a second one.
    again, new = await rig.core.shopper_message(
        conv.id, "message 3", source="widget", platform_id="c3"
    )
    assert not new and again.id == results[3][0].id
    await rig.settle()
    order = [int(t.split()[1]) for t in rig.agent.seen]
    assert sorted(order) == list(range(12)) and len(order) == 12
    # one at a time per conversation: replies went out in the order the messages were taken in
    stored = [m.text for m in await rig.core.history(conv.id) if m.role == "shopper"]
    assert rig.channel.texts(conv.id) == [f"echo: {t}" for t in stored]


async def test_conversations_run_concurrently_but_each_in_order(rig: Rig) -> None:
    convs = [(await rig.core.start_conversation("widget", f"s{i}")).conversation for i in range(20)]
    await asyncio.gather(
        *[
            rig.core.shopper_message(c.id, f"{c.id}-{j}", source="widget", platform_id=str(j))
            for c in convs
            for j in range(3)
        ]
    )
    await rig.settle()
    for c in convs:
        stored = [m.text for m in await rig.core.history(c.id) if m.role == "shopper"]
        assert sorted(stored) == [f"{c.id}-{j}" for j in range(3)]
        assert rig.channel.texts(c.id) == [f"echo: {t}" for t in stored]


async def test_handoff_opens_thread_with_history_and_relays_later_messages(rig: Rig) -> None:
    conv = (await rig.core.start_conversation("widget", "s1")).conversation
    await rig.core.shopper_message(conv.id, "hello", source="widget", platform_id="1")
    await rig.settle()
    await rig.core.shopper_message(conv.id, "a person please", source="widget", platform_id="2")
    await rig.settle()
    await rig.core.shopper_message(conv.id, "are you there?", source="widget", platform_id="3")
    await rig.settle()
    assert rig.inbox.threads[conv.id] == [
        "shopper: hello",
        "agent: echo: hello",
        "shopper: a person please",
        "agent: A person will reply soon.",
        "shopper: are you there?",
    ]
    assert len(rig.agent.seen) == 2  # the agent stayed silent once handed off
    view = await rig.core.get(conv.id)
    assert view.state == "queued" and view.tags == ("human-requested",)
    async with rig.sessions() as s:
        events = list(
            await s.scalars(select(StateEvent).where(StateEvent.conversation_id == conv.id))
        )
        tags = list(await s.scalars(select(TagEvent).where(TagEvent.conversation_id == conv.id)))
        assert (await repo.find_by_thread(s, f"T:{conv.id}")).id == conv.id
    assert [(e.old, e.new, e.actor) for e in events] == [("bot", "queued", "agent")]
    assert [(t.tag, t.action, t.actor) for t in tags] == [("human-requested", "add", "agent")]


async def test_staff_commands_and_replies(rig: Rig) -> None:
    conv = (await rig.core.start_conversation("widget", "s1")).conversation
    await rig.core.shopper_message(conv.id, "person", source="widget", platform_id="1")
    await rig.settle()
    reply = await rig.core.staff_reply(
        conv.id, "Hi, Anna here", author="Anna Smith", source="web", platform_id="r1"
    )
    assert reply is not None
    assert (
        await rig.core.staff_reply(
            conv.id, "Hi, Anna here", author="Anna Smith", source="web", platform_id="r1"
        )
        is None
    )
    note = await rig.core.staff_reply(conv.id, "; internal only", author="Anna Smith", source="web")
    assert note is not None and note.role == "note"
    res = await rig.core.staff_command(
        conv.id, "tag", actor="Anna Smith", args=["+vip", "-human-requested"]
    )
    assert res.ok and "+vip" in res.text and "-human-requested" in res.text
    res = await rig.core.staff_command(conv.id, "release", actor="Anna Smith")
    assert res.ok and res.conversation.state == "queued" and res.conversation.owner is None
    res = await rig.core.staff_command(conv.id, "resolve", actor="Ben")
    assert res.conversation.state == "resolved"
    await rig.settle()
    sent = rig.channel.texts(conv.id)
    assert "Hi, Anna here" in sent and sent.count("Hi, Anna here") == 1
    assert "internal only" not in " ".join(sent)
    assert [s for _, s in rig.channel.states] == ["queued", "claimed", "queued", "resolved"]
    # A resolved conversation the shopper writes to again starts afresh with the agent.
    await rig.core.shopper_message(conv.id, "one more question", source="widget", platform_id="2")
    await rig.settle()
    view = await rig.core.get(conv.id)
    assert view.state == "bot" and view.tags == ()
    assert rig.channel.texts(conv.id)[-1] == "echo: one more question"
    assert rig.inbox.updates  # the inbox was told about every change


async def test_retry_after_and_transient_errors_are_retried_in_order(rig: Rig) -> None:
    conv = (await rig.core.start_conversation("widget", "s1")).conversation
    rig.channel.failures.extend([DeliveryError("429", retry_after=0.3), DeliveryError("boom")])
    for i in range(3):
        await rig.core.shopper_message(conv.id, f"m{i}", source="widget", platform_id=str(i))
    await rig.settle()
    assert rig.channel.texts(conv.id) == ["echo: m0", "echo: m1", "echo: m2"]
    # Not before the Retry-After, then a backoff of at least half a second for the 5xx.
    assert rig.clock.elapsed >= 0.3 + 0.5
    assert rig.worker.stats.rate_limited == 1 and rig.worker.stats.retried == 2
    async with rig.sessions() as s:
        rows = list(
            await s.scalars(
                select(OutboxRow).where(OutboxRow.lane == "shopper", OutboxRow.kind == "send")
            )
        )
    assert all(r.status == "sent" for r in rows)
    assert rows[0].attempts == 3


async def test_a_long_outage_loses_nothing_until_the_give_up_age(rig: Rig) -> None:
    conv = (await rig.core.start_conversation("widget", "s1")).conversation
    # More failures in a row than the old cap of 25 attempts: still delivered once it is back.
    rig.channel.failures.extend([DeliveryError("503", retry_after=0.01)] * 40)
    await rig.core.shopper_message(conv.id, "m0", source="widget", platform_id="0")
    await rig.settle()
    assert rig.channel.texts(conv.id) == ["echo: m0"]
    # Past the give-up age a transient failure is final, and shows as failed.
    rig.worker.give_up_seconds = 0.0
    rig.channel.failures.append(DeliveryError("503"))
    await rig.core.shopper_message(conv.id, "m1", source="widget", platform_id="1")
    await rig.settle()
    assert rig.channel.texts(conv.id) == ["echo: m0"]
    async with rig.sessions() as s:
        statuses = list(
            await s.scalars(
                select(OutboxRow.status)
                .where(OutboxRow.lane == "shopper", OutboxRow.kind == "send")
                .order_by(OutboxRow.id)
            )
        )
    assert statuses == ["sent", "failed"]


async def test_permanent_failure_marks_blocked_and_stops(rig: Rig) -> None:
    conv = (await rig.core.start_conversation("widget", "s1")).conversation
    rig.channel.failures.append(
        DeliveryError("Forbidden: bot was blocked by the user", permanent=True, blocked=True)
    )
    await rig.core.shopper_message(conv.id, "hi", source="widget", platform_id="1")
    await rig.settle()
    view = await rig.core.get(conv.id)
    assert view.blocked
    await rig.core.shopper_message(conv.id, "again", source="widget", platform_id="2")
    await rig.settle()
    assert rig.channel.sent == []  # nothing more is attempted to a chat that blocked the bot
    async with rig.sessions() as s:
        statuses = list(
            await s.scalars(select(OutboxRow.status).where(OutboxRow.lane == "shopper"))
        )
    assert set(statuses) == {"failed"}


async def test_inbox_outage_queues_and_recovers_without_blocking_shopper(rig: Rig) -> None:
    conv = (await rig.core.start_conversation("widget", "s1")).conversation
    rig.inbox.failures.extend([DeliveryError("500", retry_after=0.2)] * 3)
    await rig.core.shopper_message(conv.id, "person", source="widget", platform_id="1")
    await rig.core.idle()
    await rig.one_pass()
    assert rig.inbox.failures  # the inbox is still failing...
    assert rig.channel.texts(conv.id) == ["A person will reply soon."]  # ...and the shopper lane is not blocked
    await rig.settle()
    assert rig.inbox.threads[conv.id][-1] == "agent: A person will reply soon."


async def test_restart_resumes_unsent_rows(database_url: str) -> None:
    await upgrade_async(database_url)
    first = await Rig(database_url).start()
    conv = (await first.core.start_conversation("widget", "s1")).conversation
    await first.core.shopper_message(conv.id, "hello", source="widget", platform_id="1")
    await first.core.idle()
    # Crash with the reply in the outbox, claimed but not sent.
    async with first.sessions() as s, s.begin():
        row = await s.scalar(select(OutboxRow).where(OutboxRow.kind == "send"))
        row.status = "sending"
    await first.stop()
    second = await Rig(database_url).start()
    assert await second.worker.recover_all() == 1
    await second.settle()
    assert second.channel.texts(conv.id) == ["echo: hello"]
    await second.stop()


async def test_pacer_holds_a_burst_to_the_rate(rig: Rig) -> None:
    rig.pacer.limit("fake-chat", rate=20.0, burst=1)
    conv = (await rig.core.start_conversation("widget", "s1")).conversation
    for i in range(6):
        await rig.core.shopper_message(conv.id, f"m{i}", source="widget", platform_id=str(i))
    await rig.settle()
    assert len(rig.channel.texts(conv.id)) == 6
    at = rig.channel.sent_at
    assert all(b - a >= 1 / 20.0 for a, b in zip(at, at[1:], strict=False)), at  # 20/s, no burst


async def test_processed_ids_dedupe(rig: Rig) -> None:
    async with rig.sessions() as s, s.begin():
        assert await repo.mark_processed(s, "slack-event", "Ev1")
        assert not await repo.mark_processed(s, "slack-event", "Ev1")
        assert await repo.mark_processed(s, "telegram-update", "Ev1")


def test_backends_listed() -> None:
    assert "sqlite" in BACKENDS


async def _true(value: bool) -> bool:
    return value


@pytest.mark.skipif("postgresql" not in BACKENDS, reason="needs TEST_DATABASE_URL (PostgreSQL)")
async def test_shared_pacer_spaces_sends_across_instances(pg_url: str) -> None:
    """Two instances (two engines) reserving slots for one Slack channel get them a full
    interval apart, so together they keep the channel's pace."""
    from core.shared_pacing import SharedPacer

    await upgrade_async(pg_url)
    engines = [make_engine(pg_url), make_engine(pg_url)]
    try:
        pacers = [SharedPacer(make_sessionmaker(e), {"slack-channel": 10.0}) for e in engines]
        slots = await asyncio.gather(*[pacers[i % 2].reserve("slack-channel:C1") for i in range(10)])
        other = await pacers[0].reserve("slack-channel:C2")
        ordered = sorted(slots)
        gaps = [(b - a).total_seconds() for a, b in zip(ordered, ordered[1:], strict=False)]
        assert all(g >= 0.099 for g in gaps), gaps
        assert other is not None and other < ordered[-1]  # another channel has its own slots
        assert await pacers[0].reserve("telegram-chat:1") is None  # not a shared limit
    finally:
        for e in engines:
            await e.dispose()


async def test_live_events_go_out_on_commit_and_never_after_a_rollback(database_url: str) -> None:
    from storage.db import after_commit

    await upgrade_async(database_url)
    engine = make_engine(database_url)
    sessions = make_sessionmaker(engine)
    seen: list[str] = []
    try:
        with pytest.raises(RuntimeError):
            async with sessions() as s, s.begin():
                after_commit(s, lambda: seen.append("rolled back"))
                raise RuntimeError("the change fails")
        with pytest.raises(RuntimeError):
            async with sessions() as s, s.begin():
                after_commit(s, lambda: seen.append("rolled back after a savepoint"))
                async with s.begin_nested():
                    pass  # RELEASE SAVEPOINT: not the commit of the change
                raise RuntimeError("the change fails after its savepoint")
        async with sessions() as s, s.begin():
            after_commit(s, lambda: seen.append("committed"))
            assert seen == []  # not before the commit
        assert seen == ["committed"]
    finally:
        await engine.dispose()


async def test_the_agent_sees_the_latest_messages_in_order_however_long_the_chat(rig: Rig) -> None:
    from core import lifecycle as core_module

    conv = (await rig.core.start_conversation("widget", "s1")).conversation
    for i in range(core_module.AGENT_HISTORY):
        await rig.core.shopper_message(conv.id, f"m{i}", source="widget", platform_id=str(i))
        await rig.core.idle()
    n = core_module.AGENT_HISTORY
    seen = rig.agent.histories[-1]
    assert len(seen) == n  # of the 2n - 1 messages by then, the latest n
    assert [m.text for m in seen[-3:]] == [f"m{n - 2}", f"echo: m{n - 2}", f"m{n - 1}"]
    assert [m.id for m in seen] == sorted(m.id for m in seen)


@pytest.mark.skipif("postgresql" not in BACKENDS, reason="needs TEST_DATABASE_URL (PostgreSQL)")
async def test_a_send_waiting_for_a_shared_slot_keeps_its_claim(pg_url: str) -> None:
    """The shared pace can put a send's slot further away than its lease; another instance
    must not take the row meanwhile and send it a second time."""
    from core.shared_pacing import SharedPacer

    database_url = pg_url

    await upgrade_async(database_url)
    clock = FakeClock(autojump=False)  # one time for both instances, moved by the test
    shopper = FakeChannel(clock=clock)  # one shopper, whichever instance sends
    first = await Rig(database_url, clock, shopper).start()
    second = await Rig(database_url, clock, shopper).start()
    try:
        for rig in (first, second):
            rig.worker.lease_seconds = 1.0
            rig.worker.shared_pacer = SharedPacer(rig.sessions, {"fake-chat": 1 / 1.5}, clock)
        conv = (await first.core.start_conversation("widget", "s1")).conversation
        key = f"fake-chat:{conv.id}"
        t0 = clock.monotonic()
        for _ in range(2):  # other sends hold the next two slots: ours is 3 s away
            await first.worker.shared_pacer.reserve(key)
        await first.core.shopper_message(conv.id, "hi", source="widget", platform_id="1")
        await first.core.idle()
        await first.worker.tick()
        await eventually(lambda: _true(clock.sleepers == 1))  # claimed, waiting for its slot
        clock.advance(1.6)  # past the original lease
        assert await second.worker.recover() == 0
        await second.one_pass()
        assert shopper.sent == []  # not sent by the other instance either
        clock.advance(1.5)  # the slot comes
        await asyncio.gather(*first.worker._tasks)
        assert shopper.texts(conv.id) == ["echo: hi"]
        assert len(shopper.sent_at) == 1 and shopper.sent_at[0] - t0 >= 3.0  # not before its slot
    finally:
        await first.stop()
        await second.stop()


async def test_a_claim_that_fails_leaves_its_lanes_free_for_the_next_tick(rig: Rig) -> None:
    conv = (await rig.core.start_conversation("widget", "s1")).conversation
    await rig.core.shopper_message(conv.id, "hi", source="widget", platform_id="1")
    await rig.core.idle()
    real_claim = rig.worker._claim

    async def broken(row_ids: list[int]) -> dict[int, Any]:
        raise OSError("connection reset while claiming")

    rig.worker._claim = broken  # type: ignore[method-assign]
    with pytest.raises(OSError):
        await rig.worker.tick()
    rig.worker._claim = real_claim  # type: ignore[method-assign]
    await rig.settle()
    assert rig.channel.texts(conv.id) == ["echo: hi"]
