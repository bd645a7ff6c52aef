"""Approve or deny a prepared write (core/approvals.py) from the Slack ticket: the Approve and
Deny buttons under each prepared action, and `/handoff approve #42`, `/handoff deny #42 reason`.

This module only says who is asking and passes the decision on: the core checks them against
the store's `approvers:` and decides by one compare-and-set, so a second click, two people at
once or a redelivered interaction run the write at most once. What Slack adds:

- who: the Slack user id, and the listed user groups they are in (usergroups.users.list, asked
  only when the id itself is not listed, and cached for a minute). If Slack cannot say who is in
  a group (a missing `usergroups:read` scope), nobody gets in through that group, and the
  refusal says why.
- a redelivered interaction (the same button press sent again, with X-Slack-Retry-Num) is
  recognised by its `action_ts` (a note window's submission by its view id) and ignored,
  like a retried event, so the person is not even told twice.
- Deny asks for a note: the button opens a window (views.open) after the same check Approve
  gets, so someone not on the list is refused before typing anything; the command takes the
  note after the number.

The ticket is edited through the outbox (the core enqueues it with the decision), and the
outcome of the run (done, or the store API's error) is a note in the thread."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bridges.slack.blocks import escape
from bridges.slack.presses import channel_of, refused_outside
from core.approvals import DECIDED_LABEL, UNDECIDED, Approver, NotAnApprover, PreparedView
from core.lifecycle import CommandResult, CoreError, UnknownConversation

if TYPE_CHECKING:  # the listeners' shared context (listeners.py registers this module)
    from bridges.slack.listeners import SlackContext

log = logging.getLogger("handoff.slack")

EVENT_SOURCE = "slack-event"  # processed ids, pruned with the events' (reminders.py)
DENY_VIEW = "handoff_deny"
NOTE_BLOCK = "note"
VERBS = {"approve": "approve", "deny": "deny", "reject": "deny"}
USAGE = {"approve": "/handoff approve #42", "deny": "/handoff deny #42 reason"}
HELP = (
    "• `/handoff approve #42` (or `#42:2`, the second prepared action): run a prepared write\n"
    "• `/handoff deny #42 reason`: refuse it, with a note kept on the ticket"
)
TARGET = re.compile(r"#?(\d{1,12})(?::(\d{1,3}))?")


class GroupMembers:
    """Members of the Slack user groups listed as approvers (usergroups.users.list, Tier 2),
    kept `ttl` seconds. A group Slack will not list counts as empty, and `problems` says why."""

    def __init__(self, client: AsyncWebClient, ttl: float = 60.0, timeout: float = 3.0) -> None:
        self.client = client
        self.ttl = ttl
        self.timeout = timeout
        self.cache: dict[str, tuple[frozenset[str], float]] = {}
        self.problems: dict[str, str] = {}

    async def members(self, group: str) -> frozenset[str]:
        hit = self.cache.get(group)
        if hit is not None and time.monotonic() - hit[1] < self.ttl:
            return hit[0]
        try:
            resp = await asyncio.wait_for(
                self.client.usergroups_users_list(usergroup=group), self.timeout
            )
        except Exception as exc:  # SlackApiError, a timeout, Slack unreachable
            error = exc.response.get("error") if isinstance(exc, SlackApiError) else None
            self.problems[group] = str(error or type(exc).__name__)
            log.warning("usergroups.users.list %s failed: %s", group, self.problems[group])
            return hit[0] if hit is not None else frozenset()
        users = resp.get("users") or []
        found = frozenset(str(u) for u in users if isinstance(u, str))
        self.cache[group] = (found, time.monotonic())
        self.problems.pop(group, None)
        return found

    async def of(self, user: str, groups: Iterable[str]) -> frozenset[str]:
        """Which of `groups` list `user`."""
        return frozenset([g for g in sorted(set(groups)) if user in await self.members(g)])


def members(ctx: SlackContext) -> GroupMembers:
    if ctx.groups is None:
        ctx.groups = GroupMembers(ctx.inbox.client)
    return ctx.groups


async def approver(ctx: SlackContext, user: str, hint: str | None, action: str) -> Approver:
    """The Slack user as the core's approvals see them: their name, id and listed groups."""
    assert ctx.core.approvals is not None
    listed = ctx.core.approvals.approvers(action)
    groups: frozenset[str] = frozenset()
    if not listed.allows_slack(user) and listed.slack_groups:
        groups = await members(ctx).of(user, listed.slack_groups)
    return Approver(name=await ctx.names(user, hint), via="slack", slack_user=user, slack_groups=groups)


def _refusal(ctx: SlackContext, exc: NotAnApprover, action: str) -> str:
    assert ctx.core.approvals is not None
    unknown = [
        f"`{g}` ({ctx.groups.problems[g]})"
        for g in ctx.core.approvals.approvers(action).slack_groups
        if ctx.groups is not None and g in ctx.groups.problems
    ]
    if unknown:
        return f"{exc} Slack did not say who is in {', '.join(unknown)}."
    return str(exc)


async def decide(
    ctx: SlackContext,
    verb: str,
    cid: int,
    user: str,
    hint: str | None = None,
    *,
    prepared_id: int | None = None,
    seq: int | None = None,
    note: str = "",
) -> CommandResult:
    """Approve or deny as this Slack user; every refusal comes back as a result's text."""
    approvals = ctx.core.approvals
    if approvals is None:
        return CommandResult(False, "This store has no write actions to approve.")
    action = ""
    try:
        view = await approvals.find(cid, seq=seq, prepared_id=prepared_id)
        action = view.action
        who = await approver(ctx, user, hint, action)
        if verb == "approve":
            return await approvals.approve(cid, who, prepared_id=view.id)
        return await approvals.deny(cid, who, note, prepared_id=view.id)
    except UnknownConversation:
        return CommandResult(
            False, f"There is no conversation #{cid}. `/handoff list` shows the open queue."
        )
    except NotAnApprover as exc:
        return CommandResult(False, _refusal(ctx, exc, action))
    except CoreError as exc:
        return CommandResult(False, str(exc))


async def precheck(
    ctx: SlackContext, cid: int, prepared_id: int, user: str, hint: str | None
) -> tuple[PreparedView | None, str]:
    """Before a deny's note window opens: the prepared action, or why it cannot be denied."""
    approvals = ctx.core.approvals
    if approvals is None:
        return None, "This store has no write actions to approve."
    try:
        view = await approvals.find(cid, prepared_id=prepared_id)
        if view.state != UNDECIDED:
            by = f" by {view.decided_by}" if view.decided_by else ""
            label = DECIDED_LABEL.get(view.state, view.state)
            return None, f"#{cid}:{view.seq} ({view.summary}) was already {label}{by}."
        try:
            approvals.check(view.action, await approver(ctx, user, hint, view.action), "deny")
        except NotAnApprover as exc:
            return None, _refusal(ctx, exc, view.action)
        return view, ""
    except UnknownConversation:
        return None, f"There is no conversation #{cid}."
    except CoreError as exc:
        return None, str(exc)


def deny_view(ctx: SlackContext, cid: int, view: PreparedView, channel: str | None) -> dict[str, Any]:
    """The window that asks why (Slack's limits: a title of 24 characters, a note of 1,000)."""
    action = ctx.config.actions.get(view.action)
    told = (
        "The shopper gets the store's message for a denial."
        if action is not None and action.messages.denied
        else "The shopper is not told automatically: answer them in the thread."
    )
    return {
        "type": "modal",
        "callback_id": DENY_VIEW,
        "private_metadata": json.dumps({"cid": cid, "pid": view.id, "channel": channel}),
        "title": {"type": "plain_text", "text": f"Deny #{cid}:{view.seq}"[:24]},
        "submit": {"type": "plain_text", "text": "Deny"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": f"*{escape(view.summary)[:2800]}*\nThe note is kept on the ticket. {told}",
                },
            },
            {
                "type": "input",
                "block_id": NOTE_BLOCK,
                "label": {"type": "plain_text", "text": "Why is it denied?"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": NOTE_BLOCK,
                    "multiline": True,
                    "max_length": 1000,
                },
            },
        ],
    }


async def first_time(ctx: SlackContext, key: str | None) -> bool:
    """False for an interaction Slack delivered before (a retry): it was handled then."""
    if not key:
        return True
    if await ctx.core.take_once(EVENT_SOURCE, f"interaction:{key}"):
        return True
    log.info("Slack interaction %s seen before: ignored", key)
    return False


async def command(ctx: SlackContext, verb: str, rest: list[str], cmd: dict[str, Any]) -> str:
    """`/handoff approve #42[:N]`, `/handoff deny #42[:N] reason`: the answer, for the person."""
    usage = USAGE[verb]
    if not rest:
        return f"Which conversation? Type `{usage}`."
    m = TARGET.fullmatch(rest[0])
    if m is None:
        return f"`{rest[0]}` is not a conversation number. Type `{usage}`."
    cid, seq = int(m.group(1)), int(m.group(2)) if m.group(2) else None
    note = " ".join(rest[1:])
    if verb == "deny" and not note.strip() and cmd.get("trigger_id"):
        opened = await ask_for_note(ctx, cid, seq, cmd)
        if opened is not None:
            return opened
    result = await decide(
        ctx, verb, cid, str(cmd.get("user_id") or ""), cmd.get("user_name"), seq=seq, note=note
    )
    text = escape(result.text)
    if verb == "deny" and not note.strip() and text.startswith("Say why"):
        text += f" Type `{usage}`."
    return text


async def ask_for_note(
    ctx: SlackContext, cid: int, seq: int | None, cmd: dict[str, Any]
) -> str | None:
    """`/handoff deny #42` without a reason opens the same note window as the Deny button (the
    command's trigger lasts 3 s like a press's). None when no window could open: the caller then
    answers as before, saying what to type."""
    uid, hint = str(cmd.get("user_id") or ""), cmd.get("user_name")
    approvals = ctx.core.approvals
    if approvals is None:
        return None
    try:
        found = await approvals.find(cid, seq=seq)
    except CoreError:
        return None  # decide() says why in the caller's answer
    view, problem = await precheck(ctx, cid, found.id, uid, hint)
    if view is None:
        return escape(problem)
    try:
        await ctx.inbox.client.views_open(
            trigger_id=str(cmd["trigger_id"]),
            view=deny_view(ctx, cid, view, cmd.get("channel_id")),
        )
    except Exception as exc:  # an expired trigger (the command took over 3 s), Slack unreachable
        log.warning("views.open for /handoff deny #%s failed: %s", cid, exc)
        return None
    return f"Write why #{cid}:{view.seq} is denied in the window; nothing is denied until you send it."


def register_approvals(app: AsyncApp, ctx: SlackContext) -> None:
    """The Approve and Deny buttons, and the deny note's window."""

    @app.action(re.compile(r"^handoff_(approve|deny)$"))
    async def on_decide(
        ack: Any, body: dict[str, Any], action: dict[str, Any], respond: Any
    ) -> None:
        await ack()
        ctx.track()
        user = body.get("user") or {}
        uid = str(user.get("id") or "")
        hint = user.get("name") or user.get("username")
        stamp = action.get("action_ts")
        if not await first_time(ctx, f"{uid}:{action.get('action_id')}:{stamp}" if stamp else None):
            return
        channel = channel_of(body)

        async def tell(text: str) -> None:
            await respond(text=escape(text), response_type="ephemeral", replace_original=False)

        if await refused_outside(ctx.allowed, body, respond):
            return
        try:
            cid, pid = (int(x) for x in json.loads(action.get("value") or ""))
        except (ValueError, TypeError):
            return
        if action["action_id"] == "handoff_approve":
            result = await decide(ctx, "approve", cid, uid, hint, prepared_id=pid)
            if not result.ok:
                await tell(result.text)
            return
        view, problem = await precheck(ctx, cid, pid, uid, hint)
        if view is None:
            await tell(problem)
            return
        try:
            await ctx.inbox.client.views_open(
                trigger_id=str(body.get("trigger_id") or ""),
                view=deny_view(ctx, cid, view, channel),
            )
        except Exception as exc:  # an expired trigger (over 3 s), Slack unreachable
            log.warning("views.open for a deny on #%s failed: %s", cid, exc)
            await tell(
                "Slack could not open the window for the note; type "
                f"`/handoff deny #{cid}:{view.seq} reason` instead."
            )

    @app.view(DENY_VIEW)
    async def on_deny_note(ack: Any, body: dict[str, Any], view: dict[str, Any]) -> None:
        values = ((view.get("state") or {}).get("values") or {}).get(NOTE_BLOCK) or {}
        note = str((values.get(NOTE_BLOCK) or {}).get("value") or "")
        if not note.strip():
            await ack(
                response_action="errors",
                errors={NOTE_BLOCK: "Say why it is denied: the note is kept on the ticket."},
            )
            return
        await ack()
        ctx.track()
        if not await first_time(ctx, f"view:{view.get('id')}" if view.get("id") else None):
            return
        user = body.get("user") or {}
        uid = str(user.get("id") or "")
        try:
            meta = json.loads(view.get("private_metadata") or "")
            cid, pid, channel = int(meta["cid"]), int(meta["pid"]), meta.get("channel")
        except (ValueError, TypeError, KeyError):
            return
        result = await decide(
            ctx, "deny", cid, uid, user.get("name") or user.get("username"), prepared_id=pid, note=note
        )
        if not result.ok and channel:
            await ctx.ephemeral(channel, uid, escape(result.text), None)
