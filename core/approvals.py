"""Prepared writes to the store (cancel an order, refund an amount): stored with the handoff,
approved or denied by a person, run once.

A rule `prepare:`s a write action with its params; the agent puts it in the handoff's context,
and `store` (called in the handoff's transaction) gives it a row in `prepared_actions` and a
number on the ticket. From there, one compare-and-set on that row's state decides everything:

- approve and deny move it from `prepared` once; a second click, a retried Slack interaction or
  two people at once find it decided and are told by whom. The approval's transaction also
  writes the outbox row that runs the write, so an approval is never lost and never runs twice.
- the run (the delivery worker's handler for Lane.ACTION rows) sends the write with the
  action's idempotency key, the same key on every attempt; a 5xx or a timeout is retried with
  the worker's backoff up to the action's `attempts`, and the outcome moves the row from
  `approved` to `done` or `failed` once, however often the outbox delivers it.

Who may decide is the store's YAML (`approvers:`, per action or for the store): the bridge says
who is asking (a Slack user and the listed groups it is in, or a web-inbox account) and this
module checks it, so no bridge can let someone else through.

The ticket shows each prepared action from the conversation's context, which is kept in step
with the row in the same transaction (the row is the record; the context is what the inboxes
render). Outcomes are written into the thread as internal notes, and the shopper is told only
what the action's `messages:` in the YAML say."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Table, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.lifecycle import CommandResult, Core, CoreError, UnknownConversation
from domain import outbox
from domain.outbox import STORE_DESTINATION, DeliveryResult, RunActionPayload
from domain.ports import DeliveryError
from domain.storeconfig import Action, Approvers, StoreConfig
from domain.templating import render
from domain.textclean import clean_string
from domain.writes import StoreWriter, WriteOutcome, WriteStatus, check_params
from storage import repo
from storage.db import affected
from storage.models import Conversation, PreparedAction

if TYPE_CHECKING:  # the worker holds this object's handler; it only names the claim type
    from core.delivery import Claim

log = logging.getLogger("handoff.approvals")

MAX_NOTE = 1000
UNDECIDED = "prepared"
DECIDED_LABEL = {
    "approved": "approved",
    "denied": "denied",
    "done": "approved and done",
    "failed": "approved, and failed",
    "expired": "replaced by a later handoff",
}


class NotAnApprover(CoreError):
    """The person asking is not on the action's approvers list: nothing was decided or run."""


@dataclass(frozen=True)
class Approver:
    """Who is asking to approve or deny, as the bridge they asked through knows them."""

    name: str  # how they appear on the ticket and in the events
    via: str  # the bridge: slack | web
    slack_user: str | None = None
    slack_groups: frozenset[str] = frozenset()  # listed groups the bridge found them in
    staff: str | None = None  # the signed-in web-inbox account

    def allowed_by(self, approvers: Approvers) -> bool:
        if self.slack_user:
            return approvers.allows_slack(self.slack_user, self.slack_groups)
        if self.staff:
            return approvers.allows_staff(self.staff)
        return False


@dataclass(frozen=True)
class PreparedView:
    id: int
    conversation_id: int
    seq: int
    action: str
    summary: str
    state: str
    decided_by: str | None


def describe_result(captured: dict[str, Any] | None) -> str:
    """What the store's answer kept (`capture:`), as one line: "refund id re_0001, amount 59"."""
    parts: list[str] = []
    for key, value in (captured or {}).items():
        if isinstance(value, dict):
            parts.extend(
                f"{key} {k} {v}" for k, v in value.items() if isinstance(v, str | int | float)
            )
        elif isinstance(value, str | int | float) and not isinstance(value, bool):
            parts.append(f"{key} {value}")
    return ", ".join(parts)


def _view(row: PreparedAction) -> PreparedView:
    return PreparedView(
        row.id, row.conversation_id, row.seq, row.action, row.summary, row.state, row.decided_by
    )


_PREPARED = cast(Table, PreparedAction.__table__)
_EXPIRE_UNDECIDED = (
    update(_PREPARED)
    .where(_PREPARED.c.conversation_id == bindparam("cid"), _PREPARED.c.state == UNDECIDED)
    .values(state="expired")
)


class Approvals:
    def __init__(self, core: Core, config: StoreConfig, writer: StoreWriter) -> None:
        self.core = core
        self.config = config
        self.writer = writer

    # ------------------------------------------------------------------ the handoff

    async def store(self, s: AsyncSession, conv: Conversation) -> None:
        """In the handoff's transaction: a row for each action the agent prepared (numbered on
        from the conversation's earlier ones), its idempotency key rendered now so every
        attempt sends the same one; earlier undecided ones are no longer offered."""
        conn = await s.connection()  # a table statement, built once: no ORM compile per handoff
        await conn.execute(_EXPIRE_UNDECIDED, {"cid": conv.id})
        context = dict(conv.context or {})
        entries = [dict(e) for e in context.get("prepared") or [] if isinstance(e, dict)]
        if not entries:
            return
        last = await s.scalar(
            select(func.max(PreparedAction.seq)).where(PreparedAction.conversation_id == conv.id)
        )
        seq = int(last or 0)
        now = self.core.clock.now()
        for entry in entries:
            if entry.get("state") != UNDECIDED:
                continue
            name = str(entry.get("action"))
            action = self.config.actions.get(name)
            if action is None or not action.writes or action.idempotency_key is None:
                entry.update(state="not_prepared", problems=[f"{name} is not a write action"])
                continue
            params = repo.json_safe(entry.get("params") or {})
            row = PreparedAction(
                conversation_id=conv.id,
                seq=seq + 1,
                action=name,
                params=params,
                summary=str(entry.get("summary") or name)[:2000],
                idempotency_key="",
                state=UNDECIDED,
                attempts=0,
                created_at=now,
            )
            s.add(row)
            await s.flush()
            try:
                key = render(
                    action.idempotency_key,
                    **params,
                    conversation_id=conv.id,
                    prepared_id=row.id,
                    action=name,
                ).strip()
                problem = "" if key else "the idempotency_key rendered empty"
            except Exception as exc:  # a template that fails on these params
                key, problem = "", f"idempotency_key: {type(exc).__name__}: {exc}"
            if not problem and len(key) > 255:
                problem = "the idempotency_key is over 255 characters"
            if problem:
                await s.delete(row)
                entry.update(state="not_prepared", problems=[problem])
                continue
            row.idempotency_key = key
            seq += 1
            entry.update(id=row.id, seq=seq, attempts=0, max_attempts=action.attempts)
        conv.context = {**context, "prepared": entries}

    # ------------------------------------------------------------------ reads

    async def find(
        self, conversation_id: int, *, seq: int | None = None, prepared_id: int | None = None
    ) -> PreparedView:
        """The prepared action a person points at: by its id (a button), its number on the
        ticket (`#42:2`), or the only one waiting. Raises CoreError saying what to type."""
        async with self.core.sessions() as s:
            if await s.get(Conversation, conversation_id) is None:
                raise UnknownConversation(f"There is no conversation #{conversation_id}.")
            row = await self._pick(s, conversation_id, seq, prepared_id)
            return _view(row)

    def approvers(self, action: str) -> Approvers:
        return self.config.approvers_of(action)

    def check(self, action: str, who: Approver, verb: str = "approve") -> None:
        """Raise NotAnApprover unless `who` may decide on `action` (asked again by every
        decision; a bridge may ask first, before it opens a window for a deny's note)."""
        if not who.allowed_by(self.approvers(action)):
            raise NotAnApprover(
                f"You're not on the approvers list for {action} in the store's "
                f"YAML, so you can't {verb} it; nothing was run."
            )

    def listed_slack_groups(self) -> set[str]:
        """Every Slack group named as approvers anywhere (the bridge looks a person up in these)."""
        groups = set(self.config.approvers.slack_groups)
        for action in self.config.actions.values():
            if action.approvers is not None:
                groups.update(action.approvers.slack_groups)
        return groups

    async def _pick(
        self, s: AsyncSession, cid: int, seq: int | None, prepared_id: int | None
    ) -> PreparedAction:
        rows = list(
            await s.scalars(
                select(PreparedAction)
                .where(PreparedAction.conversation_id == cid)
                .order_by(PreparedAction.seq)
            )
        )
        if prepared_id is not None:
            found = next((r for r in rows if r.id == prepared_id), None)
            if found is None:
                raise CoreError(f"#{cid} has no such prepared action.")
            return found
        if seq is not None:
            found = next((r for r in rows if r.seq == seq), None)
            if found is None:
                raise CoreError(f"#{cid} has no prepared action {seq}.")
            return found
        if not rows:
            raise CoreError(f"#{cid} has no prepared action.")
        waiting = [r for r in rows if r.state == UNDECIDED]
        if len(waiting) > 1:
            numbers = ", ".join(f"#{cid}:{r.seq}" for r in waiting)
            raise CoreError(f"#{cid} has {len(waiting)} prepared actions waiting ({numbers}): say which.")
        live = [r for r in rows if r.state != "expired"]
        return waiting[0] if waiting else (live or rows)[-1]

    # ------------------------------------------------------------------ decisions

    async def approve(
        self,
        conversation_id: int,
        who: Approver,
        *,
        seq: int | None = None,
        prepared_id: int | None = None,
    ) -> CommandResult:
        return await self._decide(conversation_id, who, "approved", "", seq, prepared_id)

    async def deny(
        self,
        conversation_id: int,
        who: Approver,
        note: str,
        *,
        seq: int | None = None,
        prepared_id: int | None = None,
    ) -> CommandResult:
        return await self._decide(conversation_id, who, "denied", note, seq, prepared_id)

    async def _decide(
        self,
        cid: int,
        who: Approver,
        verdict: str,
        note: str,
        seq: int | None,
        prepared_id: int | None,
    ) -> CommandResult:
        core = self.core
        name = clean_string(who.name or "")[:200] or "someone"
        note = " ".join(clean_string(note or "").split())[:MAX_NOTE]
        async with core.sessions() as s:
            async with s.begin():
                conv = await s.get(Conversation, cid, with_for_update=True)
                if conv is None:
                    raise UnknownConversation(f"There is no conversation #{cid}.")
                row = await self._pick(s, cid, seq, prepared_id)
                self.check(row.action, who, "approve" if verdict == "approved" else "deny")
                if verdict == "denied" and not note:
                    raise CoreError("Say why it is denied: the note is kept on the ticket.")
                won = await s.execute(
                    update(PreparedAction)
                    .execution_options(synchronize_session=False)
                    .where(PreparedAction.id == row.id, PreparedAction.state == UNDECIDED)
                    .values(
                        state=verdict,
                        decided_by=name,
                        decided_via=who.via,
                        decided_at=core.clock.now(),
                        note=note or None,
                    )
                )
                if affected(won) != 1:
                    await s.refresh(row)
                    by = f" by {row.decided_by}" if row.decided_by else ""
                    label = DECIDED_LABEL.get(row.state, row.state)
                    return CommandResult(
                        False, f"#{cid}:{row.seq} ({row.summary}) was already {label}{by}."
                    )
                await s.refresh(row)
                await repo.add_state_event(
                    s, conv, "approval", UNDECIDED, verdict, name, note or row.summary
                )
                self._sync(conv, row)
                if verdict == "approved":
                    core._add_row(
                        s,
                        outbox.run_action(row.id),
                        STORE_DESTINATION,
                        conv.id,
                        conv.priority,
                    )
                    text = f"Approved #{cid}:{row.seq}: {row.summary}. Running it now."
                else:
                    await self._note(s, conv, f"🚫 Denied by {name}: {row.summary}. Note: {note}")
                    await self._tell(s, conv, row, "denied", {})
                    text = f"Denied #{cid}:{row.seq}: {row.summary}."
                core._enqueue(s, conv, outbox.thread_update())
                repo.touch(conv)
                view = await repo.conversation_view(s, conv)
        core._changed(cid)
        return CommandResult(True, text, view)

    # ------------------------------------------------------------------ running

    async def deliver(self, claim: Claim) -> DeliveryResult:
        """The delivery worker's handler for an approved write: one attempt per call. Raising a
        DeliveryError that is not permanent makes the worker try again after its backoff."""
        payload = cast(RunActionPayload, claim.payload)
        async with self.core.sessions() as s, s.begin():
            row = await s.get(PreparedAction, int(payload.get("prepared_id", 0)))
            if row is None:
                raise DeliveryError("the prepared action is gone", permanent=True)
            if row.state != "approved":  # already finished: a second delivery does nothing
                return DeliveryResult.done(skipped=row.state)
            row.attempts += 1
            attempt, name, params, key = row.attempts, row.action, dict(row.params), row.idempotency_key
            row_id = row.id
        action = self.config.actions.get(name)
        if action is None or not action.writes:
            await self._finish(row_id, WriteOutcome(WriteStatus.REFUSED, error=f"{name} is no longer a write action in the store's YAML"))
            raise DeliveryError(f"{name} is not a write action", permanent=True)
        checked = check_params(action, params)
        if not checked.ok:
            error = "its params no longer pass the YAML's checks: " + "; ".join(checked.problems)
            await self._finish(row_id, WriteOutcome(WriteStatus.REFUSED, error=error))
            raise DeliveryError(error, permanent=True)
        outcome = await self.writer.write(name, checked.values, key)
        log.info(
            "write %s #%s attempt %s: %s %s",
            name, row_id, attempt, outcome.status.value, outcome.http_status or "",
        )
        if outcome.status is WriteStatus.RETRY and attempt < action.attempts:
            await self._retrying(row_id, outcome, attempt)
            raise DeliveryError(f"{name}: {outcome.error or 'retry'}")
        finished = await self._finish(row_id, outcome)
        if outcome.status is not WriteStatus.DONE:
            raise DeliveryError(f"{name} failed: {outcome.error}", permanent=True)
        return DeliveryResult.done(outcome=finished, http_status=outcome.http_status)

    async def _retrying(self, row_id: int, outcome: WriteOutcome, attempt: int) -> None:
        """A 5xx or a timeout with attempts left: the ticket says so, then the worker retries."""
        async with self.core.sessions() as s, s.begin():
            row = await s.get(PreparedAction, row_id)
            if row is None or row.state != "approved":
                return
            row.error = outcome.error
            conv = await s.get(Conversation, row.conversation_id, with_for_update=True)
            if conv is None:
                return
            self._sync(conv, row)
            self.core._enqueue(s, conv, outbox.thread_update())
        self.core._changed(row.conversation_id)

    async def _finish(self, row_id: int, outcome: WriteOutcome) -> str:
        """The write's outcome, once: done or failed, in the thread as a note, on the ticket,
        and to the shopper if the YAML has a message for it."""
        done = outcome.status is WriteStatus.DONE
        state = "done" if done else "failed"
        result = repo.json_safe(outcome.captured) if outcome.captured else None
        async with self.core.sessions() as s:
            async with s.begin():
                row = await s.get(PreparedAction, row_id)
                if row is None:
                    return "gone"
                conv = await s.get(Conversation, row.conversation_id, with_for_update=True)
                assert conv is not None
                won = await s.execute(
                    update(PreparedAction)
                    .execution_options(synchronize_session=False)
                    .where(PreparedAction.id == row_id, PreparedAction.state == "approved")
                    .values(
                        state=state,
                        result=result,
                        error=None if done else (outcome.error or "failed"),
                        finished_at=self.core.clock.now(),
                    )
                )
                if affected(won) != 1:
                    await s.refresh(row)
                    return row.state
                await s.refresh(row)
                await repo.add_state_event(
                    s, conv, "approval", "approved", state, "store", row.error or row.summary
                )
                self._sync(conv, row)
                by = row.decided_by or "someone"
                if done:
                    shown = describe_result(row.result)
                    text = f"✅ Done: {row.summary} (approved by {by})." + (
                        f" The store's API answered: {shown}." if shown else ""
                    )
                else:
                    tries = f" after {row.attempts} attempts" if row.attempts > 1 else ""
                    text = (
                        f"❌ Failed{tries}: {row.summary} (approved by {by}). "
                        f"The store's API said: {row.error}"
                    )
                await self._note(s, conv, text)
                await self._tell(s, conv, row, state, row.result or {})
                self.core._enqueue(s, conv, outbox.thread_update())
                repo.touch(conv)
        self.core._changed(conv.id)
        return state

    # ------------------------------------------------------------------ helpers

    def _sync(self, conv: Conversation, row: PreparedAction) -> None:
        """The ticket's copy of the row, in the conversation's context (what inboxes render)."""
        context = dict(conv.context or {})
        entries = [dict(e) for e in context.get("prepared") or [] if isinstance(e, dict)]
        for entry in entries:
            if entry.get("id") == row.id:
                entry.update(
                    state=row.state,
                    by=row.decided_by,
                    via=row.decided_via,
                    note=row.note,
                    attempts=row.attempts,
                    error=row.error,
                    result=describe_result(row.result) or None,
                )
        conv.context = {**context, "prepared": entries}

    async def _note(self, s: AsyncSession, conv: Conversation, text: str) -> None:
        """An internal note in the conversation (both inboxes show it), into the ticket."""
        msg = await self.core._add_message(s, conv, "note", text, deliver=False)
        if conv.handed_off_at is not None:
            self.core._enqueue(s, conv, outbox.thread_post(msg.id))

    async def _tell(
        self,
        s: AsyncSession,
        conv: Conversation,
        row: PreparedAction,
        what: str,
        result: dict[str, Any],
    ) -> None:
        """The shopper hears only what the action's `messages:` say for this outcome."""
        action: Action | None = self.config.actions.get(row.action)
        template = getattr(action.messages, what, None) if action is not None else None
        if not template:
            return
        try:
            text = render(template, **(row.params or {}), result=result, note=row.note or "").strip()
        except Exception:
            log.exception("the %s message of %s did not render", what, row.action)
            return
        if text:
            await self.core._add_message(s, conv, "system", text)
