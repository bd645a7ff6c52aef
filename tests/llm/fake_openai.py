"""A fake OpenAI-compatible server on 127.0.0.1 that plays scripted Chat Completions.

It speaks the real wire format (`POST /v1/chat/completions`, bearer auth, the error JSON shape,
`retry-after` on 429), so the tests run the real openai client (httpx2 underneath) against it.
A script is a queue of steps: text, tool calls, an HTTP error with or without Retry-After, a hang
longer than the client's timeout, a broken body. When the queue is empty, `default` answers
(a scripted "model" for whole-eval runs). Every request is recorded, and any Luhn-valid card
number that reaches it is recorded in `leaked_cards`: the fixture fails the test on one."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from domain.masking import luhn_ok

API_KEY = "sk-test"
# 13 to 19 digits, grouped or not, not part of a longer run of digits.
CARD = re.compile(r"(?<![\d])(?:\d[ -]?){12,18}\d(?![\d])")

Step = dict[str, Any]


def text(content: str) -> Step:
    return {"message": {"role": "assistant", "content": content}}


def tool(name: str, arguments: dict[str, Any] | str) -> Step:
    return tools((name, arguments))


def tools(*calls: tuple[str, dict[str, Any] | str]) -> Step:
    """One assistant message with several tool calls (parallel tool calls)."""
    return {
        "message": {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "type": "function",
                    "function": {
                        "name": name,
                        "arguments": args if isinstance(args, str) else json.dumps(args),
                    },
                }
                for name, args in calls
            ],
        }
    }


def status(code: int, retry_after: float | None = None) -> Step:
    return {"status": code, "retry_after": retry_after}


def hang(seconds: float) -> Step:
    return {"hang": seconds}


def garbage() -> Step:
    """A 200 whose body is not JSON (a proxy's error page, a crashed server)."""
    return {"garbage": True}


def cards_in(raw: str) -> list[str]:
    found = []
    for m in CARD.finditer(raw):
        digits = re.sub(r"\D", "", m.group(0))
        if 13 <= len(digits) <= 19 and luhn_ok(digits):
            found.append(m.group(0))
    return found


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


@dataclass
class FakeOpenAI:
    script: list[Step] = field(default_factory=list)
    default: Callable[[dict[str, Any]], Step] | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    leaked_cards: list[str] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # time.monotonic() of each request
    # Requests that force the `report_intents` tool (the turn's intents) are answered apart from
    # the script: from `intent_script` (a list of intent names, or a Step) while it lasts, else by
    # `intents` (a callable), else with the 400 an endpoint without forced tool calls gives.
    intent_script: list[list[str] | Step] = field(default_factory=list)
    intents: Callable[[dict[str, Any]], list[str]] | None = None
    intent_requests: list[dict[str, Any]] = field(default_factory=list)
    server: TestServer | None = None
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    @property
    def url(self) -> str:
        """The base URL for the client: OPENAI_BASE_URL."""
        assert self.server is not None
        return str(self.server.make_url("/v1"))

    def tool_requests(self) -> list[dict[str, Any]]:
        """The requests of the answer loop (the summary request offers no tools)."""
        return [r for r in self.requests if "tools" in r]

    async def completions(self, request: web.Request) -> web.StreamResponse:
        raw = await request.text()
        if request.headers.get("Authorization") != f"Bearer {API_KEY}":
            return _error(
                401, "Incorrect API key provided", "invalid_request_error", "invalid_api_key"
            )
        try:
            body = json.loads(raw)
        except ValueError:
            return _error(400, "We could not parse the JSON body of your request.")
        # The raw body and every decoded string (JSON escapes cannot hide a number).
        self.leaked_cards += cards_in(raw) + [c for s in _strings(body) for c in cards_in(s)]
        forced = (body.get("tool_choice") or {}) if isinstance(body.get("tool_choice"), dict) else {}
        if (forced.get("function") or {}).get("name") == "report_intents":
            return self._intents_reply(body)
        self.times.append(time.monotonic())
        self.requests.append(body)
        if body.get("stream"):
            return _error(400, "this fake does not stream; the agent does not ask it to")
        if self.script:
            step = self.script.pop(0)
        elif self.default is not None:
            step = self.default(body)
        else:
            step = text("(the script ran out)")
        if "hang" in step:
            await asyncio.sleep(step["hang"])
            step = text("too late")
        if "status" in step:
            headers = {}
            if step.get("retry_after") is not None:
                headers["retry-after"] = str(step["retry_after"])
            return _error(
                step["status"],
                "Rate limit reached" if step["status"] == 429 else "The server had an error",
                "requests" if step["status"] == 429 else "server_error",
                headers=headers,
            )
        if step.get("garbage"):
            return web.Response(
                text="<html>502 Bad Gateway</html>", content_type="application/json"
            )
        msg = json.loads(json.dumps(step["message"]))
        for call in msg.get("tool_calls") or []:
            call["id"] = f"call_{next(self._ids)}"
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
                        "logprobs": None,
                        "finish_reason": "tool_calls" if msg.get("tool_calls") else "stop",
                    }
                ],
                "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
            }
        )

    def _intents_reply(self, body: dict[str, Any]) -> web.StreamResponse:
        self.intent_requests.append(body)
        if self.intent_script:
            step = self.intent_script.pop(0)
        elif self.intents is not None:
            step = self.intents(body)
        else:
            return _error(400, "tool_choice of a named function is not supported by this server")
        if isinstance(step, list):
            step = tool("report_intents", {"intents": step})
        if "status" in step:
            return _error(step["status"], "The server had an error", "server_error")
        msg = json.loads(json.dumps(step["message"]))
        for call in msg.get("tool_calls") or []:
            call["id"] = f"call_{next(self._ids)}"
        return web.json_response(
            {
                "id": f"chatcmpl-{next(self._ids)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "fake"),
                "choices": [
                    {"index": 0, "message": msg, "logprobs": None, "finish_reason": "tool_calls"}
                ],
                "usage": {"prompt_tokens": 80, "completion_tokens": 10, "total_tokens": 90},
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


def _error(
    code: int,
    message: str,
    type_: str = "invalid_request_error",
    err_code: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    return web.json_response(
        {"error": {"message": message, "type": type_, "param": None, "code": err_code}},
        status=code,
        headers=headers or {},
    )


def scripted_model(body: dict[str, Any]) -> Step:
    """A tiny deterministic "model" for runs too long to script turn by turn (the eval): it
    searches the help pages for the shopper's last message, answers from the first passage with
    its source, and asks for a person when nothing is found. Summary requests get a summary."""
    msgs = body["messages"]
    if "tools" not in body:
        return text("The shopper needs a person; see the conversation and the facts below.")
    last = msgs[-1]
    if last["role"] == "tool":
        result = json.loads(last["content"])
        passages = result.get("passages")
        if passages:
            first = passages[0]
            sentence = re.split(r"(?<=[.!?])\s", first["text"].strip())[0]
            return text(f"{sentence} [source: {first['source']}]")
        if passages == []:
            return tool("handoff", {"reason": "Not in the help pages", "tags": ["unanswered"]})
        return text("Thanks, I've checked that for you.")
    if last["role"] == "user":
        return tool("search_knowledge", {"query": last["content"][:200]})
    return text("How else can I help?")
