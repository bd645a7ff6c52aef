"""Running a store's custom actions: an HTTP call to the store's own API, described in YAML.

The URL and headers are sandboxed Jinja templates; secrets come only from the env variables the
config lists under `secrets:` (a template cannot read anything else). What to keep from the JSON
answer is a JMESPath expression per field. Every outcome, including a store API that is down,
comes back as data so the agent can tell the shopper and hand off rather than hang.

Writes (`approval: required`: cancel, refund) are never run by the agent: `run` refuses them.
The core runs an approved one from the outbox through `write`, which sends the action's
idempotency key as the Idempotency-Key header and sorts the answer into done, refused (4xx) or
try again (5xx, 408, 429, a timeout, no connection)."""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jmespath

from domain.storeconfig import Action, StoreConfig
from domain.templating import evaluate, render
from domain.writes import WriteOutcome, WriteStatus

IDEMPOTENCY_HEADER = "Idempotency-Key"
RETRYABLE = {408, 425, 429}  # 4xx answers that mean "not now" rather than "no"
WHOLE_EXPRESSION = re.compile(r"^\{\{(?P<expr>[^{}]*)\}\}$")
ERROR_CHARS = 500


def render_value(template: str, **ctx: Any) -> Any:
    """A template that is one `{{ expression }}` keeps the expression's own type (a number stays
    a number in a JSON body); anything else renders to text."""
    m = WHOLE_EXPRESSION.match(template.strip())
    if m is not None:
        return evaluate(m.group("expr").strip(), **ctx)
    return render(template, **ctx)


def render_json(value: Any, **ctx: Any) -> Any:
    if isinstance(value, str):
        return render_value(value, **ctx)
    if isinstance(value, dict):
        return {k: render_json(v, **ctx) for k, v in value.items()}
    if isinstance(value, list):
        return [render_json(v, **ctx) for v in value]
    return value


def store_error(status: int, data: Any, text: str) -> str:
    """The store API's own words for a refusal: `message`, `error` or `detail` of a JSON body
    (nested under `error` too), else the start of the body."""
    parts: list[str] = []
    if isinstance(data, dict):
        inner = data.get("error")
        for source in (data, inner if isinstance(inner, dict) else {}):
            for key in ("error", "code", "message", "detail"):
                v = source.get(key)
                if isinstance(v, str | int | float) and str(v) not in parts:
                    parts.append(str(v))
    if not parts and text.strip():
        parts.append(" ".join(text.split()))
    return f"HTTP {status}" + (f": {': '.join(parts)}" if parts else "")


@dataclass
class ActionResult:
    action: str
    inputs: dict[str, Any]
    status: str  # ok | not_found | error
    captured: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    ms: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "inputs": self.inputs,
            "status": self.status,
            "captured": self.captured,
            "error": self.error,
            "ms": self.ms,
        }


class ActionRunner:
    def __init__(
        self, config: StoreConfig, shop_api_url: str, session: aiohttp.ClientSession | None = None
    ) -> None:
        self.config = config
        self.shop_api_url = shop_api_url.rstrip("/")
        self._session = session
        self._own_session = session is None

    def _secrets(self) -> dict[str, str]:
        return {name: os.environ.get(name, "") for name in self.config.secrets}

    async def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(trust_env=False)
            self._own_session = True
        return self._session

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()

    async def run(self, name: str, inputs: dict[str, Any]) -> ActionResult:
        action: Action = self.config.actions[name]
        if action.writes:  # only a person's approval runs a write, through `write`
            return ActionResult(name, inputs, "error", error="a write action needs approval")
        ctx = {"shop_api_url": self.shop_api_url, "secrets": self._secrets(), **inputs}
        started = time.monotonic()
        try:
            url = render(action.request.url, **ctx)
            headers = {k: render(v, **ctx) for k, v in action.request.headers.items()}
            client = await self._client()
            timeout = aiohttp.ClientTimeout(total=action.request.timeout)
            async with client.request(
                action.request.method,
                url,
                headers=headers,
                json=action.request.json_body,
                timeout=timeout,
            ) as resp:
                ms = int((time.monotonic() - started) * 1000)
                if resp.status == 404:
                    return ActionResult(name, inputs, "not_found", ms=ms)
                if resp.status >= 400:
                    return ActionResult(name, inputs, "error", error=f"HTTP {resp.status}", ms=ms)
                data = await resp.json(content_type=None)
        except TimeoutError:
            return ActionResult(
                name,
                inputs,
                "error",
                error="timed out",
                ms=int((time.monotonic() - started) * 1000),
            )
        except (aiohttp.ClientError, ValueError) as exc:
            return ActionResult(
                name,
                inputs,
                "error",
                error=f"{type(exc).__name__}: {exc}"[:300],
                ms=int((time.monotonic() - started) * 1000),
            )
        captured = {key: jmespath.search(expr, data) for key, expr in action.capture.items()}
        return ActionResult(name, inputs, "ok", captured=captured, ms=ms)

    def _scrub(self, text: str) -> str:
        """Secrets never reach a thread, even if the store echoes a header back."""
        for value in self._secrets().values():
            if value and len(value) >= 4:
                text = text.replace(value, "***")
        return text[:ERROR_CHARS]

    async def write(
        self, name: str, params: dict[str, Any], idempotency_key: str
    ) -> WriteOutcome:
        """One attempt at an approved write. The same `idempotency_key` goes with every attempt,
        so a store that follows the Idempotency-Key convention applies it once, however often
        a timeout or a restart makes us send it."""
        action: Action = self.config.actions[name]
        ctx = {"shop_api_url": self.shop_api_url, "secrets": self._secrets(), **params}
        started = time.monotonic()

        def took() -> int:
            return int((time.monotonic() - started) * 1000)

        try:
            url = render(action.request.url, **ctx)
            headers = {k: render(v, **ctx) for k, v in action.request.headers.items()}
            headers[IDEMPOTENCY_HEADER] = idempotency_key
            body = (
                render_json(action.request.json_body, **ctx)
                if action.request.json_body is not None
                else None
            )
        except Exception as exc:  # a template that fails on these params: sending cannot help
            error = f"the action's request could not be built: {type(exc).__name__}: {exc}"
            return WriteOutcome(WriteStatus.REFUSED, error=self._scrub(error))
        try:
            client = await self._client()
            timeout = aiohttp.ClientTimeout(total=action.request.timeout)
            async with client.request(
                action.request.method, url, headers=headers, json=body, timeout=timeout
            ) as resp:
                text = await resp.text()
                try:
                    data = await resp.json(content_type=None) if text.strip() else {}
                except ValueError:
                    data = None
                if resp.status >= 400:
                    error = self._scrub(store_error(resp.status, data, text))
                    retry = resp.status >= 500 or resp.status in RETRYABLE
                    status = WriteStatus.RETRY if retry else WriteStatus.REFUSED
                    return WriteOutcome(status, resp.status, error, ms=took())
                captured = (
                    {k: jmespath.search(expr, data) for k, expr in action.capture.items()}
                    if isinstance(data, dict | list)
                    else {}
                )
                return WriteOutcome(WriteStatus.DONE, resp.status, captured=captured, ms=took())
        except TimeoutError:
            return WriteOutcome(WriteStatus.RETRY, error="the store's API timed out", ms=took())
        except aiohttp.ClientError as exc:
            error = self._scrub(f"the store's API could not be reached: {type(exc).__name__}: {exc}")
            return WriteOutcome(WriteStatus.RETRY, error=error, ms=took())
