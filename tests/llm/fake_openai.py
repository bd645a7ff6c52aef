"""A fake OpenAI-compatible server on 127.0.0.1 playing scripted Chat Completions: tool calls,
text, 429 with Retry-After, 500, a hang, invalid tool arguments. It records every request and
flags any Luhn-valid card number that reaches it."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.masking import luhn_ok

CARD = re.compile(r"(?:\d[ -]?){12,18}\d")


def text(content: str) -> dict[str, Any]:
    return {"message": {"role": "assistant", "content": content}}


def tool(name: str, arguments: dict[str, Any] | str) -> dict[str, Any]:
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {
        "message": {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": f"call_{name}_{time.monotonic_ns()}",
                    "type": "function",
                    "function": {"name": name, "arguments": args},
                }
            ],
        }
    }


def status(code: int, retry_after: float | None = None) -> dict[str, Any]:
    return {"status": code, "retry_after": retry_after}


def hang(seconds: float) -> dict[str, Any]:
    return {"hang": seconds}


@dataclass
class FakeOpenAI:
    script: list[dict[str, Any]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    leaked_cards: list[str] = field(default_factory=list)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    server: TestServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("/v1"))

    async def completions(self, request: web.Request) -> web.Response:
        raw = await request.text()
        for m in CARD.finditer(raw):
            digits = re.sub(r"\D", "", m.group(0))
            if 13 <= len(digits) <= 19 and luhn_ok(digits):
                self.leaked_cards.append(m.group(0))
        body = json.loads(raw)
        self.requests.append(body)
        if request.headers.get("Authorization") != "Bearer sk-test":
            return web.json_response(
                {
                    "error": {
                        "message": "bad key",
                        "type": "invalid_request_error",
                        "code": "invalid_api_key",
                    }
                },
                status=401,
            )
        step = self.script.pop(0) if self.script else text("(the script ran out)")
        if "hang" in step:
            await asyncio.sleep(step["hang"])
            step = text("too late")
        if "status" in step:
            headers = (
                {"retry-after": str(step["retry_after"])}
                if step.get("retry_after") is not None
                else {}
            )
            return web.json_response(
                {"error": {"message": "scripted failure", "type": "server_error", "code": None}},
                status=step["status"],
                headers=headers,
            )
        msg = step["message"]
        return web.json_response(
            {
                "id": f"chatcmpl-{next(self._ids)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "fake"),
                "choices": [
                    {
                        "index": 0,
                        "message": msg,
                        "finish_reason": "tool_calls" if msg.get("tool_calls") else "stop",
                    }
                ],
                "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
            }
        )

    async def start(self) -> FakeOpenAI:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.completions)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()
        return self

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()
