"""Block Kit for the ticket: the thread's parent message and the history, within Slack's limits
(50 blocks a message, 3,000 characters a section, 2,000 a field, 150 a header, 40,000 of `text`).

The parent carries the conversation so far (`ticket`): opening a ticket is one post. What does
not fit is its beginning, which goes into the thread as few posts as the limits allow
(`history_posts`); the parent says how many messages are there.

Long text is split across sections and posts, never cut silently: where something truly cannot
fit (a summary longer than a whole message) the cut is marked and says how much is missing."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
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
# Kept free in a ticket when it opens, so an edit that adds a notice or a button row (a claim, a
# blocked shopper, an approval) still shows the same messages.
MARGIN_BLOCKS = 4
MARGIN_CHARS = 3000

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


@dataclass(frozen=True)
class Ticket:
    """The thread's parent message: its fallback text, its blocks, and which messages it shows
    (the most recent ones, `shown`; the `earlier` ones before them go into the thread)."""

    text: str
    blocks: list[dict[str, Any]]
    shown: list[MessageView]
    earlier: int


def ticket(
    conv: ConversationView,
    tag_names: list[str],
    emoji: dict[str, str],
    note_prefix: str = ";",
    history: Sequence[MessageView] = (),
    *,
    earlier: int = 0,
) -> Ticket:
    """The ticket with as much of `history` as fits inline (the most recent messages), so that
    opening it costs one post. The blocks are parts in order (header, fields, the reason and
    context, notices, actions, the conversation, the hint); each part is its own function, so
    a new part (an approval's buttons) is one more line in `parts`. `earlier`: messages before
    `history` that are already in the thread (an edit of a folded ticket)."""
    head = [_header(conv), _fields(conv, emoji)]
    tail = [
        *_notices(conv),
        *approval_blocks(conv),
        _actions(conv, tag_names),
        *correction_blocks(conv),
        _hint(note_prefix),
    ]
    body = _body(conv, room=BLOCKS_PER_MESSAGE - len(head) - len(tail))
    fixed = [*head, *body, *tail]
    # What the conversation may use: Slack's limits, less what the rest of the ticket takes and
    # a margin, so that an edit that adds a line or a block still fits the same messages.
    blocks_left = BLOCKS_PER_MESSAGE - len(fixed) - MARGIN_BLOCKS
    chars_left = TEXT_LIMIT - blocks_text_size(fixed) - MARGIN_CHARS
    sections, shown = fold(list(history), blocks_left - 1, chars_left - 200)
    folded = earlier + len(history) - len(shown)
    conversation: list[dict[str, Any]] = []
    if shown:
        conversation = [_conversation_title(len(shown), folded)] + [_section(x) for x in sections]
    # The fallback is mrkdwn too (notifications, clients without blocks): escaped like the rest.
    fallback = clip(
        f"#{conv.id} {escape(', '.join(conv.tags) or 'handoff')}: {escape(conv.reason or 'handoff')} "
        f"({_status(conv)})",
        TEXT_LIMIT,
    )
    parts = [*head, *body, *tail[:-1], *conversation, tail[-1]]
    return Ticket(fallback, parts, shown, folded)


def parent_blocks(
    conv: ConversationView,
    tag_names: list[str],
    emoji: dict[str, str],
    note_prefix: str = ";",
    history: Sequence[MessageView] = (),
) -> tuple[str, list[dict[str, Any]]]:
    """The ticket: (fallback text, blocks). The fallback starts with `#<id> `."""
    t = ticket(conv, tag_names, emoji, note_prefix, history)
    return t.text, t.blocks


def _header(conv: ConversationView) -> dict[str, Any]:
    c = conv.customer
    who = c.name or (f"@{c.username}" if c.username else "Shopper")
    header = clip(f"#{conv.id} · {who} · {', '.join(conv.tags) or 'handoff'}", HEADER_LIMIT)
    return {"type": "header", "text": {"type": "plain_text", "text": header, "emoji": True}}


def _fields(conv: ConversationView, emoji: dict[str, str]) -> dict[str, Any]:
    tags = " ".join(f"{emoji.get(t, '')}`{t}`".strip() for t in conv.tags) or "none"
    return {
        "type": "section",
        "fields": [
            _field("Customer", customer_line(conv)),
            _field("Channel", escape(CHANNEL_LABEL.get(conv.channel, conv.channel))),
            _field("Status", _status(conv)),
            _field("Tags", tags),
            _field("Priority", f"P{conv.priority}"),
            _field("Handed off", slack_date(conv.handed_off_at)),
        ],
    }


def _body(conv: ConversationView, room: int) -> list[dict[str, Any]]:
    """The reason, the summary and what the actions captured, in at most `room` sections."""
    reason = f"*Reason:* {escape(conv.reason or 'handoff')}"
    summary = escape(conv.summary or "")
    body = reason + (f"\n{summary}" if summary else "")
    ctx = context_lines(conv)
    parts = chunks(body) + (chunks(ctx) if ctx else [])
    if len(parts) > room:
        missing = sum(len(p) for p in parts[room - 1 :])
        parts = parts[: room - 1] + [f"{ELLIPSIS} ({missing} more characters not shown)"]
    return [_section(p) for p in parts]


def _notices(conv: ConversationView) -> list[dict[str, Any]]:
    if conv.blocked:
        return [_section(":no_entry: The shopper has blocked the bot; replies cannot reach them.")]
    return []


def _actions(conv: ConversationView, tag_names: list[str]) -> dict[str, Any]:
    return {"type": "actions", "block_id": f"handoff:{conv.id}", "elements": _controls(conv, tag_names)}


def correction_blocks(conv: ConversationView) -> list[dict[str, Any]]:
    """A "Wrong handoff" button on a handed-off ticket: the person says the handoff should not
    have happened, and the shopper's message becomes an example for review
    (core/corrections.py). Its own block, so the ticket's controls stay as they are."""
    if conv.handed_off_at is None:
        return []
    button = _button("wrong", "Wrong handoff", str(conv.id))
    button["confirm"] = {
        "title": {"type": "plain_text", "text": "Wrong handoff?"},
        "text": {
            "type": "plain_text",
            "text": "The shopper's message is kept as an example of a chat the assistant should "
            "have handled itself, for review before it teaches anything.",
        },
        "confirm": {"type": "plain_text", "text": "Mark as wrong"},
        "deny": {"type": "plain_text", "text": "Cancel"},
    }
    return [{"type": "actions", "block_id": f"handoff-correct:{conv.id}", "elements": [button]}]


# Prepared writes (core/approvals.py) on the ticket: what each will do, with Approve and Deny
# while it waits, then who decided and what the store's API answered.
MAX_PREPARED = 5  # per ticket (each is at most two blocks); more are counted, not shown
APPROVAL_STATE = {
    "prepared": ":hourglass_flowing_sand: *Waiting for approval*",
    "approved": ":gear: *Approved*",
    "done": ":white_check_mark: *Done*",
    "failed": ":x: *Failed*",
    "denied": ":no_entry_sign: *Denied*",
    "expired": ":heavy_minus_sign: *Replaced by a later handoff*",
    "not_prepared": ":warning: *Not prepared*",
}
ERROR_LIMIT = 500


def approval_value(conversation_id: int, prepared_id: int) -> str:
    """An Approve or Deny button's value: the conversation and the prepared action's id."""
    return json.dumps([conversation_id, prepared_id])


def approval_text(conv: ConversationView, entry: dict[str, Any]) -> str:
    """One prepared write as mrkdwn: its state, what it does (amount, order), who decided."""
    state = str(entry.get("state") or "prepared")
    head = APPROVAL_STATE.get(state, f"*{escape(state)}*")
    if entry.get("seq"):
        head += f" · `#{conv.id}:{entry['seq']}`"
    what = escape(str(entry.get("summary") or entry.get("label") or entry.get("action") or "?"))
    lines = [head, f"*{what}*" if state != "expired" else f"~{what}~"]
    params = entry.get("params") if isinstance(entry.get("params"), dict) else {}
    bits = [escape(str(entry.get("label") or entry.get("action") or ""))]
    if entry.get("order"):
        bits.append(f"order {escape(str(entry['order']))}")
    if params.get("amount") is not None:
        amount = params["amount"]
        shown = f"{amount:.2f}" if isinstance(amount, int | float) else str(amount)
        bits.append(escape(f"amount {shown} {params.get('currency') or ''}".rstrip()))
    bits += [escape(str(n)) for n in entry.get("notes") or []]
    lines.append("_" + " · ".join(b for b in bits if b) + "_")
    by = escape(str(entry.get("by") or "someone"))
    error = escape(clip(str(entry.get("error") or ""), ERROR_LIMIT))
    if state == "approved":
        tries = int(entry.get("attempts") or 0)
        line = f"Approved by *{by}*: running"
        if error:
            line += f" (attempt {tries} of {entry.get('max_attempts') or '?'} failed: {error}; retrying)"
        lines.append(line)
    elif state == "done":
        result = escape(str(entry.get("result") or ""))
        lines.append(f"Approved by *{by}*." + (f" The store's API answered: {result}" if result else ""))
    elif state == "failed":
        lines.append(f"Approved by *{by}*. The store's API said: {error or 'failed'}")
    elif state == "denied":
        lines.append(f"Denied by *{by}*: {escape(clip(str(entry.get('note') or ''), ERROR_LIMIT))}")
    elif state == "not_prepared":
        problems = "; ".join(str(p) for p in entry.get("problems") or [])
        lines.append(escape(clip(problems, ERROR_LIMIT)) + " (do it by hand in the store's admin)")
    return clip("\n".join(lines), SECTION_LIMIT)


def approval_blocks(conv: ConversationView) -> list[dict[str, Any]]:
    """The ticket's prepared writes: a section each, with Approve and Deny while it waits."""
    entries = [e for e in conv.context.get("prepared") or [] if isinstance(e, dict)]
    out: list[dict[str, Any]] = []
    for entry in entries[:MAX_PREPARED]:
        out.append(_section(approval_text(conv, entry)))
        pid = entry.get("id")
        if entry.get("state") == "prepared" and isinstance(pid, int):
            value = approval_value(conv.id, pid)
            out.append(
                {
                    "type": "actions",
                    "block_id": f"handoff-approval:{conv.id}:{pid}",
                    "elements": [
                        _button("approve", "Approve", value, "primary"),
                        _button("deny", "Deny", value, "danger"),
                    ],
                }
            )
    if len(entries) > MAX_PREPARED:
        more = len(entries) - MAX_PREPARED
        out.append(
            _section(f"…and {more} more prepared: see the web inbox, or `/handoff approve #{conv.id}:N`.")
        )
    return out


def _hint(note_prefix: str) -> dict[str, Any]:
    return {
        "type": "context",
        "elements": [
            {
                "type": "mrkdwn",
                "text": f"Reply in this thread to answer the shopper; start with `{escape(note_prefix)}` "
                "for an internal note.",
            }
        ],
    }


def _conversation_title(shown: int, earlier: int) -> dict[str, Any]:
    text = "*The conversation so far*" if not earlier else (
        f"*The conversation*: the last {shown} messages; "
        f"{earlier} earlier {'message is' if earlier == 1 else 'messages are'} in the thread"
    )
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


def blocks_text_size(blocks: list[dict[str, Any]]) -> int:
    """Characters of text in `blocks` (sections, fields, headers, context, button labels)."""
    total = 0

    def walk(node: Any) -> None:
        nonlocal total
        if isinstance(node, dict):
            if node.get("type") in ("mrkdwn", "plain_text") and isinstance(node.get("text"), str):
                total += len(node["text"])
            for v in node.values():
                if isinstance(v, dict | list):
                    walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(blocks)
    return total


def fold(
    history: list[MessageView], blocks_left: int, chars_left: int
) -> tuple[list[str], list[MessageView]]:
    """The most recent messages that fit in `blocks_left` sections and `chars_left` characters:
    (section texts in order, the messages shown). Short messages share a section (a line each),
    so a typical chat of a dozen messages is a section or two; a message longer than a section
    gets sections of its own. Messages are taken newest first up to the first that does not
    fit, so what is shown is the end of the conversation and what is not is its beginning."""
    # (text, takes more lines), in order: built from the newest back, so each goes in front.
    sections: list[tuple[str, bool]] = []
    shown: list[MessageView] = []
    size = 0
    for m in reversed(history):
        line = message_line(m)
        parts = chunks(line)
        first = sections[0] if sections else None
        joins = (
            len(parts) == 1
            and first is not None
            and first[1]
            and len(line) + 1 + len(first[0]) <= SECTION_LIMIT
        )
        need_blocks = 0 if joins else len(parts)
        need_chars = len(line) + 1 if joins else sum(len(p) for p in parts)
        if len(sections) + need_blocks > blocks_left or size + need_chars > chars_left:
            break
        if joins:
            assert first is not None
            sections[0] = (line + "\n" + first[0], True)
        else:
            sections[0:0] = [(p, len(parts) == 1) for p in parts]
        size += need_chars
        shown.append(m)
    shown.reverse()
    return [text for text, _ in sections], shown


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
