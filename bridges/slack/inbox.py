"""Slack as the `Inbox`: the thread is the ticket. Calls go through slack_sdk's AsyncWebClient;
pacing and retries are the outbox's job, so Slack errors become DeliveryErrors (429 with its
Retry-After) instead of sleeps inside the client."""

from __future__ import annotations

from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from agent.storeconfig import StoreConfig
from bot.ports import ConversationView, DeliveryError, MessageView
from bridges.slack.blocks import history_messages, message_line, parent_blocks

PERMANENT = {
    "channel_not_found",
    "not_in_channel",
    "is_archived",
    "invalid_auth",
    "account_inactive",
    "token_revoked",
    "no_permission",
    "missing_scope",
    "msg_too_long",
    "invalid_blocks",
    "message_not_found",
    "cant_update_message",
}


def to_delivery_error(exc: Exception) -> DeliveryError:
    if isinstance(exc, SlackApiError):
        resp = exc.response
        status = getattr(resp, "status_code", 0)
        error = (resp.data or {}).get("error", "") if isinstance(resp.data, dict) else ""
        if status == 429 or error == "ratelimited":
            retry = resp.headers.get("Retry-After") or resp.headers.get("retry-after") or "1"
            return DeliveryError(f"Slack rate limit ({error or status})", retry_after=float(retry))
        if error in PERMANENT:
            return DeliveryError(f"Slack refused: {error}", permanent=True)
        return DeliveryError(f"Slack error: {error or status}")
    return DeliveryError(f"Slack unreachable: {type(exc).__name__}: {exc}")


class SlackInbox:
    name = "slack"

    def __init__(self, client: AsyncWebClient, config: StoreConfig, inbox_channel: str) -> None:
        self.client = client
        self.config = config
        self.inbox_channel = inbox_channel
        self.own_ts: set[str] = set()

    def channel_for(self, conversation: ConversationView | None) -> str:
        if conversation is not None:
            for tag in conversation.tags:
                t = self.config.tags.get(tag)
                if t is not None and t.channel:
                    return t.channel
        return self.inbox_channel

    def rate_keys(self, conversation: ConversationView | None) -> list[str]:
        ref = conversation.inbox_ref if conversation is not None else None
        channel = (ref or {}).get("channel") or self.channel_for(conversation)
        return [f"slack-channel:{channel}"]

    def _parent(self, conversation: ConversationView) -> tuple[str, list[dict[str, Any]]]:
        emoji = {n: t.emoji for n, t in self.config.tags.items()}
        return parent_blocks(conversation, list(self.config.tags), emoji)

    async def _call(self, method: str, **kwargs: Any) -> dict[str, Any]:
        try:
            resp = await self.client.api_call(method, json=kwargs)
        except (SlackApiError, aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise to_delivery_error(exc) from exc
        data = dict(resp.data) if isinstance(resp.data, dict) else {}
        if data.get("ts"):
            self.own_ts.add(str(data["ts"]))
        return data

    async def open_thread(
        self, conversation: ConversationView, history: list[MessageView], context: dict[str, Any]
    ) -> dict[str, Any]:
        channel = self.channel_for(conversation)
        text, blocks = self._parent(conversation)
        parent = await self._call(
            "chat.postMessage", channel=channel, text=text, blocks=blocks, unfurl_links=False
        )
        ts = str(parent["ts"])
        channel = str(parent.get("channel") or channel)
        return {"channel": channel, "ts": ts, "thread_key": f"{channel}:{ts}"}

    async def post_history(
        self, ref: dict[str, Any], conversation: ConversationView, history: list[MessageView]
    ) -> int:
        """One thread post of as much history as fits (50 sections of up to 3,000 characters)."""
        text, blocks, last_id = history_messages(history)[0]
        await self._call(
            "chat.postMessage",
            channel=ref["channel"],
            thread_ts=ref["ts"],
            text=text,
            blocks=blocks,
            unfurl_links=False,
        )
        return last_id

    async def post(
        self, ref: dict[str, Any], conversation: ConversationView, message: dict[str, Any]
    ) -> dict[str, Any] | None:
        text = message_line(message)
        data = await self._call(
            "chat.postMessage",
            channel=ref["channel"],
            thread_ts=ref["ts"],
            text=text[:39000],
            unfurl_links=False,
        )
        return {"ts": data.get("ts")}

    async def update(self, ref: dict[str, Any], conversation: ConversationView) -> None:
        text, blocks = self._parent(conversation)
        await self._call(
            "chat.update", channel=ref["channel"], ts=ref["ts"], text=text, blocks=blocks
        )

    async def alert(self, text: str) -> None:
        await self._call("chat.postMessage", channel=self.inbox_channel, text=text)
