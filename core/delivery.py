"""The delivery worker: sends outbox rows in order per conversation lane, paced per destination,
retried with backoff (Retry-After honoured), with a status on every row. A restart resumes it:
rows left 'sending' by a dead process go back to 'pending' when their lease runs out."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, timedelta
from typing import Any

from sqlalchemy import and_, exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from core.live import LiveHub
from core.metrics import Metrics
from core.pacing import Pacer
from domain.ports import ConversationView, DeliveryError, Inbox, ShopperChannel
from storage import repo
from storage.models import Conversation, Message, OutboxRow, utcnow

log = logging.getLogger("handoff.delivery")


def backoff(attempt: int, base: float = 1.0, cap: float = 60.0) -> float:
    """Exponential backoff with full jitter (AWS architecture blog's recommendation)."""
    return random.uniform(base / 2, min(cap, base * 2 ** max(0, attempt - 1)))


@dataclass
class DeliveryStats:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    rate_limited: int = 0
    latencies_ms: list[float] = field(default_factory=list)


class DeliveryWorker:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        channels: dict[str, ShopperChannel],
        inboxes: dict[str, Inbox],
        pacer: Pacer | None = None,
        live: LiveHub | None = None,
        poll_seconds: float = 0.5,
        lease_seconds: float = 60.0,
        give_up_seconds: float = 86_400.0,
        max_in_flight: int = 64,
        batch: int = 500,
        metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics or Metrics()
        self.shared_pacer: Any = None  # set with several instances: global per-destination slots
        self.sessions = sessions
        self.channels = channels
        self.inboxes = inboxes
        self.pacer = pacer or Pacer()
        self.live = live
        self.poll_seconds = poll_seconds
        self.lease_seconds = lease_seconds
        # Transient failures (5xx, timeouts, a missing scope) retry until the row is this old,
        # not for a fixed number of attempts: with backoff capped at a minute, 25 attempts were
        # ~10 minutes, and a longer Slack outage would have lost every handoff queued in it.
        self.give_up_seconds = give_up_seconds
        self.batch = batch
        self.stats = DeliveryStats()
        self.max_in_flight = max_in_flight
        self._sem = asyncio.Semaphore(max_in_flight)
        self._wake = asyncio.Event()
        self._in_flight: set[tuple[Any, str]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        # The rate keys each lane's rows had last time (they change only when a thread opens or
        # a tag routes elsewhere), so rows waiting on a paced destination cost no query per tick.
        self._keys: OrderedDict[tuple[Any, ...], list[str]] = OrderedDict()
        self._stopped = False
        self._runner: asyncio.Task[None] | None = None

    def kick(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._runner = asyncio.create_task(self.run())

    async def stop(self) -> None:
        self._stopped = True
        self._wake.set()
        if self._runner:
            await asyncio.gather(self._runner, return_exceptions=True)
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def recover(self) -> int:
        """Rows a dead process left 'sending' past their lease go back to 'pending'."""
        async with self.sessions() as s, s.begin():
            res = await s.execute(
                update(OutboxRow)
                .where(OutboxRow.status == "sending", OutboxRow.lease_until < utcnow())
                .values(status="pending")
            )
            return res.rowcount or 0

    async def recover_all(self) -> int:
        """At start of a single instance every 'sending' row is orphaned."""
        async with self.sessions() as s, s.begin():
            res = await s.execute(
                update(OutboxRow).where(OutboxRow.status == "sending").values(status="pending")
            )
            return res.rowcount or 0

    async def run(self) -> None:
        last_recover = time.monotonic()
        while not self._stopped:
            if time.monotonic() - last_recover > self.lease_seconds / 4:
                last_recover = time.monotonic()
                try:
                    await self.recover()
                except Exception:
                    log.exception("lease recovery failed")
            try:
                wait = await self.tick()
            except Exception:
                log.exception("delivery tick failed")
                wait = self.poll_seconds
            if wait <= 0:
                await asyncio.sleep(0)
                continue
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=wait)
            except TimeoutError:
                pass

    async def tick(self) -> float:
        """Start every due head-of-lane row the pacer allows; return how long to wait next."""
        now = utcnow()
        earlier = aliased(OutboxRow)
        async with self.sessions() as s:
            # Columns, not ORM rows: this runs on every kick, and a backlog (a Slack channel
            # paced at 1 post/s) is read again each time; its payloads are not needed here.
            rows = list(
                await s.execute(
                    select(
                        OutboxRow.id,
                        OutboxRow.conversation_id,
                        OutboxRow.lane,
                        OutboxRow.destination,
                        OutboxRow.kind,
                        OutboxRow.next_attempt_at,
                    )
                    .where(
                        OutboxRow.status == "pending",
                        ~exists().where(
                            and_(
                                earlier.conversation_id == OutboxRow.conversation_id,
                                earlier.lane == OutboxRow.lane,
                                earlier.id < OutboxRow.id,
                                earlier.status.in_(("pending", "sending")),
                            )
                        ),
                    )
                    .order_by(OutboxRow.priority.desc(), OutboxRow.id)
                    .limit(self.batch)
                )
            )
            # Only rows that can start now need their conversation (for rate keys): rows whose
            # lane is busy or whose retry is not due are skipped before any further query.
            candidates = []
            next_wait = self.poll_seconds
            for row in rows:
                lane_key = (
                    row.conversation_id if row.conversation_id is not None else f"a{row.id}",
                    row.lane,
                )
                if lane_key in self._in_flight:
                    continue
                if row.next_attempt_at > now:
                    next_wait = min(next_wait, (row.next_attempt_at - now).total_seconds())
                    continue
                # A row whose destination was paced out last time is most likely still paced
                # out: skip it without loading its conversation.
                known = self._keys.get((lane_key, row.kind))
                if known is not None:
                    wait = self.pacer.wait_time(known)
                    if wait > 0:
                        next_wait = min(next_wait, wait)
                        continue
                candidates.append((row, lane_key))
            # No more claimed at once than can be in flight: a claimed row waiting for a free
            # slot would age towards its lease while nobody sends it. When every slot is taken,
            # the next tick comes when one frees up (`_deliver` wakes the loop).
            room = self.max_in_flight - len(self._in_flight)
            if room <= 0:
                return self.poll_seconds
            ids = {r.conversation_id for r, _ in candidates if r.conversation_id is not None}
            convs = await repo.load_views(s, ids) if ids else {}
        to_start: list[tuple[Any, tuple[Any, str], list[str], ConversationView | None]] = []
        for row, lane_key in candidates:
            if len(to_start) >= room:
                break
            if lane_key in self._in_flight:  # a concurrent tick started it while we read
                continue
            conv = convs.get(row.conversation_id) if row.conversation_id is not None else None
            adapter = self._adapter(row)
            keys = adapter.rate_keys(conv, row.kind) if adapter is not None else []
            self._remember_keys((lane_key, row.kind), keys)
            wait = self.pacer.wait_time(keys)
            if wait > 0:
                next_wait = min(next_wait, wait)
                continue
            self.pacer.take(keys)
            self._in_flight.add(lane_key)
            to_start.append((row, lane_key, keys, conv))
        try:
            claimed = await self._claim([row.id for row, *_ in to_start]) if to_start else {}
        except BaseException:
            for _, lane_key, _, _ in to_start:  # nothing was claimed: the lanes are free again
                self._in_flight.discard(lane_key)
            raise
        for row, lane_key, keys, conv in to_start:
            claim = claimed.get(row.id)
            if claim is None:  # another instance took it between our read and our claim
                self._in_flight.discard(lane_key)
                continue
            task = asyncio.create_task(self._deliver(claim, lane_key, keys, conv))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return 0.0 if claimed and len(rows) >= self.batch else max(next_wait, 0.005)

    async def _claim(self, row_ids: list[int]) -> dict[int, Any]:
        """Claim every row this tick starts with one compare-and-set: of several workers
        (instances) that saw a row as due, exactly one moves it to 'sending'; the lease frees it
        if that one dies. One statement for the batch, not one transaction per row."""
        async with self.sessions() as s, s.begin():
            result = await s.execute(
                update(OutboxRow)
                .execution_options(synchronize_session=False)
                .where(OutboxRow.id.in_(row_ids), OutboxRow.status == "pending")
                .values(
                    status="sending",
                    lease_until=utcnow() + timedelta(seconds=self.lease_seconds),
                    attempts=OutboxRow.attempts + 1,
                )
                .returning(
                    OutboxRow.id,
                    OutboxRow.payload,
                    OutboxRow.kind,
                    OutboxRow.lane,
                    OutboxRow.destination,
                    OutboxRow.conversation_id,
                    OutboxRow.created_at,
                )
            )
            return {row.id: row for row in result.all()}

    def _remember_keys(self, key: tuple[Any, ...], keys: list[str]) -> None:
        self._keys[key] = keys
        self._keys.move_to_end(key)
        while len(self._keys) > 50_000:
            self._keys.popitem(last=False)

    def _adapter(self, row: Any) -> ShopperChannel | Inbox | None:
        return self._adapter_for(row.lane, row.destination)

    def _adapter_for(self, lane: str, destination: str) -> ShopperChannel | Inbox | None:
        if lane == "shopper":
            return self.channels.get(destination)
        return self.inboxes.get(destination)

    async def _wait_for_shared_slot(self, row_id: int, keys: list[str]) -> bool:
        """Wait for this send's slot in the pace shared by all instances. A slot can be further
        away than the claim's lease (every instance's backlog queues for one channel), and an
        expired lease lets another instance take the row and send it too: so the lease is
        extended past the slot first. False: the row is no longer ours (do not send it)."""
        slot = await self.shared_pacer.reserve_all(keys)
        if slot is None:
            return True
        delay = (slot - utcnow()).total_seconds()
        if delay <= 0:
            return True
        if delay > self.lease_seconds / 2:
            async with self.sessions() as s, s.begin():
                kept = await s.execute(
                    update(OutboxRow)
                    .execution_options(synchronize_session=False)
                    .where(
                        OutboxRow.id == row_id,
                        OutboxRow.status == "sending",
                        OutboxRow.lease_until > utcnow(),
                    )
                    .values(lease_until=utcnow() + timedelta(seconds=delay + self.lease_seconds))
                )
                if kept.rowcount != 1:
                    return False
        await asyncio.sleep(delay)
        return True

    async def _deliver(
        self,
        claim: Any,
        lane_key: tuple[Any, str],
        keys: list[str],
        conv: ConversationView | None = None,
    ) -> None:
        async with self._sem:
            try:
                await self._deliver_one(claim, keys, conv)
            except Exception:
                log.exception("delivering outbox row %s crashed", claim.id)
            finally:
                self._in_flight.discard(lane_key)
                self._wake.set()

    async def _deliver_one(
        self, claim: Any, keys: list[str], conv: ConversationView | None = None
    ) -> None:
        row_id, payload, kind, lane, dest, conv_id, created = claim
        payload = dict(payload or {})
        if created is not None and created.tzinfo is None:
            created = created.replace(tzinfo=UTC)
        t0 = time.monotonic()
        try:
            if self.shared_pacer is not None and not await self._wait_for_shared_slot(
                row_id, keys
            ):
                log.warning("outbox row %s was taken over while it waited; not sending", row_id)
                return
            result = await self._dispatch(kind, lane, dest, conv_id, payload, conv)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a row status
            await self._failed(row_id, keys, exc, dest)
            return
        if result and result.get("_more"):
            async with self.sessions() as s, s.begin():
                await s.execute(
                    update(OutboxRow)
                    .execution_options(synchronize_session=False)
                    .where(OutboxRow.id == row_id)
                    .values(status="pending", attempts=0, next_attempt_at=utcnow())
                )
            return
        async with self.sessions() as s, s.begin():
            await s.execute(
                update(OutboxRow)
                .execution_options(synchronize_session=False)
                .where(OutboxRow.id == row_id)
                .values(
                    status="sent",
                    sent_at=utcnow(),
                    result=repo.json_safe(result) if result else None,
                    last_error=None,
                )
            )
        self.stats.sent += 1
        latency = (utcnow() - created).total_seconds()
        self.stats.latencies_ms.append(latency * 1000)
        self.metrics.messages_out.labels(dest, kind).inc()
        self.metrics.delivery_latency.labels(dest).observe(latency)
        log.debug(
            "sent %s/%s row %s in %.0f ms", lane, kind, row_id, (time.monotonic() - t0) * 1000
        )

    async def _failed(self, row_id: int, keys: list[str], exc: Exception, dest: str = "") -> None:
        retry_after = getattr(exc, "retry_after", None)
        permanent = bool(getattr(exc, "permanent", False))
        blocked = bool(getattr(exc, "blocked", False))
        if retry_after:
            self.stats.rate_limited += 1
            self.pacer.block(keys, float(retry_after))
            self.metrics.rate_limited.labels(dest).inc()
        async with self.sessions() as s, s.begin():
            row = await s.get(OutboxRow, row_id)
            assert row is not None
            row.last_error = f"{type(exc).__name__}: {exc}"[:2000]
            age = (utcnow() - row.created_at).total_seconds()
            final = permanent or age >= self.give_up_seconds
            self.metrics.delivery_failures.labels(dest, "yes" if final else "no").inc()
            if final:
                row.status = "failed"
                self.stats.failed += 1
                log.warning("outbox row %s failed for good: %s", row_id, row.last_error)
                if blocked and row.conversation_id is not None:
                    conv = await s.get(Conversation, row.conversation_id)
                    if conv is not None and not conv.blocked:
                        conv.blocked = True
                        await repo.add_state_event(
                            s, conv, "blocked", None, "blocked", "platform", str(exc)
                        )
            else:
                delay = float(retry_after) if retry_after else backoff(row.attempts)
                row.status = "pending"
                row.next_attempt_at = utcnow() + timedelta(seconds=delay)
                self.stats.retried += 1
                log.info("outbox row %s retry in %.1fs: %s", row_id, delay, row.last_error)
        if blocked and self.live is not None and row.conversation_id is not None:
            self.live.publish("inbox", {"type": "changed", "conversation_id": row.conversation_id})

    async def _dispatch(
        self,
        kind: str,
        lane: str,
        dest: str,
        conv_id: int | None,
        payload: dict[str, Any],
        cached: ConversationView | None = None,
    ) -> dict[str, Any] | None:
        if kind == "alert":
            inbox = self.inboxes.get(dest)
            if inbox is None:
                raise DeliveryError(f"no inbox {dest!r} configured", permanent=True)
            await inbox.alert(payload.get("text", ""))
            return None
        assert conv_id is not None
        if (
            lane == "shopper"
            and kind in ("send", "state")
            and cached is not None
            and (kind == "state" or "message" in payload)
        ):
            channel = self.channels.get(dest)
            if channel is None:
                raise DeliveryError(f"no shopper channel {dest!r} configured", permanent=True)
            if cached.blocked:
                raise DeliveryError("the shopper blocked the bot", permanent=True)
            if kind == "send":
                return await channel.send(cached, payload["message"])
            await channel.state(
                dataclasses.replace(cached, state=payload.get("state", cached.state))
            )
            return None
        async with self.sessions() as s:
            conv = await repo.load_view(s, conv_id)
            if conv is None:
                raise DeliveryError(f"conversation {conv_id} is gone", permanent=True)
            message: dict[str, Any] | None = None
            if "message_id" in payload:
                m = await s.get(Message, payload["message_id"])
                if m is None:
                    raise DeliveryError("message is gone", permanent=True)
                message = repo.message_view(m).as_json()
            elif "text" in payload:
                # A notice with no message row (an SLA reminder): shown in the inbox only.
                message = {
                    "id": 0,
                    "role": "system",
                    "text": payload["text"],
                    "author": None,
                    "created_at": utcnow().isoformat(),
                    "sources": [],
                }
            history = None
            if kind == "history":
                after = int((conv.inbox_ref or {}).get("last_message_id", 0))
                history = await repo.history(s, conv_id, after=after, upto=payload.get("upto"))

        if lane == "shopper":
            channel = self.channels.get(dest)
            if channel is None:
                raise DeliveryError(f"no shopper channel {dest!r} configured", permanent=True)
            if conv.blocked:
                raise DeliveryError("the shopper blocked the bot", permanent=True)
            if kind == "send":
                assert message is not None
                return await channel.send(conv, message)
            if kind == "state":
                # Each change is announced as it was, even if later ones are already committed.
                await channel.state(
                    dataclasses.replace(conv, state=payload.get("state", conv.state))
                )
                return None
            raise DeliveryError(f"unknown shopper kind {kind}", permanent=True)

        inbox = self.inboxes.get(dest)
        if inbox is None:
            raise DeliveryError(f"no inbox {dest!r} configured", permanent=True)
        if kind == "open_thread":
            # One call: a failure can never leave half a thread behind to be posted twice.
            ref = dict(await inbox.open_thread(conv, [], conv.context) or {})
            ref["last_message_id"] = 0
            await self._save_ref(conv_id, ref)
            return ref
        ref = conv.inbox_ref
        if ref is None:
            raise DeliveryError("no inbox thread for this conversation yet")
        if kind == "history":
            # The history goes in as few posts as the inbox allows, one post per attempt; the
            # row stays at the head of its lane until all of it is in the thread.
            assert history is not None
            if not history:
                return None
            last = await inbox.post_history(ref, conv, history)
            await self._save_ref(conv_id, {**ref, "last_message_id": last})
            return {"_more": True} if last < history[-1].id else None
        if kind == "post":
            assert message is not None
            if message["id"] and int(ref.get("last_message_id", 0)) >= message["id"]:
                return {"skipped": "already in the thread"}
            result = await inbox.post(ref, conv, message)
            if message["id"]:
                await self._save_ref(conv_id, {**ref, "last_message_id": message["id"]})
            return result
        if kind == "update":
            await inbox.update(ref, conv)
            return None
        raise DeliveryError(f"unknown inbox kind {kind}", permanent=True)

    async def _save_ref(self, conv_id: int, ref: dict[str, Any]) -> None:
        async with self.sessions() as s, s.begin():
            conv = await s.get(Conversation, conv_id)
            if conv is not None:
                conv.inbox_ref = repo.json_safe(ref)
                if ref.get("thread_key"):
                    conv.inbox_thread = str(ref["thread_key"])

    async def pending(self) -> int:
        async with self.sessions() as s:
            count = await s.scalar(
                select(func.count()).where(OutboxRow.status.in_(("pending", "sending")))
            )
            return int(count or 0)

    async def drain(self, timeout: float = 30.0) -> None:
        """Deliver until nothing is pending (tests, eval). Retries scheduled later still count."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            wait = await self.tick()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            if await self.pending() == 0:
                return
            await asyncio.sleep(min(max(wait, 0.01), 0.2))
        raise TimeoutError(f"outbox not drained in {timeout}s ({await self.pending()} pending)")
