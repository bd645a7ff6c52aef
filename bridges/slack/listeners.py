"""Bolt listeners: thread replies, buttons, the tag picker and the /handoff command.

Slack wants an answer within 3 seconds. Events are acknowledged by Bolt before their listener
runs; what must not be lost is then stored by the core at once (an event id is recorded before
the answer goes out, so a retry of an event we answered does nothing, and a failure before that
answer makes Slack retry). Buttons acknowledge first and work after. The slash command answers
in its acknowledgement when the work takes under two seconds, else says it is on it and answers
through the response URL."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient

from bridges.slack import approvals
from bridges.slack.blocks import escape
from bridges.slack.inbox import SlackInbox
from bridges.slack.markup import to_plain
from bridges.slack.presses import presser, refused_outside
from core.lifecycle import CommandResult, Core, CoreError, UnknownConversation
from domain.storeconfig import StoreConfig

log = logging.getLogger("handoff.slack")

EVENT_SOURCE = "slack-event"  # processed_ids rows: Slack event ids already taken in
HELP = (
    "Type one of:\n"
    "• `/handoff list`: the open queue, by priority and age\n"
    "• `/handoff stats` (or `stats 7d`): handoffs and tag counts\n"
    "• `/handoff claim #42`, `/handoff release #42`\n"
    "• `/handoff tag #42 +vip -cancellation`\n"
    "• `/handoff resolve #42`, `/handoff bot #42` (back to the AI)\n"
    "• `/handoff wrong #42 [note]`: a handoff that should not have happened (teaches the AI)\n"
    + approvals.HELP
)
VERBS = {
    "claim": "claim",
    "take": "claim",
    "release": "release",
    "unclaim": "release",
    "tag": "tag",
    "tags": "tag",
    "resolve": "resolve",
    "close": "resolve",
    "done": "resolve",
    "bot": "bot",
    "ai": "bot",
    "back": "bot",
    "wrong": "wrong",
    **approvals.VERBS,
}
USAGE = {
    "claim": "/handoff claim #42",
    "release": "/handoff release #42",
    "tag": "/handoff tag #42 +vip -cancellation",
    "resolve": "/handoff resolve #42",
    "bot": "/handoff bot #42",
    "wrong": "/handoff wrong #42 [note]",
}
PERIOD = re.compile(r"^(\d{1,3})([hdw])$")


class Names:
    """Slack user ids to the names people go by. An event's own `user_profile` is used when it
    has one; else users.info (Tier 4, cached for an hour). If Slack cannot say, the store's team
    name stands in: a shopper never sees a raw user id."""

    def __init__(
        self, client: AsyncWebClient, fallback: str, ttl: float = 3600.0, timeout: float = 2.0
    ) -> None:
        self.client = client
        self.fallback = fallback
        self.ttl = ttl
        self.timeout = timeout
        self.cache: dict[str, tuple[str, float]] = {}

    def learn(self, user_id: str, profile: dict[str, Any] | None) -> None:
        name = _profile_name(profile or {})
        if user_id and name:
            self.cache[user_id] = (name, time.monotonic())

    async def __call__(self, user_id: str | None, hint: str | None = None) -> str:
        if not user_id:
            return hint or self.fallback
        hit = self.cache.get(user_id)
        if hit is not None and time.monotonic() - hit[1] < self.ttl:
            return hit[0]
        try:
            resp = await asyncio.wait_for(self.client.users_info(user=user_id), self.timeout)
            user = resp.data.get("user", {}) if isinstance(resp.data, dict) else {}
            name = _profile_name(user.get("profile") or {}) or user.get("real_name") or user.get("name")
        except Exception as exc:  # a name is nice to have; the reply must still go through
            log.warning("users.info failed for %s: %s", user_id, exc)
            return (hit[0] if hit else None) or hint or self.fallback
        if not name:
            return hint or self.fallback
        self.cache[user_id] = (str(name), time.monotonic())
        return str(name)


def _profile_name(profile: dict[str, Any]) -> str | None:
    return (
        profile.get("real_name")
        or " ".join(x for x in (profile.get("first_name"), profile.get("last_name")) if x)
        or profile.get("display_name")
        or None
    )


def parse_command(text: str) -> tuple[str, int | None, list[str], str | None]:
    """`verb [#id] [args…]` → (verb, id, args, problem). Verbs are normalised (aliases)."""
    words = (text or "").replace("\u00a0", " ").split()
    if not words:
        return "help", None, [], None
    verb = words[0].lower()
    verb = VERBS.get(verb, verb)
    rest = words[1:]
    if verb not in USAGE:
        return verb, None, rest, None
    if not rest:
        return verb, None, [], f"Which conversation? Type `{USAGE[verb]}`."
    m = re.fullmatch(r"#?(\d{1,12})", rest[0])
    if m is None:
        return verb, None, rest, f"`{rest[0]}` is not a conversation number. Type `{USAGE[verb]}`."
    return verb, int(m.group(1)), rest[1:], None


@dataclass
class SlackContext:
    core: Core
    inbox: SlackInbox
    names: Names
    config: StoreConfig
    channels: set[str]
    permalink: Callable[[str, str], Awaitable[str | None]]
    ack_budget: float = 2.0
    groups: approvals.GroupMembers | None = None  # approver groups' members (approvals.py)
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    def allowed(self, channel: str | None) -> bool:
        return not self.channels or channel in self.channels

    def track(self) -> None:
        """Listeners run after the acknowledgement; the teardown waits for them."""
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def drain(self, timeout: float = 10.0) -> None:
        pending = [t for t in self.tasks if t is not asyncio.current_task()]
        if pending:
            await asyncio.wait(pending, timeout=timeout)

    async def ephemeral(self, channel: str, user: str, text: str, thread_ts: str | None) -> None:
        try:
            await self.inbox.client.chat_postEphemeral(
                channel=channel, user=user, text=text, thread_ts=thread_ts
            )
        except Exception as exc:
            log.warning("could not tell %s in %s: %s (%s)", user, channel, text, exc)


async def act(
    ctx: SlackContext, command: str, cid: int, actor: str, args: list[str] | None = None
) -> CommandResult:
    try:
        return await ctx.core.staff_command(cid, command, actor=actor, args=args or [])
    except UnknownConversation:
        return CommandResult(
            False, f"There is no conversation #{cid}. `/handoff list` shows the open queue."
        )
    except CoreError as exc:
        return CommandResult(False, str(exc))


def check_tags(ctx: SlackContext, args: list[str]) -> str | None:
    known = set(ctx.config.tags)
    if not known:
        return None
    names = [a.lstrip("+-").strip().lower() for a in args if a.lstrip("+-").strip()]
    unknown = [n for n in names if n not in known]
    if not names:
        return f"Say which tags: `{USAGE['tag']}`."
    if unknown:
        listed = ", ".join(f"`{t}`" for t in ctx.config.tags)
        return (
            f"There is no tag {', '.join(f'`{u}`' for u in unknown)}. Tags: {listed}. "
            f"Type `{USAGE['tag']}`."
        )
    return None


def register(app: AsyncApp, ctx: SlackContext) -> None:
    core = ctx.core

    @app.middleware
    async def dedupe_events(body: dict[str, Any], next: Callable[[], Awaitable[None]]) -> Any:
        """Slack retries an event it thinks we missed, with the same event id: once only. The id
        is written before Slack gets its answer, so a retry of an answered event finds it."""
        event_id = body.get("event_id") if body.get("type") == "event_callback" else None
        if event_id:
            if not await core.take_once(EVENT_SOURCE, str(event_id)):
                log.info("Slack event %s seen before: ignored", event_id)
                return BoltResponse(status=200, body="")
        return await next()

    @app.event("message")
    async def on_message(event: dict[str, Any]) -> None:
        ctx.track()
        await relay(ctx, event)

    @app.action(re.compile(r"^handoff_(claim|release|resolve|bot)$"))
    async def on_button(
        ack: Any, body: dict[str, Any], action: dict[str, Any], respond: Any
    ) -> None:
        await ack()
        ctx.track()
        if await refused_outside(ctx.allowed, body, respond):
            return
        actor = await presser(ctx.names, body)
        command = action["action_id"].removeprefix("handoff_")
        try:
            cid = int(action.get("value") or "")
        except ValueError:
            return
        result = await act(ctx, command, cid, actor)
        if not result.ok:
            await respond(text=result.text, response_type="ephemeral", replace_original=False)

    @app.action("handoff_tag")
    async def on_tag(ack: Any, body: dict[str, Any], action: dict[str, Any], respond: Any) -> None:
        await ack()
        ctx.track()
        if await refused_outside(ctx.allowed, body, respond):
            return
        try:
            cid, tag = json.loads((action.get("selected_option") or {}).get("value") or "")
            cid = int(cid)
        except (ValueError, TypeError):
            return
        actor = await presser(ctx.names, body)
        try:
            conv = await core.get(cid)
        except UnknownConversation:
            await respond(text=f"There is no conversation #{cid}.", response_type="ephemeral",
                          replace_original=False)
            return
        change = f"-{tag}" if tag in conv.tags else f"+{tag}"
        result = await act(ctx, "tag", cid, actor, [change])
        if not result.ok:
            await respond(text=result.text, response_type="ephemeral", replace_original=False)

    @app.command("/handoff")
    async def on_command(ack: Any, command: dict[str, Any], respond: Any) -> None:
        ctx.track()
        if not ctx.allowed(command.get("channel_id")):
            await ack(
                text="`/handoff` works only in the support inbox channels"
                + (f" ({', '.join(f'<#{c}>' for c in sorted(ctx.channels))})." if ctx.channels else "."),
                response_type="ephemeral",
            )
            return
        work = asyncio.ensure_future(run_command(ctx, command))
        done, _ = await asyncio.wait({work}, timeout=ctx.ack_budget)
        if work in done:
            await ack(text=work.result(), response_type="ephemeral")
            return
        await ack(text=":hourglass_flowing_sand: Working on it…", response_type="ephemeral")
        await respond(text=await work, response_type="ephemeral", replace_original=False)

    register_corrections(app, ctx)
    approvals.register_approvals(app, ctx)


def register_corrections(app: AsyncApp, ctx: SlackContext) -> None:
    """The ticket's "Wrong handoff" button. Its answer goes to the person who pressed it only:
    the ticket does not change, so this is how they learn what the press recorded."""

    @app.action("handoff_wrong")
    async def on_wrong(ack: Any, body: dict[str, Any], action: dict[str, Any], respond: Any) -> None:
        await ack()
        ctx.track()
        if await refused_outside(ctx.allowed, body, respond):
            return
        try:
            cid = int(action.get("value") or "")
        except ValueError:
            return
        result = await act(ctx, "wrong", cid, await presser(ctx.names, body))
        await respond(text=escape(result.text), response_type="ephemeral", replace_original=False)


async def relay(ctx: SlackContext, event: dict[str, Any]) -> None:
    """A person's message in a ticket's thread: to the shopper (or a note, with the prefix)."""
    subtype = event.get("subtype")
    if event.get("bot_id") or event.get("app_id") or event.get("bot_profile"):
        return  # every bot post, ours included: never relayed (no echo loops)
    ts, thread_ts = event.get("ts"), event.get("thread_ts")
    if not thread_ts or thread_ts == ts or ctx.inbox.is_own(ts):
        return  # top-level chatter in the channel, a parent, or a post of ours
    channel, user = event.get("channel"), event.get("user")
    if subtype not in (None, "thread_broadcast", "file_share") or not user:
        return  # edits, deletions, joins, … are never relayed
    cid = await ctx.core.conversation_by_thread(f"{channel}:{thread_ts}")
    if cid is None:
        return  # a thread that is not a ticket
    if subtype == "file_share":
        await ctx.ephemeral(
            channel, user,
            "Files can't be passed on to the shopper; only the text of a reply reaches them. "
            "Paste a link or describe it in a reply.",
            thread_ts,
        )
        return
    ctx.names.learn(user, event.get("user_profile"))
    author = await ctx.names(user)
    text = await to_plain(event.get("text") or "", ctx.names)
    try:
        await ctx.core.staff_reply(
            cid,
            text,
            author=author,
            source="slack",
            platform_id=str(ts),
            note_prefix=ctx.config.note_prefix,
        )
    except CoreError as exc:
        log.info("thread reply on #%s not relayed: %s", cid, exc)
        await ctx.ephemeral(
            channel, user, f":warning: Not sent to the shopper: {exc} Reply again in this thread.",
            thread_ts,
        )


async def run_command(ctx: SlackContext, command: dict[str, Any]) -> str:
    try:
        return await _command(ctx, command)
    except Exception:
        log.exception("/handoff %s failed", command.get("text"))
        return "Something went wrong on our side; try again in a moment."


async def _command(ctx: SlackContext, command: dict[str, Any]) -> str:
    verb, cid, rest, problem = parse_command(command.get("text", ""))
    if problem:
        return problem
    if verb in ("list", "queue"):
        return await queue_text(ctx)
    if verb in ("stats", "stat"):
        return await stats_text(ctx, rest[0] if rest else "24h")
    if verb == "help":
        return HELP
    if verb in approvals.USAGE:
        return await approvals.command(ctx, verb, rest, command)
    if verb not in USAGE:
        return f"I don't know `{verb}`. " + HELP
    assert cid is not None
    if verb == "tag":
        bad = check_tags(ctx, rest)
        if bad:
            return bad
    actor = await ctx.names(command.get("user_id"), command.get("user_name"))
    result = await act(ctx, verb, cid, actor, rest)
    return escape(result.text) if verb == "wrong" else result.text  # it quotes the shopper


async def queue_text(ctx: SlackContext) -> str:
    convs = await ctx.core.open_queue()
    if not convs:
        return ":tada: The queue is empty."
    now = datetime.now(UTC)
    emoji = {n: t.emoji for n, t in ctx.config.tags.items()}
    lines = [f"*Open: {len(convs)}* (by priority, then longest waiting)"]
    for c in convs[:25]:
        mins = int((now - (c.handed_off_at or c.created_at)).total_seconds() // 60)
        age = f"{mins} min" if mins < 120 else f"{mins // 60} h {mins % 60} min"
        # A shopper chooses their own name: escaped, or it could @-mention the channel.
        who = escape(c.customer.name or (f"@{c.customer.username}" if c.customer.username else "Shopper"))
        state = f"claimed by {escape(c.owner)}" if c.state == "claimed" and c.owner else "waiting"
        tags = " ".join(f"{emoji.get(t, '')}`{escape(t)}`" for t in c.tags) or "no tags"
        ref = c.inbox_ref or {}
        link = await ctx.permalink(ref["channel"], ref["ts"]) if ref.get("ts") else None
        number = f"<{link}|#{c.id}>" if link else f"#{c.id}"
        lines.append(f"• *{number}* P{c.priority} · {who} · {state} · {age} · {tags}")
    if len(convs) > 25:
        lines.append(f"…and {len(convs) - 25} more.")
    return "\n".join(lines)


async def stats_text(ctx: SlackContext, period: str) -> str:
    m = PERIOD.match(period.lower())
    if m is None:
        return f"`{period}` is not a period. Type `/handoff stats`, `/handoff stats 12h` or `/handoff stats 7d`."
    n, unit = int(m.group(1)), m.group(2)
    span = timedelta(hours=n) if unit == "h" else timedelta(days=n * (7 if unit == "w" else 1))
    st = await ctx.core.stats(datetime.now(UTC) - span)
    queue = await ctx.core.open_queue()
    waiting = sum(1 for c in queue if c.state == "queued")
    share = f" ({st.handed_off / st.conversations:.0%})" if st.conversations else ""
    tags = "\n".join(f"• `{t}` {k}" for t, k in st.tags.items()) or "• none"
    return (
        f"*Last {n}{unit}:* {st.conversations} conversations, {st.handed_off} handed off{share}.\n"
        f"*Open now:* {waiting} waiting, {len(queue) - waiting} claimed.\n*Tags:*\n{tags}"
    )
