"""A small shop API (the endpoints of eval/FORMAT.md) serving data from memory: the demo's sample
store and the store `handoff eval` plays each scenario against. Optional faults for tests."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from aiohttp import web


@dataclass
class ShopData:
    orders: dict[str, Any] = field(default_factory=dict)
    customers: dict[str, Any] = field(default_factory=dict)
    delay: float = 0.0
    fail_status: int | None = None
    calls: list[str] = field(default_factory=list)

    def load(self, shop: dict[str, Any]) -> None:
        self.orders = {k.upper(): v for k, v in (shop.get("orders") or {}).items()}
        self.customers = {k.lower(): v for k, v in (shop.get("customers") or {}).items()}


def shop_app(data: ShopData) -> web.Application:
    async def guard(path: str) -> web.Response | None:
        data.calls.append(path)
        if data.delay:
            await asyncio.sleep(data.delay)
        if data.fail_status:
            return web.json_response({"error": "unavailable"}, status=data.fail_status)
        return None

    async def order(request: web.Request) -> web.Response:
        number = unquote(request.match_info["number"]).strip().upper()
        if (failed := await guard(f"/orders/{number}")) is not None:
            return failed
        found = data.orders.get(number)
        return (
            web.json_response(found)
            if found
            else web.json_response({"error": "not_found"}, status=404)
        )

    async def customer(request: web.Request) -> web.Response:
        email = unquote(request.match_info["email"]).strip().lower()
        if (failed := await guard(f"/customers/{email}")) is not None:
            return failed
        found = data.customers.get(email)
        return (
            web.json_response(found)
            if found
            else web.json_response({"error": "not_found"}, status=404)
        )

    app = web.Application()
    app.router.add_get("/orders/{number}", order)
    app.router.add_get("/customers/{email}", customer)
    return app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def start_shop(
    data: ShopData, port: int = 0, host: str = "127.0.0.1"
) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(shop_app(data), access_log=None)
    await runner.setup()
    port = port or free_port()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner, f"http://{host}:{port}"
