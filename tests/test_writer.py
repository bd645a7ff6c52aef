"""The group-commit writer (core/writer.py) on SQLite and (when TEST_DATABASE_URL is set)
PostgreSQL: a burst is written in a few transactions, each conversation's messages stored and
answered in the order they came; a failed batch loses nothing and writes nothing twice; two
instances on one PostgreSQL database take each message once."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from core.writer import BulkOp
from storage.models import Message
from tests.test_core_delivery import BACKENDS, Rig, database_url, pg_url  # noqa: F401 (fixtures)


async def stored(rig: Rig, conversation_id: int, role: str) -> list[Any]:
    async with rig.sessions() as s:
        return list(
            await s.scalars(
                select(Message)
                .where(Message.conversation_id == conversation_id, Message.role == role)
                .order_by(Message.id)
            )
        )


async def test_a_burst_is_written_in_few_transactions_each_conversation_in_order(
    database_url: str,  # noqa: F811
) -> None:
    rig = await Rig(database_url).start()
    try:
        convs = [(await rig.core.start_conversation("widget", f"s{i}")).conversation for i in range(8)]
        before = rig.core.writer.stats.batches
        sends = [
            rig.core.shopper_message(c.id, f"{c.id}:{j}", source="widget", platform_id=f"p{j}")
            for j in range(6)
            for c in convs
        ]
        results = await asyncio.gather(*sends)
        assert all(new for _, new in results)
        # 48 messages taken in by far fewer transactions than messages.
        assert rig.core.writer.stats.batches - before < len(sends) / 4
        await rig.settle()
        for c in convs:
            shopper = await stored(rig, c.id, "shopper")
            # Ids (the stored order) follow the order the messages were submitted in.
            assert [m.text for m in shopper] == [f"{c.id}:{j}" for j in range(6)]
            agent = await stored(rig, c.id, "agent")
            assert [m.meta["reply_to"] for m in agent] == [m.id for m in shopper]
            assert [m.text for m in agent] == [f"echo: {m.text}" for m in shopper]
            assert rig.channel.texts(c.id) == [f"echo: {m.text}" for m in shopper]
        # The turns were batched too: fewer transactions than turns.
        assert rig.core.writer.stats.largest > 1
    finally:
        await rig.stop()


async def test_a_resend_in_the_same_batch_is_one_message(database_url: str) -> None:  # noqa: F811
    rig = await Rig(database_url).start()
    try:
        conv = (await rig.core.start_conversation("widget", "s1")).conversation
        results = await asyncio.gather(
            *[rig.core.shopper_message(conv.id, "hi", source="widget", platform_id="same") for _ in range(3)]
        )
        assert sum(new for _, new in results) == 1
        assert len({m.id for m, _ in results}) == 1
        await rig.settle()
        assert len(await stored(rig, conv.id, "shopper")) == 1
        assert len(await stored(rig, conv.id, "agent")) == 1
    finally:
        await rig.stop()


async def test_a_failed_batch_loses_nothing_and_writes_nothing_twice(
    database_url: str,  # noqa: F811
) -> None:
    rig = await Rig(database_url).start()
    try:
        writer = rig.core.writer
        conv = (await rig.core.start_conversation("widget", "s1")).conversation

        async def broken(s: AsyncSession) -> None:
            raise RuntimeError("this job is broken")

        # A broken job in the same batch as good ones: it alone fails, the others commit.
        jobs = [
            rig.core.shopper_message(conv.id, f"m{i}", source="widget", platform_id=f"m{i}", answer=False)
            for i in range(5)
        ]
        results = await asyncio.gather(*jobs[:2], writer.run(broken), *jobs[2:], return_exceptions=True)
        assert isinstance(results[2], RuntimeError)
        assert all(isinstance(r, tuple) and r[1] for i, r in enumerate(results) if i != 2)
        assert writer.stats.retried_alone >= 6

        # A batch whose transaction fails once (the database went away mid-write) is written
        # again, each job alone: every message once.
        failures = {"left": 1}
        real = rig.core._intake.run

        async def flaky(s: AsyncSession, items: list[Any]) -> Any:
            out = await real(s, items)
            if failures["left"]:
                failures["left"] -= 1
                raise OperationalError("COMMIT", {}, Exception("connection lost"))
            return out

        rig.core._intake = BulkOp("intake", flaky)
        more = await asyncio.gather(
            *[
                rig.core.shopper_message(conv.id, f"n{i}", source="widget", platform_id=f"n{i}", answer=False)
                for i in range(5)
            ]
        )
        assert all(new for _, new in more)
        texts = [m.text for m in await stored(rig, conv.id, "shopper")]
        assert texts == [f"m{i}" for i in range(5)] + [f"n{i}" for i in range(5)]

        # An unknown conversation fails its own caller, not the batch.
        from core.lifecycle import UnknownConversation

        rig.core._intake = BulkOp("intake", real)
        mixed = await asyncio.gather(
            rig.core.shopper_message(99999, "nobody", source="widget", platform_id="x"),
            rig.core.shopper_message(conv.id, "last", source="widget", platform_id="last", answer=False),
            return_exceptions=True,
        )
        assert isinstance(mixed[0], UnknownConversation)
        assert isinstance(mixed[1], tuple) and mixed[1][1]
    finally:
        await rig.stop()


@pytest.mark.skipif("postgresql" not in BACKENDS, reason="needs TEST_DATABASE_URL (PostgreSQL)")
async def test_two_instances_on_postgresql_take_each_message_once(pg_url: str) -> None:  # noqa: F811
    """The same messages sent to both instances at random (a client retrying on the other one):
    each stored once and answered once, in order."""
    a = await Rig(pg_url).start()
    b = await Rig(pg_url).start()
    try:
        assert a.core.multi_instance and b.core.multi_instance
        convs = [(await a.core.start_conversation("widget", f"s{i}")).conversation for i in range(6)]
        rng = random.Random(7)

        async def shopper(conv_id: int) -> None:
            for j in range(5):
                # Sent to one instance, and again (the same client id) to either, at once.
                first, second = rng.choice([a, b]), rng.choice([a, b])
                await asyncio.gather(
                    first.core.shopper_message(conv_id, f"{conv_id}:{j}", source="widget", platform_id=f"p{j}"),
                    second.core.shopper_message(conv_id, f"{conv_id}:{j}", source="widget", platform_id=f"p{j}"),
                )

        await asyncio.gather(*[shopper(c.id) for c in convs])
        for _ in range(3):  # either instance may have left a message to the other's sweep
            await asyncio.gather(a.core.idle(), b.core.idle())
            await asyncio.gather(a.core.resume(), b.core.resume())
        await asyncio.gather(a.core.idle(), b.core.idle())
        for c in convs:
            shopper_msgs = await stored(a, c.id, "shopper")
            assert [m.text for m in shopper_msgs] == [f"{c.id}:{j}" for j in range(5)]
            agent = await stored(a, c.id, "agent")
            assert [m.meta["reply_to"] for m in agent] == [m.id for m in shopper_msgs]
        assert len(a.agent.seen) + len(b.agent.seen) == 30
    finally:
        await a.stop()
        await b.stop()


@pytest.mark.parametrize("size", [1, 300])
async def test_batches_are_capped(database_url: str, size: int) -> None:  # noqa: F811
    rig = await Rig(database_url).start()
    try:
        rig.core.writer.max_batch = 64
        conv = (await rig.core.start_conversation("widget", "s1")).conversation
        await asyncio.gather(
            *[
                rig.core.shopper_message(conv.id, f"m{i}", source="widget", platform_id=f"m{i}", answer=False)
                for i in range(size)
            ]
        )
        assert rig.core.writer.stats.largest <= 64
        texts = [m.text for m in await stored(rig, conv.id, "shopper")]
        assert texts == [f"m{i}" for i in range(size)]
    finally:
        await rig.stop()
