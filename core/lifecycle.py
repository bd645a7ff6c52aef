"""The conversation core: intake, per-conversation ordering, state changes, and the outbox writes
that go with them. Everything that leaves the service for a platform is an outbox row written in
the same transaction as the change that caused it; the delivery worker sends it. A live channel
(the widget) gets its event when that transaction commits instead: the messages table is its
record, and a client that was away catches up from it."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.analytics import Stats, compute_stats, tag_series
from core.bridge import Bridge, ChannelBridge, Role
from core.clock import SYSTEM_CLOCK, Clock
from core.corrections import Corrections
from core.live import LiveHub
from core.metrics import Metrics
from core.writer import BulkOp, Writer
from domain import outbox
from domain.masking import mask_sensitive
from domain.outbox import Lane, Outgoing
from domain.ports import Agent, ConversationView, Handoff, MessageView, Turn
from domain.textclean import clean_optional, clean_string
from storage import repo
from storage.db import affected, after_commit
from storage.hotreads import HotReads
from storage.models import Conversation, Message, OutboxRow, utcnow

if TYPE_CHECKING:  # built on the core by the app factory (core/approvals.py)
    from core.approvals import Approvals
    from core.waiting import Waiting

log = logging.getLogger("handoff.core")
# The agent sees this many of the latest messages (its memory keeps the facts from earlier ones),
# so a turn costs the same in a long chat as in a short one.
AGENT_HISTORY = 100
# A live channel (the widget) shows the agent typing only when a turn takes longer than this.
TYPING_AFTER = 0.25


class CoreError(Exception):
    """A request the core refuses, with a message fit to show the person who sent it."""


class UnknownConversation(CoreError):
    pass


@dataclass
class CoreMessages:
    claimed: str = "{name} from our team has joined the chat."
    resolved: str = (
        "This conversation is marked as resolved. Write again any time if you need more help."
    )
    handback: str = "You're chatting with our assistant again."
    ai_unavailable: str = (
        "Sorry, our assistant is having trouble right now. I've passed your message to our team "
        "and a person will reply here."
    )


@dataclass
class CommandResult:
    ok: bool
    text: str
    conversation: ConversationView | None = None


@dataclass
class StartedConversation:
    conversation: ConversationView
    token: str | None = None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class Core:
    sessions: async_sessionmaker[AsyncSession]
    agent: Agent
    live: LiveHub
    messages: CoreMessages = field(default_factory=CoreMessages)
    mask_patterns: list[str] = field(default_factory=list)
    max_text: int = 4000
    agent_timeout: float = 60.0
    display_name: Callable[[str], str] = lambda author: author
    on_outbox: Callable[[], None] = lambda: None
    metrics: Metrics = field(default_factory=Metrics)
    # With several instances on one database, a conversation's turns are taken under a lease so
    # two instances never run the agent on one conversation at once.
    multi_instance: bool = False
    instance_id: str = field(default_factory=lambda: secrets.token_hex(6))
    lease_seconds: float = 120.0
    # Where deliveries go: the shopper channels and the inboxes, with what each can do.
    bridges: Sequence[Bridge] = ()
    clock: Clock = SYSTEM_CLOCK  # the outbox rows' timestamps, on the delivery worker's clock
    approvals: Approvals | None = None  # prepared writes: stored with the handoff, approved, run
    corrections: Corrections = field(default_factory=Corrections)  # retags and `wrong` teach
    waiting: Waiting | None = None  # the queue and the wait told at a handoff, its follow-up

    def __post_init__(self) -> None:
        self._running: set[int] = set()
        self._again: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        channels = [b for b in self.bridges if b.role is Role.CHANNEL]
        inboxes = [b for b in self.bridges if b.role is Role.INBOX]
        # Live channels get their delivery as an event on commit, others an outbox row.
        self._live_channels = {b.name: b for b in channels if b.capabilities.live}
        self._typing = {
            b.name: cast(ChannelBridge, b).typing for b in channels if b.capabilities.typing
        }
        # Inboxes that read the database are told on commit; the one that keeps tickets (at
        # most one: the app checks) gets outbox rows.
        self._live_inboxes = [b for b in inboxes if b.capabilities.live]
        self._ticket_inbox = next((b.name for b in inboxes if not b.capabilities.live), None)
        # The hot path's writes (messages taken in, turns stored) go through one writer that
        # commits whatever is ready in one transaction (core/writer.py).
        self.writer = Writer(self.sessions)
        self._intake = BulkOp[dict[str, Any]]("intake", self._intake_bulk)
        self._turns = BulkOp[tuple[int, int, Turn]]("turns", self._turns_bulk)
        # The hot path's reads (a turn's inputs, token checks, catch-ups): storage/db.py.
        self.reads = HotReads(self.sessions)

    @property
    def inbox_names(self) -> list[str]:
        """The inboxes handed-off conversations reach, the ticket-keeping one first."""
        first = [self._ticket_inbox] if self._ticket_inbox else []
        return first + [b.name for b in self._live_inboxes]

    # ------------------------------------------------------------------ intake

    async def start_conversation(
        self,
        channel: str,
        external_id: str | None = None,
        *,
        name: str | None = None,
        username: str | None = None,
        email: str | None = None,
        claimed_email: str | None = None,
        channel_ref: str | None = None,
        with_token: bool = False,
    ) -> StartedConversation:
        """`email` is an identity the channel proved (a store-signed widget email, a scenario's
        customer); `claimed_email` one the shopper's page merely said, kept to be shown as such."""
        token = secrets.token_urlsafe(24) if with_token else None
        # What a shopper's client sends is cleaned and masked like the messages themselves.
        name, username = self._clean_field(name, 200), self._clean_field(username, 200)
        email, claimed_email = self._clean_field(email, 320), self._clean_field(claimed_email, 320)
        async with self.sessions.begin() as s:
            customer = await repo.get_or_create_customer(
                s,
                channel,
                external_id or secrets.token_hex(12),
                name=name,
                username=username,
                email=email,
                claimed_email=claimed_email,
            )
            conv = Conversation(
                channel=channel,
                channel_ref=channel_ref,
                customer_id=customer.id,
                token_hash=hash_token(token) if token else None,
                state="bot",
                context={},
                memory={},
            )
            s.add(conv)
            await s.flush()
            view = await repo.conversation_view(s, conv)
        return StartedConversation(view, token)

    async def conversation_for_channel(
        self,
        channel: str,
        external_id: str,
        channel_ref: str,
        *,
        name: str | None = None,
        username: str | None = None,
    ) -> ConversationView:
        """The chat's current conversation (Telegram: one per chat, reopened after resolve)."""
        async with self.sessions() as s:
            conv = await s.scalar(
                select(Conversation)
                .where(Conversation.channel == channel, Conversation.channel_ref == channel_ref)
                .order_by(Conversation.id.desc())
                .limit(1)
            )
            if conv is not None:
                return await repo.conversation_view(s, conv)
        started = await self.start_conversation(
            channel, external_id, name=name, username=username, channel_ref=channel_ref
        )
        return started.conversation

    async def check_token(self, conversation_id: int, token: str | None) -> str | None:
        """The conversation's state if `token` is its token, else None: one query, because every
        widget connect and catch-up starts here (a flash sale opens hundreds at once)."""
        if not token:
            return None
        row = await self.reads.token_state(conversation_id)
        if row is None or row[0] is None:
            return None
        if not secrets.compare_digest(row[0], hash_token(token)):
            return None
        return row[1]

    def _clean_field(self, value: str | None, limit: int) -> str | None:
        cleaned = clean_optional(value, limit)
        return mask_sensitive(cleaned, self.mask_patterns)[:limit] if cleaned else None

    def _clean_text(self, text: str) -> str:
        text = clean_string(text or "").strip()
        if not text:
            raise CoreError("A message needs some text.")
        if len(text) > self.max_text:
            raise CoreError(
                f"That message is too long ({len(text)} characters; at most {self.max_text})."
            )
        return mask_sensitive(text, self.mask_patterns)

    async def shopper_message(
        self,
        conversation_id: int,
        text: str,
        *,
        source: str,
        platform_id: str | None = None,
        meta: dict[str, Any] | None = None,
        answer: bool = True,
    ) -> tuple[MessageView, bool]:
        """Store a shopper's message once (idempotent on `platform_id`) and schedule its turn.

        Returns the message and whether it was new. `answer=False` records it without a turn
        (an edited message, an unsupported attachment)."""
        text = self._clean_text(text)
        if platform_id is not None:
            platform_id = clean_string(platform_id)
        # Taken in by the writer with whatever else is ready: all of them in one transaction, two
        # statements (touch the conversations, which also says they exist; insert unless the
        # platform id is already there; a duplicate is the rare case).
        values = {
            "conversation_id": conversation_id,
            "role": "shopper",
            "text": text,
            "source": source,
            "platform_id": platform_id,
            "handled": not answer,
            "meta": meta or {},
        }
        view, new = await self.writer.bulk(self._intake, values)
        if not new:
            return view, False
        self.live.publish(f"conv:{conversation_id}", {"type": "message", **view.as_json()})
        self.metrics.messages_in.labels(source, "shopper").inc()
        self._changed(conversation_id)
        if answer:
            self.schedule(conversation_id)
        return view, True

    async def _intake_bulk(self, s: AsyncSession, items: list[dict[str, Any]]) -> list[Any]:
        """Shopper messages from many conversations: (view, new) each, or UnknownConversation."""
        now = utcnow()
        exists = await repo.touch_conversations(s, {v["conversation_id"] for v in items}, now)
        results: list[Any] = [None] * len(items)
        rows: list[dict[str, Any]] = []
        owners: list[list[int]] = []  # the items each row answers (a resend in the same batch)
        first: dict[tuple[int, str, str], int] = {}
        for i, item in enumerate(items):
            cid = item["conversation_id"]
            if cid not in exists:
                results[i] = UnknownConversation(f"No conversation #{cid}.")
                continue
            pid = item["platform_id"]
            key = (cid, item["source"], pid) if pid is not None else None
            if key is not None and key in first:
                owners[first[key]].append(i)
                continue
            if key is not None:
                first[key] = len(rows)
            rows.append({**item, "created_at": now})
            owners.append([i])
        for row, idx, new_id in zip(rows, owners, await repo.insert_messages_once(s, rows), strict=True):
            if new_id is None:  # stored before
                existing = await repo.message_by_platform_id(
                    s, row["conversation_id"], row["source"], row["platform_id"]
                )
                assert existing is not None
                for i in idx:
                    results[i] = (existing, False)
                continue
            view = MessageView(
                id=new_id,
                conversation_id=row["conversation_id"],
                role="shopper",
                text=row["text"],
                author=None,
                created_at=now,
                meta=dict(row["meta"]),
                platform_id=row["platform_id"],
            )
            results[idx[0]] = (view, True)
            for i in idx[1:]:
                results[i] = (view, False)
        return results

    async def _turns_bulk(self, s: AsyncSession, items: list[tuple[int, int, Turn]]) -> list[bool]:
        """Turns without a handoff, from many conversations: each message taken as answered once,
        the memory kept, the reply stored and delivered on commit; four statements for all. True:
        this turn's message was still unanswered."""
        now = utcnow()
        states = await repo.lock_states(s, {cid for cid, _, _ in items})
        taken = await repo.take_unhandled(s, [mid for _, mid, _ in items])
        results: list[bool] = []
        memories: list[tuple[int, dict[str, Any] | None]] = []
        replies: list[dict[str, Any]] = []
        for cid, mid, turn in items:
            st = states.get(cid)
            if mid not in taken or st is None:
                results.append(False)
                continue
            results.append(True)
            if st.state != "bot":
                # A person took over while the agent was thinking: the agent stays silent.
                if st.state in ("queued", "claimed"):
                    self._enqueue_to(s, st.channel, cid, st.priority, outbox.thread_post(mid))
                continue
            memories.append((cid, repo.json_safe(turn.memory) if turn.memory is not None else None))
            if turn.reply:
                meta = {
                    "sources": turn.sources,
                    "actions": repo.json_safe(turn.actions_run),
                    "reply_to": mid,  # the shopper message this turn answered
                    **turn.meta,
                }
                replies.append(
                    {
                        "conversation_id": cid, "role": "agent", "text": turn.reply,
                        "author": None, "source": "core", "platform_id": None, "handled": True,
                        "meta": meta, "tokens_in": turn.tokens_in, "tokens_out": turn.tokens_out,
                        "latency_ms": turn.latency_ms, "created_at": now,
                    }
                )
        if memories:
            await repo.set_memories(s, memories, now)
        if replies:
            for row, new_id in zip(replies, await repo.insert_messages(s, replies), strict=True):
                st = states[row["conversation_id"]]
                view = MessageView(new_id, st.id, "agent", row["text"], None, now, dict(row["meta"]))
                self._enqueue_to(s, st.channel, st.id, st.priority, outbox.shopper_send(view))
        return results

    # ------------------------------------------------------------- processing

    def schedule(self, conversation_id: int) -> None:
        """Process a conversation's waiting messages, one at a time, in order."""
        if conversation_id in self._running:
            self._again.add(conversation_id)
            return
        self._running.add(conversation_id)
        task = asyncio.create_task(self._drain(conversation_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drain(self, conversation_id: int) -> None:
        try:
            while True:
                self._again.discard(conversation_id)
                try:
                    if await self._acquire(conversation_id):
                        try:
                            while waiting := await self._process_next(conversation_id):
                                if (
                                    waiting == 1
                                    and not self.multi_instance
                                    and conversation_id not in self._again
                                ):
                                    # That was the last one and nothing arrived meanwhile
                                    # (intake would have marked it): no query to find nothing.
                                    break
                                # About to look again: what arrives from here on marks it anew, so
                                # a mark already answered by this look costs no second, empty one.
                                self._again.discard(conversation_id)
                                await self._acquire(conversation_id)  # renew
                        finally:
                            await self._release(conversation_id)
                    elif await self._has_unhandled(conversation_id):
                        # Another instance holds it; it may finish before seeing this message.
                        await asyncio.sleep(0.2)
                        self._again.add(conversation_id)
                except Exception:
                    log.exception("processing conversation %s failed", conversation_id)
                    await asyncio.sleep(1.0)
                    self._again.add(conversation_id)
                if conversation_id not in self._again:
                    break
        finally:
            self._running.discard(conversation_id)

    async def _acquire(self, conversation_id: int) -> bool:
        if not self.multi_instance:
            return True
        now = utcnow()
        async with self.sessions() as s, s.begin():
            res = await s.execute(
                update(Conversation)
                .where(
                    Conversation.id == conversation_id,
                    or_(
                        Conversation.lease_owner.is_(None),
                        Conversation.lease_owner == self.instance_id,
                        Conversation.lease_until < now,
                    ),
                )
                .values(
                    lease_owner=self.instance_id,
                    lease_until=now + timedelta(seconds=self.lease_seconds),
                )
            )
            return affected(res) == 1

    async def _release(self, conversation_id: int) -> None:
        if not self.multi_instance:
            return
        async with self.sessions() as s, s.begin():
            await s.execute(
                update(Conversation)
                .where(
                    Conversation.id == conversation_id, Conversation.lease_owner == self.instance_id
                )
                .values(lease_owner=None, lease_until=None)
            )

    async def _has_unhandled(self, conversation_id: int) -> bool:
        async with self.sessions() as s:
            return (
                await s.scalar(
                    select(Message.id)
                    .where(
                        Message.conversation_id == conversation_id,
                        Message.role == "shopper",
                        Message.handled.is_(False),
                    )
                    .limit(1)
                )
            ) is not None

    async def sweep_forever(self, interval: float = 5.0) -> None:
        """Take up messages nobody is processing (another instance died holding them)."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.resume()
            except Exception:
                log.exception("sweep failed")

    async def resume(self) -> int:
        """After a restart: take up every shopper message that was stored but not yet handled."""
        async with self.sessions() as s:
            ids = list(
                await s.scalars(
                    select(Message.conversation_id)
                    .where(Message.handled.is_(False), Message.role == "shopper")
                    .distinct()
                )
            )
        for cid in ids:
            self.schedule(cid)
        return len(ids)

    async def idle(self, timeout: float = 30.0) -> None:
        """Wait until no conversation is being processed (tests, eval, shutdown)."""
        deadline = time.monotonic() + timeout
        while self._tasks and time.monotonic() < deadline:
            await asyncio.wait(list(self._tasks), timeout=max(0.0, deadline - time.monotonic()))

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.writer.close()
        await self.reads.close()

    async def _process_next(self, conversation_id: int) -> int:
        """Take the oldest waiting message through a turn (or to the inbox); how many were
        waiting, that one included (0: nothing to do)."""
        # One query says whether anything waits (and what the conversation is); the agent's
        # inputs (tags, history) only when it will run.
        found = await self.reads.turn(conversation_id, AGENT_HISTORY)
        if found is None:
            return 0
        inputs, hist = found
        view, waiting = inputs.view, inputs.unhandled
        msg_id = inputs.first_unhandled
        assert msg_id is not None
        state = view.state
        if state == "resolved":
            await self._reopen(conversation_id)
            async with self.sessions() as s:
                reopened = await repo.load_view(s, conversation_id)
                assert reopened is not None
                view = reopened
                hist = await repo.history(
                    s, conversation_id, upto=msg_id, include_notes=False, last=AGENT_HISTORY
                )
            state = "bot"
        if state in ("queued", "claimed"):
            await self._relay_to_inbox(conversation_id, msg_id)
            return int(waiting)
        hook = self._typing.get(view.channel)
        typing_later: asyncio.TimerHandle | None = None
        if hook is not None:
            if view.channel in self._live_channels:
                # A live channel's indicator is an event on the shopper's socket: sent only for a
                # turn that takes a while (an LLM's), not for one answered in a few milliseconds,
                # where it would flash for nobody and cost a socket write per message.
                typing_later = asyncio.get_running_loop().call_later(
                    TYPING_AFTER, self._typing_now, hook, view
                )
            else:
                with contextlib.suppress(Exception):
                    await hook(view)
        started = time.monotonic()
        try:
            # A deadline on this task, not a task of its own per turn (as wait_for makes).
            async with asyncio.timeout(self.agent_timeout):
                turn = await self.agent.respond(view, hist)
        except Exception as exc:  # the shopper never waits on a dead agent
            log.warning("agent failed on #%s: %r", conversation_id, exc)
            turn = Turn(
                reply=self.messages.ai_unavailable,
                handoff=Handoff(
                    tags=["ai-unavailable"], reason=f"The assistant failed: {type(exc).__name__}"
                ),
            )
        if typing_later is not None:
            typing_later.cancel()
        if not turn.latency_ms:
            turn.latency_ms = int((time.monotonic() - started) * 1000)
        self.metrics.agent_latency.observe(turn.latency_ms / 1000)
        if turn.tokens_in or turn.tokens_out:
            self.metrics.agent_tokens.labels("in").inc(turn.tokens_in)
            self.metrics.agent_tokens.labels("out").inc(turn.tokens_out)
        await self._apply_turn(conversation_id, msg_id, turn)
        return int(waiting)

    def _typing_now(self, hook: Callable[[ConversationView], Any], view: ConversationView) -> None:
        async def run() -> None:
            with contextlib.suppress(Exception):
                await hook(view)

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _apply_turn(self, conversation_id: int, msg_id: int, turn: Turn) -> None:
        if turn.handoff is None:  # the common turn: stored with the others ready now
            if await self.writer.bulk(self._turns, (conversation_id, msg_id, turn)):
                self._changed(conversation_id)
            return

        async def write(s: AsyncSession) -> bool:
            return await self._apply_handoff_turn(s, conversation_id, msg_id, turn)

        if await self.writer.run(write):
            self._changed(conversation_id)

    async def _apply_handoff_turn(
        self, s: AsyncSession, conversation_id: int, msg_id: int, turn: Turn
    ) -> bool:
        assert turn.handoff is not None
        conv = await s.get(Conversation, conversation_id, with_for_update=True)
        assert conv is not None
        if not await self._mark_handled(s, msg_id):
            return False
        if conv.state != "bot":
            # A person took over while the agent was thinking: the agent stays silent.
            if conv.state in ("queued", "claimed"):
                self._enqueue(s, conv, outbox.thread_post(msg_id))
            return True
        if turn.memory is not None:
            conv.memory = repo.json_safe(turn.memory)
        repo.touch(conv)  # with the memory, in the one UPDATE the message's flush makes
        reply: str | None = turn.reply
        wait: dict[str, Any] = {}
        if self.waiting is not None and reply:
            # Where the shopper stands and about how long, from the queue as it is now.
            reply, wait = await self.waiting.at_handoff(s, conv, turn.handoff, reply)
        if reply:
            await self._add_message(
                s,
                conv,
                "agent",
                reply,
                meta={
                    "sources": turn.sources,
                    "actions": repo.json_safe(turn.actions_run),
                    "reply_to": msg_id,  # the shopper message this turn answered
                    **turn.meta,
                },
                tokens_in=turn.tokens_in,
                tokens_out=turn.tokens_out,
                latency_ms=turn.latency_ms,
            )
        await self._handoff(s, conv, turn.handoff, {"wait": wait} if wait else {})
        return True

    async def _handoff(
        self, s: AsyncSession, conv: Conversation, h: Handoff, context: dict[str, Any]
    ) -> None:
        """`context`: kept beside the handoff's own (what the shopper was promised)."""
        # The tags first, while nothing else of this change waits to be written: reading the
        # current tags flushes what is pending, and all the rest then goes in one flush below.
        sale = h.sale or conv.sale
        await repo.set_tags(s, conv, list(dict.fromkeys(h.tags)), [], "agent", sale=sale)
        old = conv.state
        conv.state = "queued"
        conv.owner = None
        conv.priority = h.priority
        conv.reason = h.reason
        conv.summary = h.summary
        conv.context = {**repo.json_safe(h.context), **context}
        conv.sale = sale
        conv.handed_off_at = self.clock.now()
        await repo.add_state_event(
            s, conv, "state", old, "queued", "agent", h.reason, at=conv.handed_off_at
        )
        if self.approvals is not None:
            await self.approvals.store(s, conv)
        for tag in dict.fromkeys(h.tags):
            self.metrics.handoffs.labels(tag).inc()
        await s.flush()
        last = await repo.last_message_id(s, conv.id)
        if conv.inbox_ref:
            # Handed off again after a hand-back: same thread, refreshed, then what happened since.
            self._enqueue(s, conv, outbox.thread_update(), priority=h.priority)
        else:
            self._enqueue(s, conv, outbox.open_thread(), priority=h.priority)
        self._enqueue(s, conv, outbox.thread_history(last), priority=h.priority)
        self._enqueue(s, conv, outbox.shopper_state("queued"))

    async def _reopen(self, conversation_id: int) -> None:
        async with self.sessions() as s, s.begin():
            conv = await s.get(Conversation, conversation_id, with_for_update=True)
            assert conv is not None
            if conv.state != "resolved":
                return
            conv.state = "bot"
            conv.owner = None
            conv.memory = {}
            conv.context = {}
            tags = list(await repo.tags_of(s, conv.id))
            await repo.set_tags(s, conv, [], tags, "system")
            await repo.add_state_event(
                s, conv, "state", "resolved", "bot", "shopper", "shopper wrote again"
            )
            self._enqueue(s, conv, outbox.shopper_state("bot"))
        self._changed(conversation_id)

    @staticmethod
    async def _mark_handled(s: AsyncSession, msg_id: int) -> bool:
        """Take the message as answered, once: False if another turn already did."""
        return await repo.mark_handled(s, msg_id)

    async def _relay_to_inbox(self, conversation_id: int, msg_id: int) -> None:
        async with self.sessions() as s, s.begin():
            conv = await s.get(Conversation, conversation_id, with_for_update=True)
            assert conv is not None
            if not await self._mark_handled(s, msg_id):
                return
            self._enqueue(s, conv, outbox.thread_post(msg_id))
        self._changed(conversation_id)

    # ------------------------------------------------------------------ staff

    async def staff_reply(
        self,
        conversation_id: int,
        text: str,
        *,
        author: str,
        source: str,
        platform_id: str | None = None,
        note_prefix: str = ";",
    ) -> MessageView | None:
        """A person's reply: reaches the shopper (and claims the conversation if nobody owns it).
        A reply starting with the note prefix stays internal. Idempotent on `platform_id`.
        Masked like a shopper's text: staff paste card numbers too, and a reply is stored and
        sent on to the shopper's platform."""
        text = clean_string(text or "").strip()
        author = clean_string(author)
        if not text:
            raise CoreError("A reply needs some text.")
        if len(text) > self.max_text:
            raise CoreError(
                f"That reply is too long ({len(text)} characters; at most {self.max_text})."
            )
        is_note = bool(note_prefix) and text.startswith(note_prefix)
        if is_note:
            text = text[len(note_prefix) :].strip() or text
        text = mask_sensitive(text, self.mask_patterns)
        async with self.sessions() as s:
            async with s.begin():
                conv = await s.get(Conversation, conversation_id, with_for_update=True)
                if conv is None:
                    raise UnknownConversation(f"No conversation #{conversation_id}.")
                if platform_id is not None:
                    if not await repo.mark_processed(s, source, f"msg:{platform_id}"):
                        return None
                role = "note" if is_note else "human"
                self.metrics.messages_in.labels(source, role).inc()
                msg = await self._add_message(
                    s,
                    conv,
                    role,
                    text,
                    author=author,
                    source=source,
                    platform_id=platform_id,
                    deliver=False,
                )
                if not is_note:
                    self._enqueue(s, conv, outbox.shopper_send(repo.message_view(msg)))
                    if conv.state in ("queued", "bot", "resolved"):
                        await self._set_owner(s, conv, author, actor=author, announce=False)
                if conv.handed_off_at is not None:  # into the ticket, unless it came from there
                    self._enqueue(s, conv, outbox.thread_post(msg.id), skip=source)
                repo.touch(conv)
                view = repo.message_view(msg)
        self._changed(conversation_id)
        return view

    async def staff_command(
        self, conversation_id: int, command: str, *, actor: str, args: list[str] | None = None
    ) -> CommandResult:
        """claim | release | tag (+a -b) | resolve | bot | wrong [note]. Every change is an event
        row; a retag or `wrong` may also record a labelled example (core/corrections.py)."""
        args = args or []
        async with self.sessions() as s:
            async with s.begin():
                conv = await s.get(Conversation, conversation_id, with_for_update=True)
                if conv is None:
                    raise UnknownConversation(f"No conversation #{conversation_id}.")
                if command == "claim":
                    if conv.state == "claimed" and conv.owner == actor:
                        return CommandResult(
                            True,
                            f"You already own #{conv.id}.",
                            await repo.conversation_view(s, conv),
                        )
                    await self._set_owner(s, conv, actor, actor=actor, announce=True)
                    text = f"You claimed #{conv.id}."
                elif command == "release":
                    if conv.state != "claimed":
                        return CommandResult(False, f"#{conv.id} is not claimed.")
                    old_owner = conv.owner
                    conv.owner = None
                    await repo.add_state_event(s, conv, "owner", old_owner, None, actor)
                    await self._set_state(s, conv, "queued", actor)
                    text = f"Released #{conv.id} back to the queue."
                elif command == "tag":
                    add = [a[1:] if a.startswith("+") else a for a in args if not a.startswith("-")]
                    remove = [a[1:] for a in args if a.startswith("-")]
                    add = [t.strip().lower() for t in add if t.strip("+ ")]
                    remove = [t.strip().lower() for t in remove if t.strip()]
                    if not add and not remove:
                        return CommandResult(False, "Say which tags: `tag #42 +vip -cancellation`.")
                    added, removed = await repo.set_tags(s, conv, add, remove, actor)
                    text = f"#{conv.id}: " + ", ".join(
                        [f"+{t}" for t in added] + [f"-{t}" for t in removed] or ["no change"]
                    )
                    await self.corrections.after_retag(s, conv, added, removed, actor)
                elif command == "wrong":
                    learned = await self.corrections.wrong(s, conv, actor, " ".join(args))
                    if learned is None:
                        return CommandResult(False, f"The assistant did not hand off #{conv.id}.")
                    text = f"#{conv.id}: marked as a handoff that should not have happened. {learned.text}"
                elif command == "resolve":
                    if conv.state == "resolved":
                        return CommandResult(True, f"#{conv.id} is already resolved.")
                    from storage.models import Rating

                    await self._set_state(s, conv, "resolved", actor)
                    # A channel that can ask for the one rating a conversation gets (CSAT)
                    # asks with this message, until the conversation has been rated.
                    rated = await s.scalar(
                        select(Rating.id).where(Rating.conversation_id == conv.id).limit(1)
                    )
                    await self._add_message(
                        s,
                        conv,
                        "system",
                        self.messages.resolved,
                        meta=None if rated is not None else {"ask_rating": True},
                    )
                    text = f"Resolved #{conv.id}."
                elif command == "bot":
                    if conv.state == "bot":
                        return CommandResult(True, f"#{conv.id} is already with the AI.")
                    if conv.owner:
                        await repo.add_state_event(s, conv, "owner", conv.owner, None, actor)
                        conv.owner = None
                    await self._set_state(s, conv, "bot", actor)
                    conv.memory = {}
                    await self._add_message(s, conv, "system", self.messages.handback)
                    text = f"#{conv.id} is back with the AI."
                else:
                    raise CoreError(f"Unknown command {command!r}.")
                self._enqueue(s, conv, outbox.thread_update())
                repo.touch(conv)
                view = await repo.conversation_view(s, conv)
        self._changed(conversation_id)
        return CommandResult(True, text, view)

    async def _set_state(self, s: AsyncSession, conv: Conversation, new: str, actor: str) -> None:
        if conv.state == new:
            return
        await repo.add_state_event(s, conv, "state", conv.state, new, actor, at=self.clock.now())
        conv.state = new
        self._enqueue(s, conv, outbox.shopper_state(new))

    async def _set_owner(
        self, s: AsyncSession, conv: Conversation, owner: str, *, actor: str, announce: bool
    ) -> None:
        if conv.owner != owner:
            await repo.add_state_event(s, conv, "owner", conv.owner, owner, actor)
            conv.owner = owner
            if announce:
                name = self.display_name(owner)
                await self._add_message(s, conv, "system", self.messages.claimed.format(name=name))
        if conv.handed_off_at is None:
            # Taken over straight from the AI: the inbox needs its thread first.
            conv.handed_off_at = self.clock.now()
            await s.flush()
            last = await s.scalar(
                select(Message.id)
                .where(Message.conversation_id == conv.id)
                .order_by(Message.id.desc())
                .limit(1)
            )
            self._enqueue(s, conv, outbox.open_thread())
            self._enqueue(s, conv, outbox.thread_history(last))
        await self._set_state(s, conv, "claimed", actor)
        self._enqueue(s, conv, outbox.thread_update())

    # ---------------------------------------------------------------- helpers

    async def _add_message(
        self,
        s: AsyncSession,
        conv: Conversation,
        role: str,
        text: str,
        *,
        author: str | None = None,
        source: str = "core",
        platform_id: str | None = None,
        meta: dict[str, Any] | None = None,
        deliver: bool = True,
        tokens_in: int = 0,
        tokens_out: int = 0,
        latency_ms: int = 0,
    ) -> Message:
        msg = Message(
            conversation_id=conv.id,
            role=role,
            text=text,
            author=author,
            source=source,
            platform_id=platform_id,
            handled=True,
            meta=meta or {},
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            latency_ms=latency_ms,
        )
        s.add(msg)
        await s.flush()
        if deliver and role in ("agent", "human", "system"):
            self._enqueue(s, conv, outbox.shopper_send(repo.message_view(msg)))
            if conv.handed_off_at is not None and conv.state in ("queued", "claimed"):
                self._enqueue(s, conv, outbox.thread_post(msg.id))
        return msg

    def _enqueue(
        self,
        s: AsyncSession,
        conv: Conversation,
        out: Outgoing,
        priority: int | None = None,
        *,
        skip: str | None = None,
    ) -> None:
        """Queue a delivery in the transaction of the change that caused it: a row for the
        worker, or a live event published when the transaction commits. `skip`: not to the
        bridge the change came from (a reply typed in an inbox is not posted back to it)."""
        priority = conv.priority if priority is None else priority
        self._enqueue_to(s, conv.channel, conv.id, priority, out, skip=skip)

    def _enqueue_to(
        self,
        s: AsyncSession,
        channel: str,
        conversation_id: int,
        priority: int,
        out: Outgoing,
        *,
        skip: str | None = None,
    ) -> None:
        if out.lane is Lane.SHOPPER:
            live = self._live_channels.get(channel)
            if live is not None:
                self._publish_after_commit(s, live, conversation_id, out)
            else:
                self._add_row(s, out, channel, conversation_id, priority)
            return
        for inbox in self._live_inboxes:
            if inbox.name != skip:
                self._publish_after_commit(s, inbox, conversation_id, out)
        if self._ticket_inbox is not None and self._ticket_inbox != skip:
            self._add_row(s, out, self._ticket_inbox, conversation_id, priority)

    def _add_row(
        self,
        s: AsyncSession,
        out: Outgoing,
        destination: str,
        conversation_id: int | None,
        priority: int = 0,
    ) -> None:
        now = self.clock.now()
        s.add(
            OutboxRow(
                conversation_id=conversation_id,
                lane=out.lane.value,
                destination=destination,
                kind=out.kind.value,
                payload=dict(out.payload),
                priority=priority,
                created_at=now,
                next_attempt_at=now,
            )
        )
        after_commit(s, self.on_outbox)  # wake the worker only when there is a row for it

    def _publish_after_commit(
        self, s: AsyncSession, bridge: Bridge, conversation_id: int | None, out: Outgoing
    ) -> None:
        """A live bridge's delivery is the live event itself (the database is its record; a
        client that was away catches up from it), so it needs no outbox row, worker pass or
        retry: it is published the moment the change commits, in commit order."""

        def publish() -> None:
            bridge.publish(conversation_id, out)
            self.metrics.messages_out.labels(bridge.name, out.kind.value).inc()

        after_commit(s, publish)

    def _changed(self, conversation_id: int) -> None:
        self.live.publish("inbox", {"type": "changed", "conversation_id": conversation_id})

    async def system_message(self, conversation_id: int, text: str) -> MessageView:
        """A message from the service itself to the shopper (a welcome, a notice)."""
        async with self.sessions() as s, s.begin():
            conv = await s.get(Conversation, conversation_id)
            if conv is None:
                raise UnknownConversation(f"No conversation #{conversation_id}.")
            msg = await self._add_message(s, conv, "system", text)
            view = repo.message_view(msg)
        self._changed(conversation_id)
        return view

    async def inbox_notice(self, conversation_id: int, text: str) -> None:
        """A line in the conversation's inbox thread only (an SLA reminder), through the outbox."""
        async with self.sessions() as s, s.begin():
            conv = await s.get(Conversation, conversation_id)
            if conv is None:
                raise UnknownConversation(f"No conversation #{conversation_id}.")
            self._enqueue(s, conv, outbox.thread_notice(text))

    async def rate(self, conversation_id: int, score: int, channel: str) -> bool:
        """A shopper's one-tap rating, taken only once the conversation has been resolved, and
        once per conversation (False for a second one): CSAT counts conversations, not taps."""
        from storage.models import Rating, StateEvent

        if score not in (1, -1):
            raise CoreError("A rating is 1 (thumbs up) or -1 (thumbs down).")
        async with self.sessions() as s, s.begin():
            # The row lock makes two simultaneous first ratings take turns (PostgreSQL; SQLite
            # has one writer anyway).
            conv = await s.get(Conversation, conversation_id, with_for_update=True)
            if conv is None:
                raise UnknownConversation(f"No conversation #{conversation_id}.")
            resolved = await s.scalar(
                select(StateEvent.id)
                .where(StateEvent.conversation_id == conversation_id, StateEvent.new == "resolved")
                .limit(1)
            )
            if resolved is None:
                raise CoreError("Ratings are asked for after a conversation is resolved.")
            rated = await s.scalar(
                select(Rating.id).where(Rating.conversation_id == conversation_id).limit(1)
            )
            if rated is not None:
                return False
            s.add(Rating(conversation_id=conversation_id, score=score, channel=channel))
        return True

    async def enqueue_alert(self, text: str) -> None:
        """A line for the whole team (a spike), in every inbox."""
        alert = outbox.team_alert(text)
        async with self.sessions() as s, s.begin():
            for inbox in self._live_inboxes:
                self._publish_after_commit(s, inbox, None, alert)
            if self._ticket_inbox is not None:
                self._add_row(s, alert, self._ticket_inbox, None)

    # ------------------------------------------------------- bridges' bookkeeping

    async def take_once(self, source: str, platform_id: str) -> bool:
        """Record a platform's id for an incoming event (a Slack event id, a Telegram update
        id); False if it was recorded before: a retry or a redelivery, to be ignored."""
        async with self.sessions() as s, s.begin():
            return await repo.mark_processed(s, source, platform_id)

    async def was_taken(self, source: str, platform_id: str) -> bool:
        async with self.sessions() as s:
            return await repo.is_processed(s, source, platform_id)

    async def forget_taken(self, source: str, older_than: datetime) -> int:
        """Ids a platform can no longer retry need not be kept."""
        async with self.sessions() as s, s.begin():
            return await repo.prune_processed(s, older_than, source=source)

    async def hold_lease(self, name: str, holder: str, seconds: float) -> bool:
        """Take or renew the lease on a job only one instance may do at a time (Telegram's
        polling) for `seconds` from now; False: another holder has it and it has not expired."""
        now = self.clock.now()
        async with self.sessions() as s, s.begin():
            return await repo.take_lease(s, name, holder, now, now + timedelta(seconds=seconds))

    async def release_lease(self, name: str, holder: str) -> bool:
        """Give up a lease held (on stop), so another instance takes the job over at once."""
        async with self.sessions() as s, s.begin():
            return await repo.release_lease(s, name, holder)

    async def set_blocked(
        self, channel: str, channel_ref: str, blocked: bool, *, actor: str, reason: str
    ) -> bool:
        """Mark or clear `blocked` on a chat's latest conversation, with an event, and the inbox
        told (its ticket says whether replies can reach the shopper). False: no change. (The
        delivery worker marks it when a send is refused for good; this is the platform telling
        us, or the shopper writing again.)"""
        async with self.sessions() as s, s.begin():
            conv = await s.scalar(
                select(Conversation)
                .where(Conversation.channel == channel, Conversation.channel_ref == channel_ref)
                .order_by(Conversation.id.desc())
                .limit(1)
                .with_for_update()
            )
            if conv is None or conv.blocked == blocked:
                return False
            conv.blocked = blocked
            old, new = (None, "blocked") if blocked else ("blocked", None)
            await repo.add_state_event(s, conv, "blocked", old, new, actor, reason)
            if conv.handed_off_at is not None:
                self._enqueue(s, conv, outbox.thread_update())
            cid = conv.id
        self._changed(cid)
        return True

    # ------------------------------------------------------------------ reads

    async def get(self, conversation_id: int) -> ConversationView:
        async with self.sessions() as s:
            view = await repo.load_view(s, conversation_id)
        if view is None:
            raise UnknownConversation(f"No conversation #{conversation_id}.")
        return view

    async def history(
        self,
        conversation_id: int,
        *,
        after: int = 0,
        include_notes: bool = False,
        limit: int | None = None,
    ) -> list[MessageView]:
        """Messages after `after`, oldest first; at most `limit` (a client pages with `after=`)."""
        if not include_notes and limit is not None:  # a client's catch-up: the hot read
            return await self.reads.page_after(conversation_id, after, limit)
        async with self.sessions() as s:
            return await repo.history(
                s, conversation_id, after=after, include_notes=include_notes, limit=limit
            )

    async def conversation_by_thread(self, thread_key: str) -> int | None:
        """The conversation whose inbox ticket this is (a reply in a Slack thread), if any."""
        async with self.sessions() as s:
            conv = await repo.find_by_thread(s, thread_key)
            return conv.id if conv is not None else None

    async def open_queue(
        self, states: tuple[str, ...] = ("queued", "claimed")
    ) -> list[ConversationView]:
        """Handed-off conversations by priority, then longest waiting."""
        async with self.sessions() as s:
            return await repo.open_queue(s, states)

    async def waiting_since(self, before: datetime) -> list[ConversationView]:
        """Conversations handed off before `before` that nobody has claimed (SLA reminders)."""
        async with self.sessions() as s:
            ids = await repo.queued_before(s, before)
            views = await repo.load_views(s, ids) if ids else {}
        return [views[i] for i in ids if i in views]

    async def stats(
        self, since: datetime, until: datetime | None = None, tag: str | None = None
    ) -> Stats:
        async with self.sessions() as s:
            return await compute_stats(s, since, until, tag)

    async def tag_series(
        self, since: datetime, until: datetime, bucket: timedelta, tag: str | None = None
    ) -> dict[str, Any]:
        async with self.sessions() as s:
            return await tag_series(s, since, until, bucket, tag)
