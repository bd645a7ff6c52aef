"""Bolt listeners: thread replies, buttons, the tag picker and the /handoff command.

Bolt acks at once (Slack wants an answer within 3 seconds); our work happens after the ack, and
what it must not lose is stored by the core before anything else. Retried events carry the same
message ts, which the core records, so a retry changes nothing."""

from __future__ import annotations

import json
import logging
import re
from datetime import timedelta
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.analytics import compute_stats
from bot.core import Core, CoreError, UnknownConversation
from storage import repo
from storage.models import utcnow

log = logging.getLogger("handoff.slack")

HELP = (
    "Try: `/handoff list`, `/handoff stats`, `/handoff claim #42`, `/handoff release #42`, "
    "`/handoff tag #42 +vip -cancellation`, `/handoff resolve #42`, `/handoff bot #42` (back to the AI)."
)
COMMANDS = {"claim", "release", "tag", "resolve", "bot"}


class Names:
    """Slack user ids to display names (users.info, cached: it is Tier 4, but not free)."""

    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client
        self.cache: dict[str, str] = {}

    async def __call__(self, user_id: str) -> str:
        if user_id in self.cache:
            return self.cache[user_id]
        name = user_id
        try:
            resp = await self.client.users_info(user=user_id)
            user = resp.data.get("user", {}) if isinstance(resp.data, dict) else {}
            profile = user.get("profile", {})
            name = (
                profile.get("real_name")
                or profile.get("display_name")
                or user.get("real_name")
                or user.get("name")
                or user_id
            )
        except Exception as exc:  # a name is nice to have; the reply must still go through
            log.warning("users.info failed for %s: %s", user_id, exc)
            return name
        self.cache[user_id] = name
        return name


def parse_command(text: str) -> tuple[str, int | None, list[str]]:
    words = (text or "").split()
    if not words:
        return "help", None, []
    verb = words[0].lower()
    cid = None
    rest = words[1:]
    if rest and re.fullmatch(r"#?\d+", rest[0]):
        cid = int(rest[0].lstrip("#"))
        rest = rest[1:]
    return verb, cid, rest


def register(
    app: AsyncApp, core: Core, names: Names, allowed_channels: set[str], note_prefix: str
) -> None:
    @app.event("message")
    async def on_message(event: dict[str, Any], body: dict[str, Any]) -> None:
        if event.get("subtype") or event.get("bot_id") or event.get("app_id"):
            return  # edits, deletions, joins and every bot post (ours included) are never relayed
        thread_ts = event.get("thread_ts")
        if not thread_ts or thread_ts == event.get("ts"):
            return
        key = f"{event.get('channel')}:{thread_ts}"
        async with core.sessions() as s:
            conv = await repo.find_by_thread(s, key)
        if conv is None:
            return
        author = await names(event.get("user", "someone"))
        try:
            await core.staff_reply(
                conv.id,
                event.get("text", ""),
                author=author,
                source="slack",
                platform_id=str(event.get("ts")),
                note_prefix=note_prefix,
            )
        except CoreError as exc:
            log.warning("thread reply on #%s not relayed: %s", conv.id, exc)

    async def act(command: str, cid: int, user: str, args: list[str] | None = None) -> str:
        actor = await names(user)
        try:
            result = await core.staff_command(cid, command, actor=actor, args=args or [])
        except UnknownConversation:
            return f"There is no conversation #{cid}."
        except CoreError as exc:
            return str(exc)
        return result.text

    @app.action(re.compile(r"^handoff_(claim|release|resolve|bot)$"))
    async def on_button(
        ack: Any, body: dict[str, Any], action: dict[str, Any], respond: Any
    ) -> None:
        await ack()
        command = action["action_id"].removeprefix("handoff_")
        text = await act(command, int(action["value"]), body["user"]["id"])
        if not text.startswith(("You claimed", "Released", "Resolved", "#")):
            await respond(text=text, response_type="ephemeral", replace_original=False)

    @app.action("handoff_tag")
    async def on_tag(ack: Any, body: dict[str, Any], action: dict[str, Any], respond: Any) -> None:
        await ack()
        cid, tag = json.loads(action["selected_option"]["value"])
        conv = await core.get(int(cid))
        change = f"-{tag}" if tag in conv.tags else f"+{tag}"
        await act("tag", int(cid), body["user"]["id"], [change])

    @app.command("/handoff")
    async def on_command(ack: Any, command: dict[str, Any]) -> None:
        channel = command.get("channel_id")
        if allowed_channels and channel not in allowed_channels:
            await ack(
                text="`/handoff` works only in the support inbox channels.",
                response_type="ephemeral",
            )
            return
        verb, cid, rest = parse_command(command.get("text", ""))
        if verb == "list":
            await ack(text=await queue_text(core), response_type="ephemeral")
        elif verb == "stats":
            async with core.sessions() as s:
                st = await compute_stats(s, utcnow() - timedelta(hours=24))
            tags = ", ".join(f"`{t}` {n}" for t, n in st.tags.items()) or "no handoffs"
            await ack(
                text=f"Last 24 h: {st.conversations} conversations, {st.handed_off} handed off. Tags: {tags}.",
                response_type="ephemeral",
            )
        elif verb in COMMANDS and cid is not None:
            if verb == "tag" and not rest:
                await ack(
                    text="Say which tags: `/handoff tag #42 +vip -cancellation`.",
                    response_type="ephemeral",
                )
                return
            await ack(
                text=await act(verb, cid, command["user_id"], rest), response_type="ephemeral"
            )
        elif verb in COMMANDS:
            await ack(text=f"Which conversation? `/handoff {verb} #42`", response_type="ephemeral")
        else:
            await ack(text=HELP, response_type="ephemeral")


async def queue_text(core: Core) -> str:
    async with core.sessions() as s:
        convs = await repo.open_queue(s)
    if not convs:
        return "The queue is empty."
    now = utcnow()
    lines = []
    for c in convs[:30]:
        age = int((now - (c.handed_off_at or c.created_at)).total_seconds() // 60)
        lines.append(
            f"#{c.id} · {c.state}{' by ' + c.owner if c.owner else ''} · P{c.priority} · {age} min · {', '.join(c.tags)}"
        )
    return "\n".join(lines)
