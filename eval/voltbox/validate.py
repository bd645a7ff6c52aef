#!/usr/bin/env python3
"""Check the Voltbox evaluation set against shared/eval/FORMAT.md and the store's own pages.

usage: python3 validate.py [scenarios.jsonl] [knowledge_dir]    (defaults: files beside this script)
Exit status 1 when anything is wrong; every problem is printed, then counts per tag and channel.
Store rules checked against the shop data come from knowledge/: Voltbox Priority (the vip tier) from
EUR 1,500 spent (account-privacy.md); flash deals at 12:00 and 20:00 Dutch time for 60 minutes, up to
2 of each deal item, labelled flash-MMDD-HHMM (flash-deals.md); order numbers VB- and six digits.
"""

import json
import re
import sys
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

HERE = Path(__file__).resolve().parent
SCEN = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "scenarios.jsonl"
KB = Path(sys.argv[2]) if len(sys.argv) > 2 else HERE / "knowledge"
TAGS = [
    "payment-failure",
    "cancellation",
    "flash-cancellation",
    "out-of-stock",
    "price-override",
    "fraud-review",
    "vip",
    "multi-order",
    "human-requested",
]
PAY_FOR = {
    "pending": {"pending", "failed"},
    "paid": {"paid", "disputed"},
    "shipped": {"paid", "disputed"},
    "delivered": {"paid", "refunded", "disputed"},
    "cancelled": {"failed", "refunded"},
}  # order.status -> allowed payment_status
UNSHIPPED = {"pending", "paid"}
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
NL = ZoneInfo("Europe/Amsterdam")
VIP_FROM = 1500.0
DEAL_HOURS = {"1200": 12, "2000": 20}
LOOKALIKE = str.maketrans("OoIl", "0011")
errors = []


def err(where, msg):
    errors.append(f"{where}: {msg}")


def mentioned(turn, number):
    """Order numbers may be typed oddly: 'vb 231 607', '#VB227391', 'Vb-2O9174' (letter O for zero),
    'Vb-2l1835' (l for one), 'order 234482', 'VB - 238107'."""
    digits = number[3:]
    if digits in re.sub(r"[^0-9A-Za-z]", "", turn):
        return True
    for run in re.findall(r"[0-9OoIl][0-9OoIl \t#-]*", turn):
        if re.search(r"\d", run) and digits in re.sub(r"[^0-9OoIl]", "", run).translate(LOOKALIKE):
            return True
    return False


def first(turns, pred):
    return next((i for i, t in enumerate(turns, 1) if pred(t)), None)


# ---- knowledge pages ----
kb_files = {f.name: f for f in sorted(KB.glob("*.md"))}
if len(kb_files) != 9:
    err("knowledge", f"{len(kb_files)} pages, want 9")
for name, f in kb_files.items():
    text = f.read_text(encoding="utf-8")
    words = len(re.findall(r"[A-Za-z0-9£€][\w'’.,£€/-]*", text))
    if not 250 <= words <= 550:
        err(name, f"{words} words, want 250-550")
    if not (re.search(r"^# \S", text, re.M) and re.search(r"^## \S", text, re.M)):
        err(name, "needs a '# ' title and '## ' sections")

# ---- scenarios ----
tag_n, chan_n, kind_n, kb_n = Counter(), Counter(), Counter(), Counter()
seen = set()
for n, line in enumerate(SCEN.read_text(encoding="utf-8").splitlines(), 1):
    try:
        s = json.loads(line)
    except json.JSONDecodeError as e:
        err(f"line {n}", f"not JSON ({e})")
        continue
    sid = s.get("id", f"line {n}") if isinstance(s, dict) else f"line {n}"
    if not isinstance(s, dict) or set(s) != {
        "id",
        "channel",
        "customer",
        "shop",
        "turns",
        "expect",
    }:
        err(sid, "fields must be exactly id, channel, customer, shop, turns, expect")
        continue
    ex, turns, shop = s["expect"], s["turns"], s["shop"]
    if not isinstance(ex, dict) or set(ex) != {"escalate", "tags", "by_turn", "kb_source"}:
        err(sid, "expect must have exactly escalate, tags, by_turn, kb_source")
        continue
    if not (
        isinstance(turns, list) and turns and all(isinstance(t, str) and t.strip() for t in turns)
    ):
        err(sid, "turns must be a non-empty list of non-empty strings")
        continue
    if not (isinstance(shop, dict) and set(shop) == {"orders", "customers"}):
        err(sid, "shop must have exactly orders and customers")
        continue
    if not re.fullmatch(r"vb-[a-z]+(?:-[a-z]+)*-\d{2}", sid) or sid in seen:
        err(sid, "id must be unique and look like vb-<kind>-NN")
    seen.add(sid)
    if s["channel"] not in ("widget", "telegram"):
        err(sid, "channel must be widget or telegram")
    esc, tags, by, kb = ex["escalate"], ex["tags"], ex["by_turn"], ex["kb_source"]
    T = set(tags) if isinstance(tags, list) else set()
    if not isinstance(esc, bool) or not isinstance(tags, list) or len(T) != len(tags):
        err(sid, "escalate must be a bool and tags a list without repeats")
    for t in T - set(TAGS):
        err(sid, f"unknown tag {t!r}")
    if not esc and (tags or by is not None):
        err(sid, "escalate false needs tags [] and by_turn null")
    if esc:
        if not tags:
            err(sid, "an escalation needs at least one tag")
        if not (isinstance(by, int) and not isinstance(by, bool) and 1 <= by <= len(turns)):
            err(sid, f"by_turn {by!r} must be within 1..{len(turns)}")
            by = len(turns)
        if kb is not None:
            err(sid, "escalations carry kb_source null in this set")
    if kb is not None and kb not in kb_files:
        err(sid, f"kb_source {kb!r} is not a page in {KB.name}/")
    if "flash-cancellation" in T and "cancellation" not in T:
        err(sid, "flash-cancellation must carry cancellation too")
    if "human-requested" in T and len(T) > 1:
        err(sid, "human-requested only when no other tag explains the handoff")

    orders, custs = shop["orders"], shop["customers"]
    cemail = (s["customer"] or {}).get("email")
    if cemail and cemail not in custs:
        err(sid, "customer.email has no record in shop.customers")
    for key, c in custs.items():
        if c.get("email") != key or c.get("tier") not in ("regular", "vip"):
            err(sid, f"customer {key}: email key mismatch or bad tier")
        elif (c["tier"] == "vip") != (c.get("lifetime_value", 0) >= VIP_FROM):
            err(
                sid,
                f"customer {key}: tier {c['tier']} with EUR {c.get('lifetime_value')} spent; "
                f"Voltbox Priority (vip) starts at EUR 1,500 (account-privacy.md)",
            )
        if c.get("lifetime_orders", 0) < sum(o.get("email") == key for o in orders.values()):
            err(sid, f"customer {key}: lifetime_orders below the orders shown")
        spent = sum(
            o.get("total", 0)
            for o in orders.values()
            if o.get("email") == key and o.get("payment_status") in ("paid", "disputed")
        )
        if c.get("lifetime_value", 0) + 0.005 < spent:
            err(
                sid, f"customer {key}: lifetime_value below the paid orders shown (EUR {spent:.2f})"
            )
    for key, o in orders.items():
        if o.get("number") != key or not re.fullmatch(r"VB-2\d{5}", key):
            err(sid, f"order {key}: number must be its key and look like VB-2xxxxx")
        if o.get("payment_status") not in PAY_FOR.get(o.get("status"), ()):
            err(
                sid,
                f"order {key}: status {o.get('status')!r} with payment {o.get('payment_status')!r}",
            )
        if o.get("currency") != "EUR" or o.get("email") not in custs or not o.get("total", 0) > 0:
            err(sid, f"order {key}: needs EUR, a positive total and a customer record")
        if not o.get("items") or any(
            not (
                i.get("sku") and i.get("name") and i.get("qty", 0) >= 1 and i.get("stock", -1) >= 0
            )
            for i in o["items"]
        ):
            err(sid, f"order {key}: items need sku, name, qty >= 1, stock >= 0")
        placed = datetime.fromisoformat(o["placed_at"].replace("Z", "+00:00")).astimezone(NL)
        if o.get("sale") is not None:
            m = re.fullmatch(r"flash-(\d\d)(\d\d)-(1200|2000)", o["sale"])
            start = m and placed.replace(hour=DEAL_HOURS[m[3]], minute=0, second=0, microsecond=0)
            if (
                not m
                or (placed.month, placed.day) != (int(m[1]), int(m[2]))
                or not start <= placed < start + timedelta(minutes=60)
            ):
                err(
                    sid,
                    f"order {key}: deal {o['sale']!r} but placed {placed:%d %b %H:%M} Dutch time",
                )
            elif any(i["qty"] > 2 for i in o["items"]):
                err(sid, f"order {key}: flash deals allow 2 of each deal item")
        if not first(turns, lambda t, key=key: mentioned(t, key)):
            err(sid, f"order {key} is never mentioned, so the agent could not look it up")

    # who is proved when: customer.email at turn 0, typed emails from the turn they appear
    typed = {}
    for i, t in enumerate(turns, 1):
        for e in EMAIL.findall(t):
            typed.setdefault(e.lower(), i)
    known = dict(typed)
    if cemail:
        known[cemail] = 0
    proved = {k: known.get(o["email"]) for k, o in orders.items()}
    ref = {k: first(turns, lambda t, k=k: mentioned(t, k)) or 99 for k in orders}

    failed = {k for k, o in orders.items() if o["payment_status"] == "failed"}
    disputed = {k for k, o in orders.items() if o["payment_status"] == "disputed"}
    oos = {
        k
        for k, o in orders.items()
        if o["status"] in UNSHIPPED and any(i["stock"] == 0 for i in o["items"])
    }
    problems = failed | disputed | oos
    if failed and "payment-failure" not in T:
        err(sid, "a failed payment needs payment-failure")
    if "payment-failure" in T and not failed and orders:
        err(
            sid,
            "payment-failure without a failed order: only for a decline reported before any order exists",
        )
    if bool(oos) != ("out-of-stock" in T):
        err(sid, "an unshipped item with stock 0 <=> out-of-stock")
    if disputed and "fraud-review" not in T:
        err(sid, "a disputed payment needs fraud-review")
    if len(problems) >= 2 and "multi-order" not in T:
        err(sid, "two or more orders with problems need multi-order")
    if "multi-order" in T and len(orders) < 2:
        err(sid, "multi-order needs two or more orders in the conversation")
    if "cancellation" in T:
        open_orders = [o for o in orders.values() if o["status"] in UNSHIPPED]
        if orders and not open_orders:
            err(sid, "cancellation needs an order that hasn't shipped")
        if any(o["sale"] for o in open_orders) != ("flash-cancellation" in T):
            err(sid, "flash-cancellation <=> the unshipped order is from a flash sale")
    vips = {e: i for e, i in known.items() if custs.get(e, {}).get("tier") == "vip"}
    about_theirs = any(o["email"] in vips for o in orders.values())
    if (bool(vips) and (about_theirs or esc)) != ("vip" in T):
        err(sid, "a VIP talking about their orders (or handed off) <=> vip")
    if not esc:
        for k, p in proved.items():
            if p is None:
                err(sid, f"order {k} is never proved (no matching email), yet no handoff")
    else:
        for k in problems:
            if ref[k] > by:
                err(sid, f"order {k} is first mentioned at turn {ref[k]}, after by_turn {by}")
        for k in oos:
            if proved[k] is None or proved[k] > by:
                err(
                    sid,
                    f"out-of-stock on {k} is only visible once the order is proved, after by_turn {by}",
                )
        if "vip" in T and vips and min(vips.values()) > by:
            err(sid, f"VIP identity is only known after by_turn {by}")
        if "multi-order" in T and len(orders) >= 2 and sorted(ref.values())[1] > by:
            err(sid, f"the second order is mentioned after by_turn {by}")

    chan_n[s["channel"]] += 1
    kind_n["escalate" if esc else ("knowledge" if kb else "status/chat")] += 1
    if kb:
        kb_n[kb] += 1
    for t in T:
        tag_n[t] += 1
    tag_n["(2+ tags)"] += len(T) > 1

for t in TAGS:
    if tag_n[t] < 3:
        err("set", f"tag {t} is used {tag_n[t]} times, want 3+")
for name in kb_files:
    if not kb_n[name]:
        err("set", f"no question is answered from {name}")

print(f"{sum(chan_n.values())} scenarios: " + ", ".join(f"{k} {v}" for k, v in kind_n.items()))
print("channels: " + ", ".join(f"{k} {v}" for k, v in sorted(chan_n.items())))
print("tags:     " + ", ".join(f"{t} {tag_n[t]}" for t in TAGS + ["(2+ tags)"]))
print("kb:       " + ", ".join(f"{k} {v}" for k, v in sorted(kb_n.items())))
for e in errors:
    print("ERROR", e)
print("OK" if not errors else f"{len(errors)} problem(s)")
sys.exit(1 if errors else 0)
