"""The facts the rules see, and the summary a person reads: one place that shapes both.

`customer` is only who the shopper proved to be (a store-signed identity, or the owner of an
order they proved); the owner of an order they named but did not prove is `order_owner`, which
staff see labelled "order owner (not verified)" and the rules use only for tags
(agent/trust.py)."""

from __future__ import annotations

from typing import Any

from agent.trust import proved_emails
from domain.ports import ConversationView

ORDER_FIELDS_HIDDEN = {
    "owner",
    "reported",
    "mismatch_told",
    "tried",
    "failed_turn",
    "locked_turn",
}
CUSTOMER_FIELDS_HIDDEN = ("email", "status", "verified", "tier")
OWNER_LABEL = "order owner (not verified)"


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
        if not order["verified"] and o.get("tried"):
            order["email_attempts"] = len(o["tried"])
        orders.append(order)
    cust = dict(mem.get("customer") or {})
    verified = bool(cust.get("verified"))
    proved = proved_emails(conversation.customer.email, mem)
    typed = mem.get("email")
    customer = {
        "name": conversation.customer.name,
        "email": conversation.customer.email
        or (cust.get("email") if verified else None)
        or (typed if typed and typed.lower() in proved else None),
        "tier": (cust.get("tier") if verified else None) or conversation.customer.tier,
        "verified": verified,
        **(
            {k: v for k, v in cust.items() if k not in CUSTOMER_FIELDS_HIDDEN}
            if verified
            else {}
        ),
    }
    if typed and typed.lower() not in proved:
        customer["claimed_email"] = typed  # typed in the chat, proved nothing
    owner = None
    if cust and not verified and cust.get("status") == "ok":
        owner = {
            "email": cust.get("email"),
            **{k: v for k, v in cust.items() if k not in ("email", "status", "verified")},
            "verified": False,
        }
    intents = list(mem.get("intents", []))
    if "price_override" in intents:
        intents.append("price_request")  # the name rule packs before learned intents used
    return {
        "intents": intents,
        "orders": orders,
        "orders_named": list(mem.get("orders", {}).keys()),
        "customer": customer,
        "order_owner": owner,
        "channel": conversation.channel,
        "turn": mem.get("turn", 0),
        "sale": next((o.get("sale") for o in orders if o.get("sale")), None),
    }


def summary_text(conversation: ConversationView, facts: dict[str, Any], reason: str) -> str:
    """One paragraph for the person picking this up, so they never have to ask again."""
    c = facts["customer"]
    who = c.get("name") or conversation.customer.username or "The shopper"
    email = c.get("email") or (
        f"gave {c['claimed_email']}, not verified" if c.get("claimed_email") else "no email given"
    )
    bits = [
        f"{who} ({email}"
        + (f", {c['tier']} tier" if c.get("tier") else "")
        + f") on {conversation.channel}: {reason}."
    ]
    owner = facts.get("order_owner")
    if owner:
        line = f"{OWNER_LABEL.capitalize()}: {owner.get('email')}"
        if owner.get("tier"):
            line += f", {owner['tier']} tier"
        if owner.get("lifetime_orders") is not None:
            line += f", {owner['lifetime_orders']} orders"
        bits.append(line + ".")
    for o in facts["orders"]:
        line = f"Order {o.get('number')}: {o.get('status')}, payment {o.get('payment_status')}"
        if o.get("sale"):
            line += f", from sale {o['sale']}"
        if o.get("out_of_stock"):
            line += f", out of stock: {', '.join(map(str, o['out_of_stock']))}"
        if not o.get("verified"):
            line += " (shopper's identity not verified for this order"
            if o.get("email_attempts"):
                line += f"; {o['email_attempts']} email address(es) tried"
            line += ")"
        bits.append(line + ".")
    missing = [
        n
        for n in facts.get("orders_named", [])
        if n not in {o.get("number") for o in facts["orders"]}
    ]
    if missing:
        bits.append(f"Not found in the store: {', '.join(missing)}.")
    return " ".join(bits)
