"""The facts the rules see, and the summary a person reads: one place that shapes both."""

from __future__ import annotations

from typing import Any

from domain.ports import ConversationView

ORDER_FIELDS_HIDDEN = {"owner", "reported", "mismatch_told"}


def build_facts(conversation: ConversationView, mem: dict[str, Any]) -> dict[str, Any]:
    orders = []
    for o in mem.get("orders", {}).values():
        if o.get("lookup") != "ok":
            continue
        items = o.get("items") or []
        order = {k: v for k, v in o.items() if k not in ORDER_FIELDS_HIDDEN}
        order["out_of_stock"] = [
            i.get("name") or i.get("sku")
            for i in items
            if isinstance(i, dict) and i.get("stock") == 0
        ]
        order["verified"] = bool(o.get("verified"))
        order["intents"] = list(o.get("intents") or [])
        orders.append(order)
    cust = dict(mem.get("customer") or {})
    customer = {
        "name": conversation.customer.name,
        "email": conversation.customer.email or mem.get("email") or cust.get("email"),
        "tier": cust.get("tier") or conversation.customer.tier,
        "verified": bool(cust.get("verified")),
        **{k: v for k, v in cust.items() if k not in ("email", "status", "verified", "tier")},
    }
    intents = list(mem.get("intents", []))
    if "price_override" in intents:
        intents.append("price_request")  # the name rule packs before learned intents used
    return {
        "intents": intents,
        "orders": orders,
        "orders_named": list(mem.get("orders", {}).keys()),
        "customer": customer,
        "channel": conversation.channel,
        "turn": mem.get("turn", 0),
        "sale": next((o.get("sale") for o in orders if o.get("sale")), None),
    }


def summary_text(conversation: ConversationView, facts: dict[str, Any], reason: str) -> str:
    """One paragraph for the person picking this up, so they never have to ask again."""
    c = facts["customer"]
    who = c.get("name") or conversation.customer.username or "The shopper"
    bits = [
        f"{who} ({c.get('email') or 'no email given'}"
        + (f", {c['tier']} tier" if c.get("tier") else "")
        + f") on {conversation.channel}: {reason}."
    ]
    for o in facts["orders"]:
        line = f"Order {o.get('number')}: {o.get('status')}, payment {o.get('payment_status')}"
        if o.get("sale"):
            line += f", from sale {o['sale']}"
        if o.get("out_of_stock"):
            line += f", out of stock: {', '.join(map(str, o['out_of_stock']))}"
        if not o.get("verified"):
            line += " (shopper's identity not verified for this order)"
        bits.append(line + ".")
    missing = [
        n
        for n in facts.get("orders_named", [])
        if n not in {o.get("number") for o in facts["orders"]}
    ]
    if missing:
        bits.append(f"Not found in the store: {', '.join(missing)}.")
    return " ".join(bits)
