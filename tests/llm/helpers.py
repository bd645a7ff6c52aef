"""Talking to the service as a shopper on the widget, and reading what the fake LLM was sent."""

from __future__ import annotations

import json
from typing import Any

from aiohttp.test_utils import TestClient

from tests.conftest import services, signed


class Chat:
    """One shopper's widget conversation."""

    def __init__(self, client: TestClient, cid: int, token: str) -> None:
        self.client, self.id, self.token = client, cid, token
        self._n = 0

    @classmethod
    async def start(cls, client: TestClient, email: str | None = "ann@example.com") -> Chat:
        body = signed(email)
        data = await (await client.post("/api/conversations", json=body)).json()
        return cls(client, data["conversation_id"], data["token"])

    async def say(self, text: str) -> dict[str, Any]:
        """Send a message, wait for the turn, return the last message of the conversation."""
        self._n += 1
        resp = await self.client.post(
            f"/api/conversations/{self.id}/messages?token={self.token}",
            json={"text": text, "client_id": f"m{self._n}"},
        )
        assert resp.status == 200, await resp.text()
        await services(self.client).core.idle(timeout=30)
        return (await self.history())[-1]

    async def history(self) -> list[dict[str, Any]]:
        url = f"/api/conversations/{self.id}/messages?token={self.token}"
        return (await (await self.client.get(url)).json())["messages"]

    async def conversation(self) -> Any:
        return await services(self.client).core.get(self.id)


async def say(
    client: TestClient, text: str, email: str | None = "ann@example.com"
) -> tuple[Chat, dict[str, Any]]:
    chat = await Chat.start(client, email)
    return chat, await chat.say(text)


def tool_results(req: dict[str, Any]) -> list[Any]:
    return [json.loads(m["content"]) for m in req["messages"] if m["role"] == "tool"]


def sent(requests: list[dict[str, Any]]) -> str:
    """Everything sent to the LLM as one string (for 'never reaches the model' checks)."""
    return json.dumps(requests, ensure_ascii=False)
