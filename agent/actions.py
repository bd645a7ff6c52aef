"""Running a store's custom actions: an HTTP call to the store's own API, described in YAML.

The URL and headers are sandboxed Jinja templates; secrets come only from the env variables the
config lists under `secrets:` (a template cannot read anything else). What to keep from the JSON
answer is a JMESPath expression per field. Every outcome, including a store API that is down,
comes back as data so the agent can tell the shopper and hand off rather than hang."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jmespath

from domain.storeconfig import Action, StoreConfig
from domain.templating import render


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
