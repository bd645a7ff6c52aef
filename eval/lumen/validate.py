#!/usr/bin/env python3
"""Check the Lumen Beauty evaluation set against shared/eval/FORMAT.md and the store's own pages.

usage: python3 validate.py [scenarios.jsonl] [knowledge_dir]    (defaults: files beside this script)
Exit status 1 when anything is wrong; every problem is printed, then counts per kind, tag, page,
channel and language.

Adapted from the Pawpost checker (shared/eval/pets/validate.py). The store rules it enforces come
from this store's knowledge pages, so a page edit that changes a rule must change this file too:
- orders.md: order numbers look like LB-8xxxxx; prices in euros (payment.md);
- flash-sales.md: Lumen 24 starts on a Wednesday at 10:00 Madrid time and ends at 09:59 the next
  morning, named lumen24-MMDD after its start day; VIPs may buy from 08:00; 2 of each item;
- loyalty.md: VIP once a customer has spent EUR 600+ across at least 4 orders, and then always.
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
ORDER = re.compile(r"LB-8\d{5}")
SALE = re.compile(r"lumen24-(\d\d)(\d\d)")
MADRID = ZoneInfo("Europe/Madrid")
VIP_SPEND, VIP_ORDERS, SALE_MAX_QTY = 600, 4, 2
# what a shopper types when reporting a payment problem (to hand off before the order is proved)
PAYMENT_WORDS = re.compile(
    r"pa(y|id)|declin|fail|card|bizum|klarna|paypal|pago|pagar|pagu|tarjeta|rechaz|zahlung|bezahl|"
    r"abgelehnt|karte|paiement|payé|carte|refus|pagamento|carta|rifiutat|betaal|betaling|kaart|geweigerd",
    re.I,
)
# a few everyday words per language, to count the conversations that aren't in English
LANG_WORDS = {
    lang: set(words.split())
    for lang, words in {
        "es": "hola pedido gracias quiero pero está buenas ayer vale tengo cargo que os nada lo del y con por",
        "fr": "bonjour bonsoir salut commande merci je est pas j'ai c'est et ma pour vous ou",
        "de": "ich bitte bestellung nicht und ist wann guten danke wird das mit einem die",
        "it": "ciao ordine grazie vorrei il sono buongiorno buonasera salve devo perché ho per una della",
        "nl": "hoi bestelling waar mijn ik niet nog een dag bedankt jullie hoeveel wat het bij",
    }.items()
}
errors = []


def err(where, msg):
    errors.append(f"{where}: {msg}")


def mentioned(turn, number):
    """Order numbers may be typed oddly: 'lb 823 507', '#LB815562', 'Lb-82O4l9', 'pedido 826140'.

    The six digits are matched with an optional space, dot or dash between them, 'O'/'o' for 0 and
    'l'/'I' for 1, and no other digit directly before or after.
    """
    alike = {"0": "[0oO]", "1": "[1lI]"}
    pattern = r"[ .\-]?".join(alike.get(d, d) for d in number[3:])
    return re.search(rf"(?<!\d){pattern}(?!\d)", turn) is not None


def first(turns, pred):
    return next((i for i, t in enumerate(turns, 1) if pred(t)), None)


def language(text):
    words = re.findall(r"[a-zà-ÿ']+", text.lower())
    hits = {lang: sum(w in vocab for w in words) for lang, vocab in LANG_WORDS.items()}
    best = max(hits, key=hits.get)
    return best if hits[best] >= 3 else "en"


# ---- knowledge pages ----
kb_files = {f.name: f for f in sorted(KB.glob("*.md"))}
if len(kb_files) != 9:
    err("knowledge", f"{len(kb_files)} pages, want 9")
for name, f in kb_files.items():
    text = f.read_text(encoding="utf-8")
    words = len(re.findall(r"[A-Za-z0-9€][\w'’.,€/-]*", text))
    if not 250 <= words <= 550:
        err(name, f"{words} words, want 250-550")
    if not (re.search(r"^# \S", text, re.M) and re.search(r"^## \S", text, re.M)):
        err(name, "needs a '# ' title and '## ' sections")
if not any("LB-8xxxxx" in f.read_text(encoding="utf-8") for f in kb_files.values()):
    err("knowledge", "no page tells shoppers what an order number looks like (LB-8xxxxx)")

# ---- scenarios ----
tag_n, chan_n, kind_n, kb_n, lang_n = Counter(), Counter(), Counter(), Counter(), Counter()
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
    if not isinstance(s["customer"], dict):
        err(sid, "customer must be an object (possibly empty)")
        continue
    if not re.fullmatch(r"lb-[a-z]+(?:-[a-z]+)*-\d{2}", sid) or sid in seen:
        err(sid, "id must be unique and look like lb-<kind>-NN")
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
    if kb is not None and shop["orders"]:
        err(sid, "a knowledge question carries no orders in this set")
    if "flash-cancellation" in T and "cancellation" not in T:
        err(sid, "flash-cancellation must carry cancellation too")
    if "human-requested" in T and len(T) > 1:
        err(sid, "human-requested only when no other tag explains the handoff")

    orders, custs = shop["orders"], shop["customers"]
    cemail = s["customer"].get("email")
    if cemail and cemail not in custs:
        err(sid, "customer.email has no record in shop.customers")
    for key, c in custs.items():
        mine = [o for o in orders.values() if o.get("email") == key]
        if c.get("email") != key or c.get("tier") not in ("regular", "vip"):
            err(sid, f"customer {key}: email key mismatch or bad tier")
            continue
        spent, count = c.get("lifetime_value", 0), c.get("lifetime_orders", 0)
        reached = spent >= VIP_SPEND and count >= VIP_ORDERS
        if c["tier"] == "vip" and not reached:
            err(
                sid,
                f"customer {key}: VIP needs EUR {VIP_SPEND}+ over {VIP_ORDERS}+ orders (loyalty.md)",
            )
        if c["tier"] == "regular" and reached:
            err(
                sid,
                f"customer {key}: EUR {spent} over {count} orders is automatically VIP (loyalty.md)",
            )
        if count < len(mine):
            err(sid, f"customer {key}: lifetime_orders below the orders shown")
        paid = sum(o.get("total", 0) for o in mine if o.get("payment_status") == "paid")
        if spent + 0.005 < paid:
            err(
                sid,
                f"customer {key}: lifetime_value {spent} below the paid orders shown ({paid:.2f})",
            )
    for key, o in orders.items():
        if o.get("number") != key or not ORDER.fullmatch(key):
            err(sid, f"order {key}: number must be its key and look like LB-8xxxxx")
        if o.get("payment_status") not in PAY_FOR.get(o.get("status"), ()):
            err(
                sid,
                f"order {key}: status {o.get('status')!r} with payment {o.get('payment_status')!r}",
            )
        total = o.get("total", 0)
        if (
            o.get("currency") != "EUR"
            or o.get("email") not in custs
            or not (isinstance(total, (int, float)) and total > 0 and round(total, 2) == total)
        ):
            err(sid, f"order {key}: needs EUR, a positive total in cents and a customer record")
        if not o.get("items") or any(
            not (
                i.get("sku") and i.get("name") and i.get("qty", 0) >= 1 and i.get("stock", -1) >= 0
            )
            for i in o["items"]
        ):
            err(sid, f"order {key}: items need sku, name, qty >= 1, stock >= 0")
        placed = datetime.fromisoformat(o["placed_at"].replace("Z", "+00:00")).astimezone(MADRID)
        if o.get("sale") is not None:
            m = SALE.fullmatch(o["sale"])
            start = m and datetime(placed.year, int(m[1]), int(m[2]), 10, tzinfo=MADRID)
            vip_owner = custs.get(o.get("email"), {}).get("tier") == "vip"
            opens = start and start - timedelta(hours=2 if vip_owner else 0)
            if not m or start.weekday() != 2:
                err(sid, f"order {key}: sale {o['sale']!r} must be lumen24-MMDD of a Wednesday")
            elif not opens <= placed < start + timedelta(days=1):
                err(
                    sid,
                    f"order {key}: sale {o['sale']!r} but placed {placed:%a %d %b %H:%M} Madrid time"
                    + ("" if vip_owner else " (only VIPs buy from 08:00)"),
                )
            if any(i["qty"] > SALE_MAX_QTY for i in o["items"]):
                err(sid, f"order {key}: flash sales allow {SALE_MAX_QTY} of each item")
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
    if "payment-failure" in T and orders and not failed:
        err(
            sid,
            "payment-failure on orders whose payment didn't fail (only a reported one without orders)",
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
        for k in failed:
            said = any(PAYMENT_WORDS.search(t) for t in turns[:by])
            if not said and (proved[k] is None or proved[k] > by):
                err(
                    sid,
                    f"failed payment on {k}: not reported by the shopper and not proved by turn {by}",
                )
        if "vip" in T and vips and min(vips.values()) > by:
            err(sid, f"VIP identity is only known after by_turn {by}")
        if "multi-order" in T and len(orders) >= 2 and sorted(ref.values())[1] > by:
            err(sid, f"the second order is mentioned after by_turn {by}")

    chan_n[s["channel"]] += 1
    kind_n["escalate" if esc else ("knowledge" if kb else "status/chat")] += 1
    lang_n[language(" ".join(turns))] += 1
    if kb:
        kb_n[kb] += 1
    for t in T:
        tag_n[t] += 1
    tag_n["(2+ tags)"] += len(T) > 1

total = sum(chan_n.values())
if total != 48:
    err("set", f"{total} scenarios, want 48")
for t in TAGS:
    if tag_n[t] < 3:
        err("set", f"tag {t} is used {tag_n[t]} times, want 3+")
for name in kb_files:
    if not kb_n[name]:
        err("set", f"no question is answered from {name}")
if total - lang_n["en"] < 14:
    err("set", f"{total - lang_n['en']} conversations not in English, want 14+")

print(f"{total} scenarios: " + ", ".join(f"{k} {v}" for k, v in kind_n.items()))
print("channels: " + ", ".join(f"{k} {v}" for k, v in sorted(chan_n.items())))
print("tags:     " + ", ".join(f"{t} {tag_n[t]}" for t in TAGS + ["(2+ tags)"]))
print("kb:       " + ", ".join(f"{k} {v}" for k, v in sorted(kb_n.items())))
print("language: " + ", ".join(f"{k} {v}" for k, v in lang_n.most_common()))
for e in errors:
    print("ERROR", e)
print("OK" if not errors else f"{len(errors)} problem(s)")
sys.exit(1 if errors else 0)
