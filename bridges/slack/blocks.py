"""Block Kit for the ticket: the thread's parent message and the history, within Slack's limits
(50 blocks a message, 3,000 characters a section, 150 a header). Long text is split across
sections and messages, never cut silently."""

from __future__ import annotations

import json
from typing import Any

from bot.ports import ConversationView, MessageView

SECTION_LIMIT = 3000
HEADER_LIMIT = 150
BLOCKS_PER_MESSAGE = 50
STATE_LABEL = {
    "bot": "with the AI",
    "queued": "waiting for a person",
    "claimed": "claimed",
    "resolved": "resolved",
}
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
    """Split on line, then sentence, then hard bounds; every character is kept."""
    out: list[str] = []
    while len(text) > limit:
        cut = text.rfind("\n", 0, limit)
        if cut < limit // 2:
            cut = text.rfind(". ", 0, limit)
            cut = cut + 1 if cut >= limit // 2 else limit
        out.append(text[:cut])
        text = text[cut:].lstrip("\n")
    if text:
        out.append(text)
    return out


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def customer_line(conv: ConversationView) -> str:
    ctx = conv.context.get("customer") or {}
    c = conv.customer
    name = c.name or (f"@{c.username}" if c.username else "Shopper")
    email = c.email or ctx.get("email") or "no email"
    tier = ctx.get("tier") or c.tier or "unknown tier"
    return f"{escape(name)} · {escape(email)} · {escape(str(tier))}"


def context_lines(conv: ConversationView) -> str:
    lines = []
    for o in conv.context.get("orders") or []:
        stock = ", ".join(f"{escape(str(n))} out of stock" for n in o.get("out_of_stock") or [])
        line = (
            f"• *{escape(str(o.get('number')))}*: {escape(str(o.get('status')))}, payment "
            f"{escape(str(o.get('payment_status')))}"
            + (f", sale {escape(str(o['sale']))}" if o.get("sale") else "")
            + (f", {o.get('total')} {o.get('currency', '')}" if o.get("total") is not None else "")
            + (f", {stock}" if stock else "")
            + ("" if o.get("verified") else " _(identity not verified)_")
        )
        lines.append(line)
    actions = conv.context.get("actions") or []
    if actions:
        lines.append(
            "Actions: "
            + ", ".join(
                f"{escape(str(a.get('action')))} → {escape(str(a.get('status')))}" for a in actions
            )
        )
    return "\n".join(lines)


def parent_blocks(
    conv: ConversationView, tag_names: list[str], emoji: dict[str, str]
) -> tuple[str, list[dict[str, Any]]]:
    tags = " ".join(f"{emoji.get(t, '')}`{t}`".strip() for t in conv.tags) or "none"
    status = STATE_LABEL.get(conv.state, conv.state) + (
        f" by {escape(conv.owner)}" if conv.owner else ""
    )
    header = f"#{conv.id} · {', '.join(conv.tags) or 'handoff'}"[:HEADER_LIMIT]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": header}},
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": f"*Customer*\n{customer_line(conv)}"},
                {"type": "mrkdwn", "text": f"*Channel*\n{escape(conv.channel)}"},
                {"type": "mrkdwn", "text": f"*Status*\n{status}"},
                {"type": "mrkdwn", "text": f"*Tags*\n{tags}"},
            ],
        },
    ]
    about = "\n".join(
        x
        for x in (f"*Reason:* {escape(conv.reason or '')}", escape(conv.summary or ""))
        if x.strip()
    )
    for part in chunks(about)[:3]:
        blocks.append(_section(part))
    ctx = context_lines(conv)
    for part in chunks(ctx)[:3] if ctx else []:
        blocks.append(_section(part))
    if conv.blocked:
        blocks.append(
            _section(":no_entry: The shopper has blocked the bot; replies cannot reach them.")
        )
    buttons: list[dict[str, Any]] = []
    value = str(conv.id)
    if conv.state != "claimed":
        buttons.append(
            {
                "type": "button",
                "action_id": "handoff_claim",
                "text": {"type": "plain_text", "text": "Claim"},
                "value": value,
                "style": "primary",
            }
        )
    else:
        buttons.append(
            {
                "type": "button",
                "action_id": "handoff_release",
                "text": {"type": "plain_text", "text": "Release"},
                "value": value,
            }
        )
    if conv.state != "resolved":
        buttons.append(
            {
                "type": "button",
                "action_id": "handoff_resolve",
                "text": {"type": "plain_text", "text": "Resolve"},
                "value": value,
            }
        )
    if conv.state != "bot":
        buttons.append(
            {
                "type": "button",
                "action_id": "handoff_bot",
                "text": {"type": "plain_text", "text": "Back to AI"},
                "value": value,
            }
        )
    options = [
        {
            "text": {"type": "plain_text", "text": (("✓ " if t in conv.tags else "") + t)[:75]},
            "value": json.dumps([conv.id, t]),
        }
        for t in tag_names[:100]
    ]
    if options:
        buttons.append(
            {
                "type": "static_select",
                "action_id": "handoff_tag",
                "placeholder": {"type": "plain_text", "text": "Add or remove a tag"},
                "options": options,
            }
        )
    blocks.append({"type": "actions", "block_id": f"handoff:{conv.id}", "elements": buttons})
    fallback = f"#{conv.id} {', '.join(conv.tags)}: {conv.reason or 'handoff'} ({status})"
    return fallback, blocks


def message_line(m: dict[str, Any] | MessageView) -> str:
    data = m.as_json() if isinstance(m, MessageView) else m
    role = data.get("role", "")
    who = (
        data.get("author")
        if role in ("human", "note") and data.get("author")
        else ROLE_LABEL.get(role, role)
    )
    return f"*{escape(str(who))}:* {escape(data.get('text', ''))}"


def history_messages(history: list[MessageView]) -> list[tuple[str, list[dict[str, Any]], int]]:
    """The history as few thread posts as the limits allow: (text, blocks, last message id).
    A message longer than one section is split across sections but never across posts."""
    out: list[tuple[str, list[dict[str, Any]], int]] = []
    sections: list[str] = []
    last_id = 0
    for m in history:
        parts = chunks(message_line(m))
        if sections and len(sections) + len(parts) > BLOCKS_PER_MESSAGE:
            out.append(("\n".join(sections)[:39000], [_section(x) for x in sections], last_id))
            sections = []
        sections.extend(parts[:BLOCKS_PER_MESSAGE])
        last_id = m.id
    if sections:
        out.append(("\n".join(sections)[:39000], [_section(x) for x in sections], last_id))
    return out
