"""Orders and approvers shared by the approval tests (web inbox and Slack): a paid flash-sale
order not yet shipped, and an order whose items now cost 30.00 less than was paid."""

from __future__ import annotations

from typing import Any

from bot.shop_server import ShopData
from domain.storeconfig import Approvers, StoreConfig, load_config

FLASH = "FP-100700"  # Ann's, paid, in a flash sale, not shipped: its cancellation is prepared
DROPPED = "FP-100800"  # Ann's, 80.00 paid for what now costs 50.00: a capped refund is prepared
CANCEL_KEY = f"handoff-cancel-{FLASH}"


def approval_config(**approvers: list[str]) -> StoreConfig:
    """The example store's YAML with these approvers (Slack users, groups, inbox staff)."""
    config = load_config()
    config.approvers = Approvers(**approvers)
    return config


def add_orders(shop: ShopData) -> None:
    shop.orders[FLASH] = {
        "number": FLASH,
        "email": "ann@example.com",
        "status": "paid",
        "payment_status": "paid",
        "sale": "friday-drop-48",
        "total": 120.0,
        "currency": "EUR",
        "placed_at": "2026-11-21T18:05:00Z",
        "items": [{"sku": "ARC-41", "name": "Arc Low", "qty": 1, "stock": 3}],
    }
    shop.orders[DROPPED] = {
        "number": DROPPED,
        "email": "ann@example.com",
        "status": "delivered",
        "payment_status": "paid",
        "sale": None,
        "total": 80.0,
        "currency": "EUR",
        "placed_at": "2026-11-18T10:00:00Z",
        "items": [
            {"sku": "RUN-9", "name": "Strato Runner", "qty": 1, "stock": 9, "price": 80.0, "current_price": 50.0}
        ],
    }


def cancels(shop: ShopData) -> list[Any]:
    """Cancellation requests the shop API received for the flash order (replays included)."""
    return [w for w in shop.writes if w.path == f"/orders/{FLASH}/cancel"]
