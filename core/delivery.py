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
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import and_, exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from core.bridge import Bridge, ChannelBridge, InboxBridge, Role
from core.clock import SYSTEM_CLOCK, Clock
from core.live import LiveHub
from core.metrics import Metrics
from core.pacing import Pacer
from core.shared_pacing import SharedPacer
from domain.outbox import (
    AlertPayload,
    DeliveryResult,
    HistoryPayload,
    Kind,
    Lane,
    PostPayload,
    SendPayload,
    StatePayload,
)
from domain.ports import ConversationView, DeliveryError
from storage import repo
from storage.db import affected
from storage.models import Conversation, Message, OutboxRow

log = logging.getLogger("handoff.delivery")


def backoff(attempt: int, base: float = 1.0, cap: float = 60.0) -> float:
    """Exponential backoff with full jitter (AWS architecture blog's recommendation)."""
    return random.uniform(base / 2, min(cap, base * 2 ** max(0, attempt - 1)))


def notice(text: str, at: datetime) -> dict[str, Any]:
    """A line for the inbox thread with no message row behind it (an SLA reminder)."""
    return {
        "id": 0,
        "role": "system",
        "text": text,
        "author": None,
        "created_at": at.isoformat(),
        "sources": [],
    }


@dataclass
class Claim:
    """A row this worker moved to 'sending', with what delivering it needs."""

    id: int
    lane: str
    kind: str
    destination: str
    conversation_id: int | None
    payload: dict[str, Any]
    created_at: datetime
    conversation: ConversationView | None = None  # loaded by the tick, for shopper rows


Handler = Callable[[Claim], Awaitable[DeliveryResult]]


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
        bridges: Sequence[Bridge],
        pacer: Pacer | None = None,
        shared_pacer: SharedPacer | None = None,
        live: LiveHub | None = None,
        poll_seconds: float = 0.5,
        lease_seconds: float = 60.0,
        give_up_seconds: float = 86_400.0,
        max_in_flight: int = 64,
        batch: int = 500,
        metrics: Metrics | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.clock = clock
        self.metrics = metrics or Metrics()
        # With several instances: slots per destination shared by all of them.
        self.shared_pacer = shared_pacer
        self.sessions = sessions
        self.channels = {
            b.name: cast(ChannelBridge, b) for b in bridges if b.role is Role.CHANNEL
        }
        self.inboxes = {b.name: cast(InboxBridge, b) for b in bridges if b.role is Role.INBOX}
        self.pacer = pacer or Pacer(clock)
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
        # What each (lane, kind) means: the outbox's whole vocabulary, one small handler each.
        self._handlers: dict[tuple[Lane, Kind], Handler] = {
            (Lane.SHOPPER, Kind.SEND): self._send,
            (Lane.SHOPPER, Kind.STATE): self._state,
            (Lane.INBOX, Kind.OPEN_THREAD): self._open_thread,
            (Lane.INBOX, Kind.HISTORY): self._history,
            (Lane.INBOX, Kind.POST): self._post,
            (Lane.INBOX, Kind.UPDATE): self._update,
            (Lane.ALERT, Kind.ALERT): self._alert,
        }

    def handle(self, lane: Lane, kind: Kind, handler: Handler) -> None:
        """Deliver rows of (lane, kind) with `handler`: a kind whose work is not a bridge's (an
        approved write to the store's API, core/approvals.py)."""
        self._handlers[(lane, kind)] = handler

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
                .where(OutboxRow.status == "sending", OutboxRow.lease_until < self.clock.now())
                .values(status="pending")
            )
            return affected(res)

    async def recover_all(self) -> int:
        """At start of a single instance every 'sending' row is orphaned."""
        async with self.sessions() as s, s.begin():
            res = await s.execute(
                update(OutboxRow).where(OutboxRow.status == "sending").values(status="pending")
            )
            return affected(res)

    async def run(self) -> None:
        last_recover = self.clock.monotonic()
        while not self._stopped:
            if self.clock.monotonic() - last_recover > self.lease_seconds / 4:
                last_recover = self.clock.monotonic()
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
            await self.clock.wait(self._wake, wait)

    def _due_query(self) -> Any:
        """The head of every lane that is pending, built once: this runs on every kick and poll,
        and building the statement (with its aliased subquery) costs more than running it.
        Columns, not ORM rows: a backlog (a Slack channel paced at 1 post/s) is read again each
        time; its payloads are not needed here."""
        stmt = getattr(self, "_due_stmt", None)
        if stmt is None:
            earlier = aliased(OutboxRow)
            stmt = self._due_stmt = (
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
        return stmt

    async def tick(self) -> float:
        """Start every due head-of-lane row the pacer allows; return how long to wait next."""
        now = self.clock.now()
        async with self.sessions() as s:
            rows = list(await s.execute(self._due_query()))
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
            keys = self._rate_keys(row.lane, row.destination, row.kind, conv)
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
            got = claimed.get(row.id)
            if got is None:  # another instance took it between our read and our claim
                self._in_flight.discard(lane_key)
                continue
            created = got.created_at
            if created is not None and created.tzinfo is None:
                created = created.replace(tzinfo=UTC)
            claim = Claim(
                id=got.id,
                lane=got.lane,
                kind=got.kind,
                destination=got.destination,
                conversation_id=got.conversation_id,
                payload=dict(got.payload or {}),
                created_at=created,
                conversation=conv,
            )
            task = asyncio.create_task(self._deliver(claim, lane_key, keys))
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
                    lease_until=self.clock.now() + timedelta(seconds=self.lease_seconds),
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

    def _rate_keys(
        self, lane: str, destination: str, kind: str, conv: ConversationView | None
    ) -> list[str]:
        """The pacer's keys this row spends: none for a kind its bridge does not pace."""
        bridge: ChannelBridge | InboxBridge | None = (
            self.channels.get(destination) if lane == Lane.SHOPPER else self.inboxes.get(destination)
        )
        if bridge is None or kind not in bridge.capabilities.paced_kinds:
            return []
        return bridge.rate_keys(conv, Kind(kind))

    async def _wait_for_shared_slot(self, row_id: int, keys: list[str]) -> bool:
        """Wait for this send's slot in the pace shared by all instances. A slot can be further
        away than the claim's lease (every instance's backlog queues for one channel), and an
        expired lease lets another instance take the row and send it too: so the lease is
        extended past the slot first. False: the row is no longer ours (do not send it)."""
        assert self.shared_pacer is not None
        slot = await self.shared_pacer.reserve_all(keys)
        if slot is None:
            return True
        now = self.clock.now()
        delay = (slot - now).total_seconds()
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
                        OutboxRow.lease_until > now,
                    )
                    .values(lease_until=now + timedelta(seconds=delay + self.lease_seconds))
                )
                if affected(kept) != 1:
                    return False
        await self.clock.sleep(delay)
        return True

    async def _deliver(self, claim: Claim, lane_key: tuple[Any, str], keys: list[str]) -> None:
        async with self._sem:
            try:
                await self._deliver_one(claim, keys)
            except Exception:
                log.exception("delivering outbox row %s crashed", claim.id)
            finally:
                self._in_flight.discard(lane_key)
                self._wake.set()

    async def _deliver_one(self, claim: Claim, keys: list[str]) -> None:
        t0 = self.clock.monotonic()
        try:
            if self.shared_pacer is not None and not await self._wait_for_shared_slot(
                claim.id, keys
            ):
                log.warning("outbox row %s was taken over while it waited; not sending", claim.id)
                return
            result = await self._dispatch(claim)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a row status
            await self._failed(claim.id, keys, exc, claim.destination)
            return
        if result.more:
            # One step of several: back to the head of its lane, paced again, going on from
            # `step` whoever takes it next (this worker, after a restart, another instance).
            values: dict[str, Any] = {
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": self.clock.now(),
            }
            if result.step:
                values["payload"] = {**claim.payload, "step": result.step}
            async with self.sessions() as s, s.begin():
                await s.execute(
                    update(OutboxRow)
                    .execution_options(synchronize_session=False)
                    .where(OutboxRow.id == claim.id)
                    .values(**values)
                )
            return
        async with self.sessions() as s, s.begin():
            await s.execute(
                update(OutboxRow)
                .execution_options(synchronize_session=False)
                .where(OutboxRow.id == claim.id)
                .values(
                    status="sent",
                    sent_at=self.clock.now(),
                    result=repo.json_safe(dict(result.info)) if result.info else None,
                    last_error=None,
                )
            )
        self.stats.sent += 1
        latency = (self.clock.now() - claim.created_at).total_seconds()
        self.stats.latencies_ms.append(latency * 1000)
        self.metrics.messages_out.labels(claim.destination, claim.kind).inc()
        self.metrics.delivery_latency.labels(claim.destination).observe(latency)
        log.debug(
            "sent %s/%s row %s in %.0f ms",
            claim.lane,
            claim.kind,
            claim.id,
            (self.clock.monotonic() - t0) * 1000,
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
            now = self.clock.now()
            age = (now - row.created_at).total_seconds()
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
                row.next_attempt_at = now + timedelta(seconds=delay)
                self.stats.retried += 1
                log.info("outbox row %s retry in %.1fs: %s", row_id, delay, row.last_error)
        if blocked and self.live is not None and row.conversation_id is not None:
            self.live.publish("inbox", {"type": "changed", "conversation_id": row.conversation_id})

    # ------------------------------------------------------------------ the handlers

    async def _dispatch(self, claim: Claim) -> DeliveryResult:
        try:
            handler = self._handlers[(Lane(claim.lane), Kind(claim.kind))]
        except (KeyError, ValueError):
            raise DeliveryError(
                f"no delivery for {claim.lane}/{claim.kind}", permanent=True
            ) from None
        return await handler(claim)

    async def _shopper(self, claim: Claim) -> tuple[ChannelBridge, ConversationView]:
        channel = self.channels.get(claim.destination)
        if channel is None:
            raise DeliveryError(
                f"no shopper channel {claim.destination!r} configured", permanent=True
            )
        # The view the tick loaded (a shopper row needs nothing fresher), else from the database.
        conv = claim.conversation or await self._conversation(claim.conversation_id)
        if conv.blocked:
            raise DeliveryError("the shopper blocked the bot", permanent=True)
        return channel, conv

    async def _send(self, claim: Claim) -> DeliveryResult:
        channel, conv = await self._shopper(claim)
        payload = cast(SendPayload, claim.payload)
        message = payload.get("message") or await self._message(payload["message_id"])
        return await channel.send(conv, message, step=int(payload.get("step", 0)))

    async def _state(self, claim: Claim) -> DeliveryResult:
        channel, conv = await self._shopper(claim)
        payload = cast(StatePayload, claim.payload)
        # Each change is announced as it was, even if later ones are already committed.
        await channel.state(dataclasses.replace(conv, state=payload.get("state", conv.state)))
        return DeliveryResult()

    async def _inbox(self, claim: Claim) -> tuple[InboxBridge, ConversationView]:
        # Always a fresh view: the row before this one in the lane may have changed the thread
        # reference (opened it, posted up to a message) or the ticket's state.
        conv = await self._conversation(claim.conversation_id)
        inbox = self.inboxes.get(claim.destination)
        if inbox is None:
            raise DeliveryError(f"no inbox {claim.destination!r} configured", permanent=True)
        return inbox, conv

    @staticmethod
    def _thread(conv: ConversationView) -> dict[str, Any]:
        if conv.inbox_ref is None:
            raise DeliveryError("no inbox thread for this conversation yet")
        return conv.inbox_ref

    async def _open_thread(self, claim: Claim) -> DeliveryResult:
        inbox, conv = await self._inbox(claim)
        # One call: a failure can never leave half a thread behind to be posted twice.
        ref = dict(await inbox.open_thread(conv, [], conv.context) or {})
        ref["last_message_id"] = 0
        await self._save_ref(conv.id, ref)
        return DeliveryResult(info=ref)

    async def _history(self, claim: Claim) -> DeliveryResult:
        # The history goes in as few posts as the inbox allows, one post per attempt; the row
        # stays at the head of its lane until all of it is in the thread.
        inbox, conv = await self._inbox(claim)
        ref = self._thread(conv)
        payload = cast(HistoryPayload, claim.payload)
        async with self.sessions() as s:
            history = await repo.history(
                s, conv.id, after=int(ref.get("last_message_id", 0)), upto=payload.get("upto")
            )
        if not history:
            return DeliveryResult()
        last = await inbox.post_history(ref, conv, history)
        await self._save_ref(conv.id, {**ref, "last_message_id": last})
        return DeliveryResult.again() if last < history[-1].id else DeliveryResult()

    async def _post(self, claim: Claim) -> DeliveryResult:
        inbox, conv = await self._inbox(claim)
        payload = cast(PostPayload, claim.payload)
        if "message_id" in payload:
            message = await self._message(payload["message_id"])
        elif "text" in payload:
            message = notice(payload["text"], self.clock.now())
        else:
            raise DeliveryError("an inbox post with nothing to post", permanent=True)
        ref = self._thread(conv)
        if message["id"] and int(ref.get("last_message_id", 0)) >= message["id"]:
            return DeliveryResult.done(skipped="already in the thread")
        result = await inbox.post(ref, conv, message)
        if message["id"]:
            await self._save_ref(conv.id, {**ref, "last_message_id": message["id"]})
        return result

    async def _update(self, claim: Claim) -> DeliveryResult:
        inbox, conv = await self._inbox(claim)
        await inbox.update(self._thread(conv), conv)
        return DeliveryResult()

    async def _alert(self, claim: Claim) -> DeliveryResult:
        inbox = self.inboxes.get(claim.destination)
        if inbox is None:
            raise DeliveryError(f"no inbox {claim.destination!r} configured", permanent=True)
        await inbox.alert(cast(AlertPayload, claim.payload).get("text", ""))
        return DeliveryResult()

    async def _conversation(self, conversation_id: int | None) -> ConversationView:
        if conversation_id is None:
            raise DeliveryError("a conversation's row without a conversation", permanent=True)
        async with self.sessions() as s:
            conv = await repo.load_view(s, conversation_id)
        if conv is None:
            raise DeliveryError(f"conversation {conversation_id} is gone", permanent=True)
        return conv

    async def _message(self, message_id: int) -> dict[str, Any]:
        async with self.sessions() as s:
            m = await s.get(Message, message_id)
            if m is None:
                raise DeliveryError("message is gone", permanent=True)
            return repo.message_view(m).as_json()

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
            await self.clock.sleep(min(max(wait, 0.01), 0.2))
        raise TimeoutError(f"outbox not drained in {timeout}s ({await self.pending()} pending)")
