"""Slack as the `Inbox`: the thread is the ticket. Calls go through slack_sdk's AsyncWebClient
with no retry handlers of its own: pacing and retries are the outbox's job, so Slack's answers
become DeliveryErrors (a 429 carries its Retry-After) instead of sleeps inside the client.

Which errors are final: only those about one message (its blocks, its length, a parent that was
deleted). A token, scope or membership problem is a setup mistake someone will fix, so those
rows keep retrying (with backoff) and go out once it is fixed. A handoff routed by tag to a
channel the bot cannot post in opens in the inbox channel instead, saying so."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bridges.slack.blocks import escape, history_posts, message_post, parent_blocks
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
    ) -> None:
        self.client = client
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
        self._blocked_until: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}

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
            self._last_send[channel] = self.clock.monotonic()
            try:
                return await self._api(method, kwargs)
            except DeliveryError as exc:
                if exc.retry_after:
                    self._blocked_until[channel] = self.clock.monotonic() + exc.retry_after
                raise

    async def _api(self, method: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        try:
            resp = await self.client.api_call(method, json=kwargs)
        except (SlackApiError, aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise to_delivery_error(exc) from exc
        data = dict(resp.data) if isinstance(resp.data, dict) else {}
        if data.get("ts"):
            self._remember_ts(str(data["ts"]))
        return data

    def _parent(self, conversation: ConversationView) -> tuple[str, list[dict[str, Any]]]:
        emoji = {n: t.emoji for n, t in self.config.tags.items()}
        return parent_blocks(conversation, list(self.config.tags), emoji, self.config.note_prefix)

    # ------------------------------------------------------------------ Inbox

    async def open_thread(
        self, conversation: ConversationView, history: list[MessageView], context: dict[str, Any]
    ) -> dict[str, Any]:
        """The parent message only; the history follows as paced posts of its own."""
        channel = self.channel_for(conversation)
        text, blocks = self._parent(conversation)
        try:
            parent = await self._call(
                "chat.postMessage", channel=channel, text=text, blocks=blocks, unfurl_links=False
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
                    text=text,
                    blocks=[*blocks[:-1], note, blocks[-1]],
                    unfurl_links=False,
                )
            elif cause in ("invalid_blocks", "invalid_blocks_format"):
                # Never lose a handoff to a rendering problem: the plain-text ticket instead.
                log.error("Slack rejected the ticket blocks for #%s; posting text", conversation.id)
                parent = await self._call("chat.postMessage", channel=channel, text=text)
            else:
                raise
        ts = str(parent["ts"])
        channel = str(parent.get("channel") or channel)
        return {"channel": channel, "ts": ts, "thread_key": f"{channel}:{ts}"}

    async def post_history(
        self, ref: dict[str, Any], conversation: ConversationView, history: list[MessageView]
    ) -> int:
        """One thread post of as much history as fits; the worker calls again for the rest."""
        text, blocks, last_id = history_posts(history)[0]
        await self._call(
            "chat.postMessage",
            channel=ref["channel"],
            thread_ts=ref["ts"],
            text=text,
            blocks=blocks,
            unfurl_links=False,
            unfurl_media=False,
        )
        return last_id

    async def post(
        self, ref: dict[str, Any], conversation: ConversationView, message: dict[str, Any]
    ) -> DeliveryResult:
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
        text, blocks = self._parent(conversation)
        await self._call(
            "chat.update", channel=ref["channel"], ts=ref["ts"], text=text, blocks=blocks
        )

    async def alert(self, text: str) -> None:
        await self._call("chat.postMessage", channel=self.inbox_channel, text=text)
