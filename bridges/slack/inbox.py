"""Slack as the `Inbox`: the thread is the ticket, and its parent message carries the conversation
so far, so that opening a ticket costs one post (Slack allows about one a second per channel, so
in a burst of handoffs the second post per ticket doubled every wait). A conversation too long for
one message is folded: its last messages in the parent, the earlier ones in one threaded reply
(the outbox's history row, which otherwise posts nothing and spends no pace). Which messages the
parent shows is kept in the thread's reference (`ticket`), so the history row, later posts and
every edit of the parent agree on it whoever sends them.

Calls go through slack_sdk's AsyncWebClient
with no retry handlers of its own: pacing and retries are the outbox's job, so Slack's answers
become DeliveryErrors (a 429 carries its Retry-After) instead of sleeps inside the client.

Which errors are final: only those about one message (its blocks, its length, a parent that was
deleted). A token, scope or membership problem is a setup mistake someone will fix, so those
rows keep retrying (with backoff) and go out once it is fixed. A handoff routed by tag to a
channel the bot cannot post in opens in the inbox channel instead, saying so."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bridges.slack.blocks import Ticket, escape, history_posts, message_post, ticket
from core.clock import SYSTEM_CLOCK, Clock
from domain.outbox import DeliveryResult, Kind
from domain.ports import ConversationView, DeliveryError, MessageView
from domain.storeconfig import StoreConfig

log = logging.getLogger("handoff.slack")

# Final for this message: retrying the same call cannot succeed.
PERMANENT = {
    "channel_not_found",
    "is_archived",
    "msg_too_long",
    "no_text",
    "invalid_blocks",
    "invalid_blocks_format",
    "invalid_arguments",
    "message_not_found",
    "cant_update_message",
    "edit_window_closed",
    "too_many_attachments",
}
# The routed channel cannot take the post: open the thread in the inbox channel instead.
MISROUTED = {"channel_not_found", "is_archived", "not_in_channel"}

# A conversation's messages after `after`, at most `limit` (None: all), notes included: the core's
# `history`, given once the core exists (the parent shows what the history row would post).
HistoryReader = Callable[[int, int, int | None], Awaitable[list[MessageView]]]


def to_delivery_error(exc: BaseException) -> DeliveryError:
    if isinstance(exc, SlackApiError):
        resp = exc.response
        status = getattr(resp, "status_code", 0)
        data = resp.data if isinstance(resp.data, dict) else {}
        error = str(data.get("error") or "")
        if status == 429 or error == "ratelimited":
            headers = resp.headers or {}
            raw = headers.get("Retry-After") or headers.get("retry-after") or "1"
            try:
                retry = max(float(raw), 0.0)
            except ValueError:
                retry = 1.0
            return DeliveryError(f"Slack rate limit ({error or status})", retry_after=retry or 1.0)
        if error in PERMANENT:
            return DeliveryError(f"Slack refused: {error}", permanent=True)
        return DeliveryError(f"Slack error: {error or f'HTTP {status}'}")
    if isinstance(exc, TimeoutError):
        return DeliveryError("Slack did not answer in time")
    return DeliveryError(f"Slack unreachable: {type(exc).__name__}: {exc}")


def slack_error(exc: BaseException) -> str:
    if isinstance(exc, SlackApiError) and isinstance(exc.response.data, dict):
        return str(exc.response.data.get("error") or "")
    return ""


RTT_WINDOW = 50  # recent chat.postMessage round trips whose quickest is "no delay on the way"


class SlackInbox:
    name = "slack"

    def __init__(
        self,
        client: AsyncWebClient,
        config: StoreConfig,
        inbox_channel: str,
        *,
        remember: int = 10_000,
        post_rate: float | None = None,
        clock: Clock = SYSTEM_CLOCK,
        history: HistoryReader | None = None,
    ) -> None:
        self.client = client
        self.read_history = history
        self.clock = clock
        self.config = config
        self.inbox_channel = inbox_channel
        self._own: OrderedDict[str, None] = OrderedDict()
        self._remember = remember
        # The outbox paces when a post starts; the database work before the HTTP call varies,
        # so two posts can still reach Slack closer together than the pace. This keeps the
        # sends themselves apart (it waits at most one interval).
        self._interval = 1.0 / post_rate if post_rate else 0.0
        self._last_send: dict[str, float] = {}
        # Slack counts a channel's posts as they arrive, and a post can be held on its way (a
        # busy event loop, a slow socket) while the next is not: sent 1.03 s apart, they arrive
        # 0.98 s apart and the second is a 429 that costs the channel a second or more. So the
        # next post waits from the later of the previous one's start and its answer less the
        # quickest round trip seen lately: whatever held the previous post on its way, it
        # reached Slack no later than that, and when nothing held it nothing is lost.
        self._rtts: deque[float] = deque(maxlen=RTT_WINDOW)
        self._blocked_until: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        # Tickets this process posted, by handoff: if recording the reference fails after Slack
        # took the post (a database error), the retry gets the same ticket instead of a second.
        self._opened: OrderedDict[tuple[int, str], dict[str, Any]] = OrderedDict()

    # ------------------------------------------------------------------ routing

    def channel_for(self, conversation: ConversationView | None) -> str:
        """The channel of the first tag (in the store's config order) that has one, else the
        inbox channel."""
        if conversation is not None:
            for name, tag in self.config.tags.items():
                if tag.channel and name in conversation.tags:
                    return tag.channel
        return self.inbox_channel

    def rate_keys(self, conversation: ConversationView | None, kind: Kind = Kind.POST) -> list[str]:
        """chat.postMessage is limited per channel (~1/s); chat.update is its own method tier
        (Tier 3, ~50/min per workspace), so editing a ticket never spends a channel's post."""
        if kind == Kind.UPDATE:
            return ["slack-update:all"]
        ref = conversation.inbox_ref if conversation is not None else None
        if kind == Kind.HISTORY and ref and not ref.get("last_message_id"):
            shown = ref.get("ticket")
            if isinstance(shown, dict) and not shown.get("earlier"):
                return []  # the parent showed all of it: this row posts nothing
        channel = (ref or {}).get("channel") or self.channel_for(conversation)
        return [f"slack-channel:{channel}"]

    # ------------------------------------------------------------------ own posts

    def is_own(self, ts: str | None) -> bool:
        return bool(ts) and ts in self._own

    def _remember_ts(self, ts: str) -> None:
        self._own[ts] = None
        while len(self._own) > self._remember:
            self._own.popitem(last=False)

    async def _call(self, method: str, **kwargs: Any) -> dict[str, Any]:
        if method != "chat.postMessage":
            return await self._api(method, kwargs)
        channel = str(kwargs.get("channel"))
        # One post per channel at a time: a post that waited here while the one before it was
        # answered 429 must not go out before the Retry-After has passed.
        async with self._locks.setdefault(channel, asyncio.Lock()):
            now = self.clock.monotonic()
            blocked = self._blocked_until.get(channel, 0.0) - now
            if blocked > 0:
                raise DeliveryError(
                    "Slack rate limit (an earlier post's Retry-After)", retry_after=blocked
                )
            wait = self._last_send.get(channel, -1e9) + self._interval - now
            if wait > 0:
                await self.clock.sleep(wait)
            start = self._last_send[channel] = self.clock.monotonic()
            try:
                return await self._api(method, kwargs)
            except DeliveryError as exc:
                if exc.retry_after:
                    self._blocked_until[channel] = self.clock.monotonic() + exc.retry_after
                raise
            finally:
                end = self.clock.monotonic()
                self._rtts.append(end - start)
                self._last_send[channel] = max(start, end - min(self._rtts))

    async def _api(self, method: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        try:
            resp = await self.client.api_call(method, json=kwargs)
        except (SlackApiError, aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise to_delivery_error(exc) from exc
        data = dict(resp.data) if isinstance(resp.data, dict) else {}
        if data.get("ts"):
            self._remember_ts(str(data["ts"]))
        return data

    def _ticket(
        self, conversation: ConversationView, history: list[MessageView], earlier: int = 0
    ) -> Ticket:
        emoji = {n: t.emoji for n, t in self.config.tags.items()}
        return ticket(
            conversation,
            list(self.config.tags),
            emoji,
            self.config.note_prefix,
            history,
            earlier=earlier,
        )

    @staticmethod
    def _shown(ref: dict[str, Any]) -> tuple[int, int, int, int] | None:
        """(first id, last id, how many, how many earlier) of the messages the parent shows."""
        t = ref.get("ticket")
        if not isinstance(t, dict):
            return None
        return int(t["from"]), int(t["upto"]), int(t["count"]), int(t.get("earlier", 0))

    @staticmethod
    def _in_parent(ref: dict[str, Any], message_id: int) -> bool:
        shown = SlackInbox._shown(ref)
        return bool(message_id) and shown is not None and shown[0] <= message_id <= shown[1]

    async def _history(
        self, conversation_id: int, after: int = 0, limit: int | None = None
    ) -> list[MessageView]:
        if self.read_history is None:
            return []
        return await self.read_history(conversation_id, after, limit)

    # ------------------------------------------------------------------ Inbox

    async def open_thread(
        self, conversation: ConversationView, history: list[MessageView], context: dict[str, Any]
    ) -> dict[str, Any]:
        """The parent message, with the conversation so far (its end, if it is too long for one
        message: the history row then posts the beginning into the thread)."""
        handoff = (conversation.id, str(conversation.handed_off_at))
        if handoff in self._opened:
            return dict(self._opened[handoff])
        channel = self.channel_for(conversation)
        t = self._ticket(conversation, history or await self._history(conversation.id))
        blocks, shown = t.blocks, t.shown
        try:
            parent = await self._call(
                "chat.postMessage", channel=channel, text=t.text, blocks=blocks, unfurl_links=False
            )
        except DeliveryError as exc:
            cause = slack_error(exc.__cause__) if exc.__cause__ else ""
            if cause in MISROUTED and channel != self.inbox_channel:
                log.warning("cannot post in <#%s> (%s); opening #%s in the inbox channel",
                            channel, cause, conversation.id)
                note = {
                    "type": "context",
                    "elements": [
                        {
                            "type": "mrkdwn",
                            "text": f":warning: Routed to <#{escape(channel)}> by tag, but Slack "
                            f"said `{cause}` there: invite the bot or fix the tag's channel.",
                        }
                    ],
                }
                channel = self.inbox_channel
                parent = await self._call(
                    "chat.postMessage",
                    channel=channel,
                    text=t.text,
                    blocks=[*blocks[:-1], note, blocks[-1]],
                    unfurl_links=False,
                )
            elif cause in ("invalid_blocks", "invalid_blocks_format"):
                # Never lose a handoff to a rendering problem: the plain-text ticket instead,
                # and the whole history in the thread.
                log.error("Slack rejected the ticket blocks for #%s; posting text", conversation.id)
                parent = await self._call("chat.postMessage", channel=channel, text=t.text)
                shown = []
            else:
                raise
        ts = str(parent["ts"])
        channel = str(parent.get("channel") or channel)
        ref: dict[str, Any] = {"channel": channel, "ts": ts, "thread_key": f"{channel}:{ts}"}
        if shown:
            ref["ticket"] = {
                "from": shown[0].id,
                "upto": shown[-1].id,
                "count": len(shown),
                "earlier": t.earlier,
            }
        self._opened[handoff] = ref
        while len(self._opened) > self._remember:
            self._opened.popitem(last=False)
        return dict(ref)

    async def post_history(
        self, ref: dict[str, Any], conversation: ConversationView, history: list[MessageView]
    ) -> int:
        """What the parent does not show, as one thread post (as few as Slack's limits allow:
        the worker calls again for the rest); nothing at all when the parent shows it all."""
        rest = [m for m in history if not self._in_parent(ref, m.id)]
        if not rest:
            return history[-1].id
        text, blocks, last_id = history_posts(rest)[0]
        await self._call(
            "chat.postMessage",
            channel=ref["channel"],
            thread_ts=ref["ts"],
            text=text,
            blocks=blocks,
            unfurl_links=False,
            unfurl_media=False,
        )
        later = [m for m in rest if m.id > last_id]
        if not later:
            return history[-1].id
        # Go on from the next message still to post (those the parent shows are skipped).
        return max(m.id for m in history if m.id < later[0].id)

    async def post(
        self, ref: dict[str, Any], conversation: ConversationView, message: dict[str, Any]
    ) -> DeliveryResult:
        if self._in_parent(ref, int(message.get("id") or 0)):
            # Written while the ticket waited for its turn to be posted: the parent shows it.
            return DeliveryResult.done(skipped="shown in the ticket")
        data = await self._call(
            "chat.postMessage",
            channel=ref["channel"],
            thread_ts=ref["ts"],
            unfurl_links=False,
            unfurl_media=False,
            **message_post(message),
        )
        return DeliveryResult.done(ts=data.get("ts"))

    async def update(self, ref: dict[str, Any], conversation: ConversationView) -> None:
        """The parent again, with the same messages (an edit replaces all of its blocks)."""
        shown = self._shown(ref)
        history: list[MessageView] = []
        earlier = 0
        if shown is not None:
            first, _, count, earlier = shown
            history = await self._history(conversation.id, first - 1, count)
        t = self._ticket(conversation, history, earlier)
        await self._call(
            "chat.update", channel=ref["channel"], ts=ref["ts"], text=t.text, blocks=t.blocks
        )

    async def alert(self, text: str) -> None:
        await self._call("chat.postMessage", channel=self.inbox_channel, text=text)
