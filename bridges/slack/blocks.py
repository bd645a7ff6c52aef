"""Block Kit for the ticket: the thread's parent message and the history, within Slack's limits
(50 blocks a message, 3,000 characters a section, 2,000 a field, 150 a header, 40,000 of `text`).

Long text is split across sections and posts, never cut silently: where something truly cannot
fit (a summary longer than a whole message) the cut is marked and says how much is missing."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from domain.ports import ConversationView, MessageView

SECTION_LIMIT = 3000
FIELD_LIMIT = 2000
HEADER_LIMIT = 150
OPTION_LIMIT = 75
BLOCKS_PER_MESSAGE = 50
TEXT_LIMIT = 39_000  # a post's `text` (Slack truncates past 40,000); kept under with room to spare
ELLIPSIS = "…"

STATE_LABEL = {
    "bot": ":robot_face: with the AI",
    "queued": ":hourglass_flowing_sand: waiting for a person",
    "claimed": ":bust_in_silhouette: claimed",
    "resolved": ":white_check_mark: resolved",
}
CHANNEL_LABEL = {"widget": "Web chat", "telegram": "Telegram"}
ROLE_LABEL = {
    "shopper": "Shopper",
    "agent": "Assistant",
    "human": "Team",
    "system": "System",
    "note": "Note",
}


def escape(text: str) -> str:
    """Slack's mrkdwn needs &, < and > escaped, or shopper text could @-mention the channel."""
    return (text or "").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def chunks(text: str, limit: int = SECTION_LIMIT) -> list[str]:
    """Split on a line, else a sentence, else a space, else hard; every character is kept."""
    out: list[str] = []
    while len(text) > limit:
        cut = text.rfind("\n", 0, limit)
        if cut < limit // 2:
            cut = text.rfind(". ", 0, limit - 1)
            cut = cut + 2 if cut >= limit // 2 else -1
        if cut < limit // 2:
            cut = text.rfind(" ", 0, limit)
            cut = cut + 1 if cut >= limit // 2 else limit
        out.append(text[:cut])
        text = text[cut:]
        if text.startswith("\n"):
            text = text[1:]
    if text or not out:
        out.append(text)
    return out


def clip(text: str, limit: int) -> str:
    """At most `limit` characters; a cut says how much is missing."""
    if len(text) <= limit:
        return text
    note = f"{ELLIPSIS} ({len(text) - limit + 40} more characters)"
    return text[: max(0, limit - len(note))] + note


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text or " "}}


def _field(title: str, body: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": clip(f"*{title}*\n{body}", FIELD_LIMIT)}


def slack_date(when: datetime | None) -> str:
    """A date Slack shows in each reader's own time zone (with a UTC fallback)."""
    if when is None:
        return "n/a"
    epoch = int(when.timestamp())
    return f"<!date^{epoch}^{{date_short_pretty}} {{time}}|{when:%Y-%m-%d %H:%M} UTC>"


def customer_line(conv: ConversationView) -> str:
    ctx = conv.context.get("customer") or {}
    c = conv.customer
    name = c.name or ctx.get("name") or (f"@{c.username}" if c.username else "Shopper")
    parts = [escape(str(name))]
    if c.username and c.name:
        parts.append(escape(f"@{c.username}"))
    parts.append(escape(str(c.email or ctx.get("email") or "no email")))
    tier = ctx.get("tier") or c.tier
    parts.append(escape(f"{tier} tier") if tier else "tier unknown")
    if ctx.get("lifetime_orders") is not None:
        parts.append(escape(f"{ctx['lifetime_orders']} orders"))
    return " · ".join(parts)


def _money(o: dict[str, Any]) -> str:
    if o.get("total") is None:
        return ""
    return f", {o['total']} {o.get('currency') or ''}".rstrip()


def context_lines(conv: ConversationView) -> str:
    """What the actions captured: orders with payment and stock, then each action's result."""
    lines = []
    owner = conv.context.get("order_owner")
    if isinstance(owner, dict):  # whose the order named is: never shown as the shopper
        bits = [str(owner.get("email") or "?")] + ([f"{owner['tier']} tier"] if owner.get("tier") else [])
        lines.append("• *order owner (not verified)*: " + escape(" · ".join(bits)))
    for o in conv.context.get("orders") or []:
        if not isinstance(o, dict):
            continue
        if o.get("lookup") not in (None, "ok"):
            lines.append(f"• *{escape(str(o.get('number')))}*: lookup {escape(str(o['lookup']))}")
            continue
        stock = ", ".join(escape(str(n)) for n in o.get("out_of_stock") or [])
        line = (
            f"• *{escape(str(o.get('number')))}*: {escape(str(o.get('status')))}, payment "
            f"*{escape(str(o.get('payment_status')))}*"
            + (f", sale {escape(str(o['sale']))}" if o.get("sale") else "")
            + escape(_money(o))
            + (f", out of stock: {stock}" if stock else "")
            + ("" if o.get("verified") else " _(identity not verified)_")
        )
        items = [
            f"{escape(str(i.get('name') or i.get('sku')))} ×{i.get('qty', 1)}"
            + (f" (stock {i['stock']})" if i.get("stock") is not None else "")
            for i in o.get("items") or []
            if isinstance(i, dict)
        ]
        if items:
            line += "\n    " + ", ".join(items)
        lines.append(line)
    actions = [a for a in conv.context.get("actions") or [] if isinstance(a, dict)]
    if actions:
        done = []
        for a in actions:
            status = str(a.get("status"))
            mark = ":white_check_mark:" if status == "ok" else ":warning:"
            err = f" ({escape(str(a['error']))})" if a.get("error") else ""
            done.append(f"{mark} {escape(str(a.get('action')))}: {escape(status)}{err}")
        lines.append("*Actions:* " + " · ".join(done))
    return "\n".join(lines)


def _status(conv: ConversationView) -> str:
    label = STATE_LABEL.get(conv.state, conv.state)
    if conv.owner and conv.state == "claimed":
        label += f" by {escape(conv.owner)}"
    return label


def _button(action: str, label: str, value: str, style: str | None = None) -> dict[str, Any]:
    b: dict[str, Any] = {
        "type": "button",
        "action_id": f"handoff_{action}",
        "text": {"type": "plain_text", "text": label},
        "value": value,
    }
    if style:
        b["style"] = style
    return b


def tag_value(conversation_id: int, tag: str) -> str:
    return json.dumps([conversation_id, tag])


def parent_blocks(
    conv: ConversationView, tag_names: list[str], emoji: dict[str, str], note_prefix: str = ";"
) -> tuple[str, list[dict[str, Any]]]:
    """The ticket: (fallback text, blocks). The fallback starts with `#<id> `."""
    tags = " ".join(f"{emoji.get(t, '')}`{t}`".strip() for t in conv.tags) or "none"
    c = conv.customer
    who = c.name or (f"@{c.username}" if c.username else "Shopper")
    header = clip(f"#{conv.id} · {who} · {', '.join(conv.tags) or 'handoff'}", HEADER_LIMIT)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": header, "emoji": True}},
        {
            "type": "section",
            "fields": [
                _field("Customer", customer_line(conv)),
                _field("Channel", escape(CHANNEL_LABEL.get(conv.channel, conv.channel))),
                _field("Status", _status(conv)),
                _field("Tags", tags),
                _field("Priority", f"P{conv.priority}"),
                _field("Handed off", slack_date(conv.handed_off_at)),
            ],
        },
    ]
    tail: list[dict[str, Any]] = []
    if conv.blocked:
        tail.append(
            _section(":no_entry: The shopper has blocked the bot; replies cannot reach them.")
        )
    tail.append({"type": "actions", "block_id": f"handoff:{conv.id}", "elements": _controls(conv, tag_names)})
    tail.append(
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": f"Reply in this thread to answer the shopper; start with `{escape(note_prefix)}` "
                    "for an internal note.",
                }
            ],
        }
    )
    reason = f"*Reason:* {escape(conv.reason or 'handoff')}"
    summary = escape(conv.summary or "")
    body = reason + (f"\n{summary}" if summary else "")
    ctx = context_lines(conv)
    room = BLOCKS_PER_MESSAGE - len(blocks) - len(tail)
    parts = chunks(body) + (chunks(ctx) if ctx else [])
    if len(parts) > room:
        missing = sum(len(p) for p in parts[room - 1 :])
        parts = parts[: room - 1] + [f"{ELLIPSIS} ({missing} more characters not shown)"]
    blocks.extend(_section(p) for p in parts)
    blocks.extend(tail)
    # The fallback is mrkdwn too (notifications, clients without blocks): escaped like the rest.
    fallback = clip(
        f"#{conv.id} {escape(', '.join(conv.tags) or 'handoff')}: {escape(conv.reason or 'handoff')} "
        f"({_status(conv)})",
        TEXT_LIMIT,
    )
    return fallback, blocks


def _controls(conv: ConversationView, tag_names: list[str]) -> list[dict[str, Any]]:
    value = str(conv.id)
    elements: list[dict[str, Any]] = []
    if conv.state == "claimed":
        elements.append(_button("release", "Release", value))
    else:
        elements.append(_button("claim", "Claim", value, "primary"))
    if conv.state != "resolved":
        elements.append(_button("resolve", "Resolve", value))
    if conv.state != "bot":
        elements.append(_button("bot", "Back to AI", value))
    names = list(dict.fromkeys([*tag_names, *conv.tags]))[:100]
    if names:
        elements.append(
            {
                "type": "static_select",
                "action_id": "handoff_tag",
                "placeholder": {"type": "plain_text", "text": "Add or remove a tag"},
                "options": [
                    {
                        "text": {
                            "type": "plain_text",
                            "text": clip(("✓ " if t in conv.tags else "") + t, OPTION_LIMIT),
                        },
                        "value": tag_value(conv.id, t),
                    }
                    for t in names
                ],
            }
        )
    return elements


def _who(data: dict[str, Any]) -> str:
    role = data.get("role", "")
    author = data.get("author")
    if role == "note":
        return f":memo: Note from {author}" if author else ":memo: Note"
    if role == "human" and author:
        return str(author)
    return ROLE_LABEL.get(role, role or "?")


def message_line(m: dict[str, Any] | MessageView) -> str:
    """One message as mrkdwn. A service notice (no message row: an SLA reminder) is our own
    mrkdwn and keeps its @-mentions; everything people typed is escaped."""
    data = m.as_json() if isinstance(m, MessageView) else m
    text = str(data.get("text", ""))
    if data.get("role") == "system" and not data.get("id"):
        return text
    if data.get("role") == "system":
        return f"_{escape(text)}_"
    return f"*{escape(_who(data))}:* {escape(text)}"


def message_post(m: dict[str, Any] | MessageView) -> dict[str, Any]:
    """The chat.postMessage arguments for one message: plain `text` when it fits, else sections
    carrying all of it (with the `text` fallback marked as cut)."""
    line = message_line(m)
    if len(line) <= TEXT_LIMIT:
        return {"text": line}
    parts = chunks(line)
    if len(parts) > BLOCKS_PER_MESSAGE:
        missing = sum(len(p) for p in parts[BLOCKS_PER_MESSAGE - 1 :])
        parts = parts[: BLOCKS_PER_MESSAGE - 1] + [
            f"{ELLIPSIS} ({missing} more characters: see the web inbox)"
        ]
    return {"text": clip(line, TEXT_LIMIT), "blocks": [_section(p) for p in parts]}


def history_posts(history: list[MessageView]) -> list[tuple[str, list[dict[str, Any]], int]]:
    """The history as few thread posts as the limits allow: (text, blocks, last message id).

    Each message is one or more sections; a post holds at most 50 sections and 39,000
    characters, so its `text` is exactly its blocks' text. A message too large for that gets a
    post of its own (up to 50 full sections, its `text` fallback marked as cut)."""
    out: list[tuple[str, list[dict[str, Any]], int]] = []
    sections: list[str] = []
    size = 0
    last_id = 0

    def flush() -> None:
        nonlocal sections, size
        if sections:
            out.append(("\n".join(sections), [_section(x) for x in sections], last_id))
        sections, size = [], 0

    for m in history:
        parts = chunks(message_line(m))
        need = sum(len(p) + 1 for p in parts)
        full = len(sections) + len(parts) > BLOCKS_PER_MESSAGE or size + need > TEXT_LIMIT
        if sections and full:
            flush()
        if len(parts) > BLOCKS_PER_MESSAGE or need > TEXT_LIMIT:
            post = message_post(m)
            last_id = m.id
            blocks = post.get("blocks") or [_section(p) for p in parts]
            out.append((post["text"], blocks, last_id))
            continue
        sections.extend(parts)
        size += need
        last_id = m.id
    flush()
    return out


# Kept for callers of the first version.
history_messages = history_posts
