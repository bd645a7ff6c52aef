"""A small shop API (the endpoints of eval/FORMAT.md) serving data from memory: the demo's sample
store and the store `handoff eval` plays each scenario against. Optional faults for tests.

Two writes, as a store's admin API offers them: cancel an order (refunding what was paid) and
refund an amount. Each needs an Idempotency-Key header and honours it the way payment APIs do:
the first request with a key is carried out and its answer kept; a request with the same key and
the same body gets that answer again (`Idempotent-Replayed: true`) and changes nothing; the same
key with a different body is refused (422)."""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from aiohttp import web

SHIPPED = ("shipped", "delivered")


@dataclass
class Write:
    """One write request as the shop API saw it."""

    path: str
    key: str | None
    status: int
    replayed: bool = False
    body: dict[str, Any] = field(default_factory=dict)


@dataclass
class ShopData:
    orders: dict[str, Any] = field(default_factory=dict)
    customers: dict[str, Any] = field(default_factory=dict)
    delay: float = 0.0
    fail_status: int | None = None
    calls: list[str] = field(default_factory=list)
    writes: list[Write] = field(default_factory=list)  # every write request, answered or not
    write_failures: list[int] = field(default_factory=list)  # answer the next writes with these
    refunds: list[dict[str, Any]] = field(default_factory=list)  # money actually sent back
    kept: dict[str, tuple[str, int, dict[str, Any]]] = field(default_factory=dict)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def applied(self, path_part: str) -> list[Write]:
        """Writes to paths containing `path_part` that the shop carried out (not replays)."""
        return [w for w in self.writes if path_part in w.path and w.status < 300 and not w.replayed]

    def load(self, shop: dict[str, Any]) -> None:
        self.orders = {k.upper(): v for k, v in (shop.get("orders") or {}).items()}
        self.customers = {k.lower(): v for k, v in (shop.get("customers") or {}).items()}


def with_price_difference(order: dict[str, Any]) -> dict[str, Any]:
    """What the items now cost less than was paid for them (price protection after a sale), when
    the items say both prices."""
    items = [i for i in order.get("items") or [] if isinstance(i, dict)]
    if "price_difference" in order or not any("current_price" in i for i in items):
        return order
    drop = sum(
        max(0.0, float(i.get("price") or 0) - float(i["current_price"])) * int(i.get("qty") or 1)
        for i in items
        if i.get("current_price") is not None
    )
    return {**order, "price_difference": round(drop, 2)}


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
            web.json_response(with_price_difference(found))
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

    async def write(
        request: web.Request, path: str, apply: Any
    ) -> web.Response:
        """Idempotency first (a replay changes nothing), then faults, then the change itself."""
        key = request.headers.get("Idempotency-Key")
        try:
            body = await request.json() if request.can_read_body else {}
        except ValueError:
            body = None
        record = Write(path, key, 0, body=body if isinstance(body, dict) else {})
        data.writes.append(record)
        data.calls.append(f"{request.method} {path}")

        def answer(status: int, payload: dict[str, Any], **headers: str) -> web.Response:
            record.status = status
            return web.json_response(payload, status=status, headers=headers or None)

        if not key:
            return answer(400, {"error": "idempotency_key_required",
                                "message": "Send an Idempotency-Key header with every write"})
        if not isinstance(body, dict):
            return answer(400, {"error": "invalid_json", "message": "The body must be a JSON object"})
        fingerprint = json.dumps([request.method, path, body], sort_keys=True)
        if key in data.kept:
            seen, status, payload = data.kept[key]
            if seen != fingerprint:
                return answer(422, {"error": "idempotency_key_reused",
                                    "message": "This Idempotency-Key was used for another request"})
            record.replayed = True
            return answer(status, payload, **{"Idempotent-Replayed": "true"})
        if data.delay:
            await asyncio.sleep(data.delay)
        if data.write_failures:
            status = data.write_failures.pop(0)
            return answer(status, {"error": "unavailable", "message": "Try again later"})
        if data.fail_status:
            return answer(data.fail_status, {"error": "unavailable", "message": "Try again later"})
        status, payload = apply(body)
        if status < 500:  # a refusal is an answer too: the same request gets it again
            data.kept[key] = (fingerprint, status, payload)
        return answer(status, payload)

    def find(number: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = data.orders.get(number)
        return found

    def refund(order: dict[str, Any], amount: float, reason: str) -> dict[str, Any]:
        made = {
            "id": f"re_{next(data._ids):04d}",
            "order": order["number"],
            "amount": round(amount, 2),
            "currency": order.get("currency") or "EUR",
            "reason": reason,
        }
        data.refunds.append(made)
        order["refunded"] = round(float(order.get("refunded") or 0) + amount, 2)
        order["payment_status"] = (
            "refunded" if order["refunded"] >= float(order.get("total") or 0) else "partially_refunded"
        )
        return made

    async def cancel(request: web.Request) -> web.Response:
        number = unquote(request.match_info["number"]).strip().upper()

        def apply(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            order = find(number)
            if order is None:
                return 404, {"error": "not_found", "message": f"No order {number}"}
            if order.get("status") in SHIPPED:
                return 409, {"error": "already_shipped",
                             "message": f"Order {number} has shipped and can no longer be cancelled"}
            if order.get("status") == "cancelled":
                return 409, {"error": "already_cancelled", "message": f"Order {number} is already cancelled"}
            order["status"] = "cancelled"
            made = None
            if body.get("refund", True) and order.get("payment_status") in ("paid", "partially_refunded"):
                left = float(order.get("total") or 0) - float(order.get("refunded") or 0)
                if left > 0:
                    made = refund(order, left, str(body.get("reason") or "cancelled"))
            return 200, {"number": number, "status": "cancelled", "refund": made}

        return await write(request, f"/orders/{number}/cancel", apply)

    async def refunds(request: web.Request) -> web.Response:
        number = unquote(request.match_info["number"]).strip().upper()

        def apply(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            order = find(number)
            if order is None:
                return 404, {"error": "not_found", "message": f"No order {number}"}
            amount = body.get("amount")
            if not isinstance(amount, int | float) or isinstance(amount, bool) or amount <= 0:
                return 422, {"error": "invalid_amount", "message": "amount must be a positive number"}
            if order.get("payment_status") not in ("paid", "partially_refunded"):
                return 409, {"error": "not_paid",
                             "message": f"Order {number} has no payment to refund ({order.get('payment_status')})"}
            left = float(order.get("total") or 0) - float(order.get("refunded") or 0)
            if amount > left + 1e-9:
                return 422, {"error": "amount_too_large",
                             "message": f"Only {left:.2f} {order.get('currency') or ''} is left to refund".rstrip()}
            return 201, refund(order, float(amount), str(body.get("reason") or "refund"))

        return await write(request, f"/orders/{number}/refunds", apply)

    app = web.Application()
    app.router.add_get("/orders/{number}", order)
    app.router.add_get("/customers/{email}", customer)
    app.router.add_post("/orders/{number}/cancel", cancel)
    app.router.add_post("/orders/{number}/refunds", refunds)
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
