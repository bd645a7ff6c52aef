"""What a shopper may learn about orders, and how much one conversation may ask of the store.

The principle (DESIGN.md, "Trust"): what a shopper sees never depends on an order they have not
proved (its number plus the email on it, or a store-signed identity). An order that exists but is
not proved, one the store does not know and one not looked up at all therefore read the same:
the same questions, the same answers, the same handoffs. Otherwise an order number alone would
tell a stranger whether the order exists, whether its payment failed, or whose it is.

- Whether to hand off, the priority and the SLA come from the rules over the proved facts only
  (plus what the shopper says); the handoff's tags, which only staff see, may also use what the
  store said about unproved orders and their owner, marked unverified in the ticket.
- An email is checked against an order at most `limits.email_attempts` times per conversation;
  one more hands off (`limits.identity_tag`) instead of checking it, so guessing stops there.
- Every call to the store's API is counted: at most `lookups_per_message` per message and
  `lookups_per_hour` per conversation in any hour, so one message naming hundreds of order
  numbers costs the store a few calls.
- What a conversation remembers is capped (`memory_items` per list, oldest dropped)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from agent.rules import Decision, Match, evaluate_rules
from domain.storeconfig import Limits, StoreConfig
from domain.templating import render

HOUR = 3600.0


def now() -> float:
    """Wall-clock seconds (the budget outlives a process): one seam for tests."""
    return time.time()


# ----------------------------------------------------------------- the store's API


class Budget:
    """The store-API calls this conversation may still make: per message and per rolling hour.
    Kept in the conversation's memory (`budget`), so a restart or a second instance agrees."""

    def __init__(self, mem: dict[str, Any], limits: Limits) -> None:
        self.limits = limits
        b = mem.get("budget")
        calls = b.get("calls") if isinstance(b, dict) else None
        if not isinstance(b, dict) or b.get("turn") != mem.get("turn"):
            b = {"turn": mem.get("turn"), "used": 0, "skipped": 0, "why": None}
        cutoff = now() - HOUR
        b["calls"] = [t for t in calls or [] if isinstance(t, int | float) and t > cutoff][
            -limits.lookups_per_hour :
        ]
        mem["budget"] = b
        self.state = b

    def take(self) -> bool:
        """Spend one call, or say no (and remember why, for the shopper's answer)."""
        b = self.state
        if b["used"] >= self.limits.lookups_per_message:
            why = "message"
        elif len(b["calls"]) >= self.limits.lookups_per_hour:
            why = "hour"
        else:
            b["used"] += 1
            b["calls"].append(now())
            return True
        b["why"] = b["why"] or why
        return False

    def skip(self, count: int = 1) -> None:
        self.state["skipped"] += count


def skipped_now(mem: dict[str, Any]) -> tuple[int, str | None]:
    """How many order numbers this message named that were not looked up, and why."""
    b = mem.get("budget") or {}
    if b.get("turn") != mem.get("turn"):
        return 0, None
    return int(b.get("skipped") or 0), b.get("why")


# ------------------------------------------------------------------------ proof


def proved_emails(signed: str | None, mem: dict[str, Any]) -> set[str]:
    """The shopper's own addresses: the one the channel vouches for (a store-signed widget email,
    a scenario's customer) and each one that proved an order. An email merely typed is a claim."""
    out = {signed.lower()} if signed else set()
    for o in (mem.get("orders") or {}).values():
        if o.get("verified") and o.get("owner"):
            out.add(str(o["owner"]).lower())
    return out


def check_emails(
    mem: dict[str, Any],
    signed: str | None,
    limits: Limits,
    email_now: str | None,
    new_numbers: list[str],
) -> None:
    """Prove each order named so far with the emails given, within the attempts allowed.

    An order is proved by the signed identity or by an email checked against it; once proved it
    stays so. An unknown order goes through exactly the same steps (it just never matches), so the
    answers and the limit read the same. `email_now` is the address this message gave (the last
    one, if it gave several: one message is one attempt); an order named for the first time is
    also checked against the address given earlier in the conversation."""
    turn = mem.get("turn")
    signed = signed.lower() if signed else None
    earlier = (mem.get("email") or "").lower() or None
    for number, order in (mem.get("orders") or {}).items():
        if order.get("lookup") not in ("ok", "not_found") or order.get("verified"):
            continue
        owner = str(order.get("owner") or "").lower()
        if signed and owner and owner == signed:
            order["verified"] = True
            continue
        candidates = [earlier] if number in new_numbers and earlier else []
        if email_now:
            candidates.append(email_now.lower())
        tried: list[str] = order.setdefault("tried", [])
        for email in dict.fromkeys(candidates):
            if email in tried:  # the same address again: the same answer, no new attempt
                order["failed_turn"] = turn
                continue
            if order.get("locked") or len(tried) >= limits.email_attempts:
                order["locked"] = True  # never checked again in this conversation
                order["locked_turn"] = turn
                continue
            tried.append(email)
            if owner and email == owner:
                order["verified"] = True
                break
            order["failed_turn"] = turn


def locked_now(mem: dict[str, Any]) -> list[str]:
    """Orders for which this message tried one email more than allowed: a person takes over."""
    turn = mem.get("turn")
    return [n for n, o in (mem.get("orders") or {}).items() if o.get("locked_turn") == turn]


# ------------------------------------------------------------------------ rules


def proved_view(facts: dict[str, Any]) -> dict[str, Any]:
    """The facts as the shopper has proved them: unproved orders are left out (an unknown order
    is not in `orders` either, and both stay in `orders_named`), and the customer is only the
    proved one (build_facts already keeps the unproved owner apart, as `order_owner`)."""
    orders = [o for o in facts.get("orders") or [] if o.get("verified")]
    return {
        **facts,
        "orders": orders,
        "sale": next((o.get("sale") for o in orders if o.get("sale")), None),
        "order_owner": None,
    }


def tag_view(facts: dict[str, Any]) -> dict[str, Any]:
    """The facts for choosing tags: everything the store said, the owner of an unproved order
    standing in for a customer nobody proved (so a VIP's order is tagged `vip`; staff see it
    marked unverified, and it earns neither priority nor SLA)."""
    owner = facts.get("order_owner") or {}
    customer = facts.get("customer") or {}
    if customer.get("verified") or not owner:
        return facts
    merged = {k: v for k, v in owner.items() if k != "verified"}
    merged.update({k: v for k, v in customer.items() if v is not None})
    return {**facts, "customer": merged}


@dataclass
class TrustedDecision(Decision):
    """The rules' verdict on the proved facts (whether, priority, SLA, what to ask first), with
    the tags, problem orders and reasons of the verdict on everything the store said."""

    tag_matches: list[Match] = field(default_factory=list)

    @property
    def reason(self) -> str:
        matches = self.tag_matches or self.matches
        return "; ".join(dict.fromkeys(m.reason for m in matches if m.reason))


def decide(config: StoreConfig, facts: dict[str, Any]) -> Decision:
    """Hand off only on what the shopper proved or said; tag with what the store knows."""
    seen = evaluate_rules(config, proved_view(facts))
    if not seen.escalate:
        return seen
    full = evaluate_rules(config, tag_view(facts))
    if not full.escalate:
        return seen
    return TrustedDecision(
        matches=seen.matches,
        tags=list(full.tags),
        problem_orders=list(full.problem_orders),
        tag_matches=full.matches,
    )


# ----------------------------------------------------------------------- replies


def order_replies(
    config: StoreConfig, mem: dict[str, Any], new_orders: list[str], signed: str | None
) -> list[str]:
    """What the shopper is told about orders they have not proved: the same for an order that
    exists, one that does not and one not looked up."""
    msgs = config.messages
    turn = mem.get("turn")
    parts: list[str] = []
    orders = mem.get("orders") or {}
    unproved = {
        n: o
        for n, o in orders.items()
        if o.get("lookup") in ("ok", "not_found") and not o.get("verified")
    }
    failed = [n for n, o in unproved.items() if o.get("failed_turn") == turn]
    if failed:
        parts.append(render(msgs.email_mismatch, number=", ".join(failed)))
    fresh = [n for n in new_orders if n in unproved and n not in failed]
    asked = False
    if fresh and signed and not mem.get("email"):
        parts.append(render(msgs.order_not_found, number=", ".join(fresh)))
        asked = True
    waiting = [n for n in unproved if n not in failed and not unproved[n].get("tried")]
    if waiting and not mem.get("email") and not asked:
        parts.append(msgs.ask_email)
    skipped, why = skipped_now(mem)
    if skipped:
        if why == "hour" or not new_orders:
            parts.append(msgs.lookup_limit)
        else:
            parts.append(
                render(
                    msgs.too_many_orders,
                    limit=config.limits.lookups_per_message,
                    numbers=list(new_orders),
                )
            )
    return parts


def tool_view(order: dict[str, Any] | None) -> dict[str, Any]:
    """An order as a tool call may return it to the LLM: details only when proved, and one
    answer for unproved, unknown and not looked up."""
    if order is not None and order.get("verified") and order.get("lookup") == "ok":
        return {k: order.get(k) for k in ORDER_DETAILS}
    return {
        "number": (order or {}).get("number"),
        "verified": False,
        "note": (
            "not proved: ask for the email address on the order; until it matches, say nothing "
            "about the order, not even whether it exists"
        ),
    }


ORDER_DETAILS = (
    "number",
    "status",
    "payment_status",
    "sale",
    "total",
    "currency",
    "placed_at",
    "items",
)


# ----------------------------------------------------------------------- memory


def bound_memory(mem: dict[str, Any], limits: Limits) -> None:
    """Cap every list the conversation's memory grows (the oldest go first), so a long hostile
    chat costs the same storage as a short one."""
    n = limits.memory_items
    entities = mem.get("entities")
    if isinstance(entities, dict):
        for name, values in list(entities.items()):
            if isinstance(values, list) and len(values) > n:
                entities[name] = values[-n:]
    orders = mem.get("orders")
    if isinstance(orders, dict) and len(orders) > n:
        mem["orders"] = dict(list(orders.items())[-n:])
    for key in ("asked", "last_orders"):
        value = mem.get(key)
        if isinstance(value, list) and len(value) > n:
            mem[key] = value[-n:]
