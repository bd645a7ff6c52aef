"""Correction that teaches: a person's retag or "wrong handoff" becomes a labelled example.

When someone in an inbox says the agent's handoff was wrong (`wrong`), or changes the tags the
rules put on (`tag -human-requested +cancellation`), the shopper message that produced the handoff
is recorded with the intent it should have been read as. Nothing changes the agent at once: the
example waits for review (`handoff examples list|accept|reject`), and accepted ones are merged
into the classifier's examples at the next start (bot/app.py) and by `handoff eval`.

Which intent a tag stands for is read from the store's own rule pack, not from a table here: a
tag means intent X when a rule that puts the tag on cannot match unless X is among the intents
(`'cancel' in intents`, `'cancel' in order.intents`, joined by `and` to anything else). A rule
whose intents are alternatives (`'fraud' in intents or 'identity' in intents`) makes the tag mean
either, the first named being the label and the others kept as alternatives for the reviewer.
A rule that can match without any intent (`order.payment_status == 'failed'`, `orders or 'human'
in intents`) says nothing about the shopper's words, so its tags teach nothing.

The label of a correction:
- `wrong`: 'none' (the message asked for nothing a person was needed for);
- a tag a person put on whose intent the agent had not found: that intent (whichever step of
  the retag it came in: "+cancellation" then "-human-requested" is one correction);
- a tag removed whose intent the agent had found: 'none', unless the agent found another intent
  besides, or another tag of that intent stays (the message still asks for something, so
  calling it 'none' would teach a falsehood);
- putting back a tag the agent's reading put on: withdraws what the retag had recorded;
- anything else (a routing tag like `vip`, a tag whose intent the agent already found): nothing.

The message is the one whose turn produced the handoff, except that a short answer to the agent's
own question hands the label back to the message before that question: "yes please" after the
offer of a person, or just the order number the rules asked for, carries the request made before.
Texts are the stored ones, already masked (card numbers never reach this table); a note a person
adds is masked the same way."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jinja2 import nodes
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.masking import mask_sensitive
from domain.ports import MessageView
from domain.storeconfig import StoreConfig
from domain.templating import ENV
from storage import repo
from storage.models import Conversation, LabelledExample, utcnow

NONE = "none"
STATUSES = ("pending", "accepted", "rejected", "superseded")
# What the inboxes add to a command's answer when a correction became an example.
LEARNED = "waits for review as an example"
# An answer to the agent's prompt with at most this many other words is only the value asked for.
SHORT_ANSWER_WORDS = 3
_WORD = re.compile(r"\w+")
_EMAIL = re.compile(r"[\w.%+-]+@[\w.-]+\.[A-Za-z]{2,}")


# ------------------------------------------------------------------ tags -> intents


def _intent_test(node: nodes.Node) -> str | None:
    """`'x' in intents` or `'x' in order.intents`: the intent named, else None."""
    if not isinstance(node, nodes.Compare) or len(node.ops) != 1 or node.ops[0].op != "in":
        return None
    left, right = node.expr, node.ops[0].expr
    if not isinstance(left, nodes.Const) or not isinstance(left.value, str):
        return None
    if isinstance(right, nodes.Name) and right.name == "intents":
        return left.value
    if isinstance(right, nodes.Getattr) and right.attr == "intents":
        return left.value
    return None


def required_intents(node: nodes.Node) -> tuple[str, ...] | None:
    """The intents of which at least one must have been found for the condition to hold, or
    None when it can hold without any (then it says nothing about the shopper's words)."""
    name = _intent_test(node)
    if name is not None:
        return (name,)
    if isinstance(node, nodes.And):
        left, right = required_intents(node.left), required_intents(node.right)
        return left if left is not None else right
    if isinstance(node, nodes.Or):
        left, right = required_intents(node.left), required_intents(node.right)
        if left is None or right is None:
            return None
        return tuple(dict.fromkeys(left + right))
    return None


def condition_intents(expression: str) -> tuple[str, ...] | None:
    """`required_intents` of a rule pack's condition (a Jinja2 expression)."""
    try:
        tree = ENV.parse("{{ " + expression + " }}")
    except Exception:  # a condition the config check let through but this cannot read
        return None
    output = tree.body[0] if tree.body else None
    if not isinstance(output, nodes.Output) or len(output.nodes) != 1:
        return None
    return required_intents(output.nodes[0])


def tag_intents(config: StoreConfig, known: Iterable[str] | None = None) -> dict[str, tuple[str, ...]]:
    """Each tag the rules put on because of the shopper's words, with the intents it stands for,
    in rule-pack order. `known`: the classifier's intents; others named in a rule are ignored."""
    allowed = set(known) if known is not None else None
    out: dict[str, list[str]] = {}
    for rule_set in config.rule_sets:
        outer = condition_intents(rule_set.applies_if)
        for rule in rule_set.rules:
            need = condition_intents(rule.if_) or outer
            if not need:
                continue
            names = [n for n in need if allowed is None or n in allowed]
            for tag in rule.tags:
                have = out.setdefault(tag, [])
                have.extend(n for n in names if n not in have)
    return {tag: tuple(names) for tag, names in out.items() if names}


# ------------------------------------------------------------------ which message, which label


@dataclass(frozen=True)
class Prompts:
    """The agent's own questions whose answers carry the request made before them."""

    offer: str = ""  # the offer of a person: any answer to it hands back
    values: tuple[str, ...] = ()  # prompts for an order number or email: short answers hand back
    entity_patterns: tuple[str, ...] = ()

    @classmethod
    def of(cls, config: StoreConfig) -> Prompts:
        m = config.messages
        asked = [e.prompt for e in config.entities.values() if e.prompt] + [m.ask_order, m.ask_email]
        return cls(
            offer=m.offer_human.strip(),
            values=tuple(dict.fromkeys(p.strip() for p in asked if p.strip())),
            entity_patterns=tuple(e.pattern for e in config.entities.values()),
        )

    def _bare_words(self, text: str) -> int:
        for pattern in self.entity_patterns:
            try:
                text = re.sub(pattern, " ", text, flags=re.IGNORECASE)
            except re.error:
                continue
        return len(_WORD.findall(_EMAIL.sub(" ", text)))

    def hands_back(self, agent_text: str, answer: str) -> bool:
        said = agent_text.strip()
        if self.offer and said.endswith(self.offer):
            return True
        return any(said.endswith(p) for p in self.values) and (
            self._bare_words(answer) <= SHORT_ANSWER_WORDS
        )


def turn_message(history: Sequence[MessageView], handoff_at: datetime) -> MessageView | None:
    """The shopper message whose turn produced the handoff at `handoff_at`: the one the agent's
    reply in that turn answered (`reply_to`), else the last shopper message before that reply."""
    reply = next(
        (m for m in reversed(history) if m.role == "agent" and m.created_at <= handoff_at), None
    )
    if reply is not None and isinstance(reply.meta.get("reply_to"), int):
        found = next((m for m in history if m.id == reply.meta["reply_to"]), None)
        if found is not None:
            return found
    limit = reply.id if reply is not None else None
    return next(
        (
            m
            for m in reversed(history)
            if m.role == "shopper"
            and m.created_at <= handoff_at
            and (limit is None or m.id < limit)
        ),
        None,
    )


def request_message(
    history: Sequence[MessageView], handoff_at: datetime, prompts: Prompts
) -> MessageView | None:
    """The message that carries the request behind the handoff (see the module's docstring)."""
    message = turn_message(history, handoff_at)
    for _ in range(3):
        if message is None:
            return None
        earlier = [m for m in history if m.id < message.id and m.role in ("agent", "shopper")]
        asked = earlier[-1] if earlier and earlier[-1].role == "agent" else None
        if asked is None or not prompts.hands_back(asked.text, message.text):
            break
        before = next((m for m in reversed(earlier) if m.role == "shopper"), None)
        if before is None:
            break
        message = before
    return message


@dataclass(frozen=True)
class Label:
    label: str
    alternatives: tuple[str, ...] = ()


def retag_label(
    tag_map: dict[str, tuple[str, ...]],
    found: Iterable[str],
    removed: Sequence[str],
    tags_now: Sequence[str],
    by_people: Iterable[str],
) -> Label | None:
    """The label the conversation's tags now give the request message (the rules are in the
    module's docstring). `by_people`: the tags people put on (this change's included), so the
    steps of one correction ("+cancellation", then "-human-requested") add up to one label."""
    found_set, people = set(found), set(by_people)
    for tag in tags_now:
        names = tag_map.get(tag, ())
        if tag in people and names and not found_set.intersection(names):
            return Label(names[0], names[1:])
    taken_off = {n for t in removed for n in tag_map.get(t, ())}
    if not found_set & taken_off or found_set - taken_off:
        return None  # not the agent's reading, or it also read requests nobody disputed
    still = [t for t in tags_now if found_set.intersection(tag_map.get(t, ()))]
    return None if still else Label(NONE)


# ------------------------------------------------------------------ the service


@dataclass
class Outcome:
    """What a correction did, for the person who made it."""

    text: str
    example_id: int | None = None


@dataclass
class Corrections:
    """Built once from the store's config (bot/app.py); an empty one still records `wrong`."""

    tag_map: dict[str, tuple[str, ...]] = field(default_factory=dict)
    prompts: Prompts = field(default_factory=Prompts)
    mask_patterns: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, config: StoreConfig, known: Iterable[str] | None = None) -> Corrections:
        return cls(tag_intents(config, known), Prompts.of(config), tuple(config.mask_patterns))

    async def _request(self, s: AsyncSession, conv: Conversation) -> MessageView | None:
        """The request message of the agent's latest handoff, None if the agent never handed
        this conversation off (a person took it over from the AI)."""
        event = await repo.last_agent_handoff(s, conv.id)
        if event is None:
            return None
        history = await repo.history(s, conv.id, include_notes=False)
        return request_message(history, event.at, self.prompts)

    async def wrong(self, s: AsyncSession, conv: Conversation, actor: str, note: str) -> Outcome | None:
        """`wrong`: the handoff should not have happened. None: the agent never handed it off."""
        message = await self._request(s, conv)
        if message is None:
            return None
        return await self._record(s, conv, message, Label(NONE), "wrong", [], actor, note)

    async def after_retag(
        self, s: AsyncSession, conv: Conversation, added: list[str], removed: list[str], actor: str
    ) -> Outcome | None:
        """A tag change on a handoff the agent made: an example when it implies a label. Putting
        back a tag the agent's own reading put on withdraws what an earlier retag recorded."""
        if not added and not removed:
            return None
        found = set((conv.context or {}).get("intents") or [])
        tags_now = await repo.tags_of(s, conv.id)
        label = retag_label(
            self.tag_map, found, removed, tags_now, await repo.tags_put_on_by_people(s, conv.id)
        )
        restored = any(found.intersection(self.tag_map.get(t, ())) for t in added)
        if label is None and not restored:
            return None
        message = await self._request(s, conv)
        if message is None:
            return None
        if label is None:
            for old in await repo.examples_of_message(s, message.id):
                if old.status == "pending" and old.cause == "retag":
                    old.status = "superseded"
            return None
        change = [f"-{t}" for t in removed] + [f"+{t}" for t in added]
        return await self._record(s, conv, message, label, "retag", change, actor, "")

    async def _record(
        self,
        s: AsyncSession,
        conv: Conversation,
        message: MessageView,
        label: Label,
        cause: str,
        change: list[str],
        actor: str,
        note: str,
    ) -> Outcome:
        """One example per message and label; a new label for the same message replaces a
        pending one (the latest correction stands), never an accepted or rejected one."""
        for old in await repo.examples_of_message(s, message.id):
            if old.label == label.label and old.status in ("pending", "accepted"):
                return Outcome(
                    f"The shopper's message is already example #{old.id} of '{old.label}' "
                    f"({old.status}).",
                    old.id,
                )
            if old.status == "pending":
                old.status = "superseded"
        note = mask_sensitive(note.strip(), self.mask_patterns)[:1000]
        row = await repo.add_example(
            s,
            text=message.text,
            label=label.label,
            alternatives=list(label.alternatives),
            cause=cause,
            change=change,
            note=note or None,
            conversation_id=conv.id,
            message_id=message.id,
            actor=actor,
        )
        also = f" (or {', '.join(label.alternatives)})" if label.alternatives else ""
        quoted = message.text if len(message.text) <= 80 else message.text[:77] + "..."
        return Outcome(
            f"\u201c{quoted}\u201d {LEARNED} of '{label.label}'{also}: #{row.id} "
            "(`handoff examples list`).",
            row.id,
        )


# ------------------------------------------------------------------ review (the CLI)


@dataclass(frozen=True)
class ExampleView:
    id: int
    text: str
    label: str
    alternatives: tuple[str, ...]
    status: str
    cause: str
    change: tuple[str, ...]
    note: str | None
    conversation_id: int
    actor: str
    created_at: datetime
    reviewed_by: str | None

    @classmethod
    def of(cls, row: LabelledExample) -> ExampleView:
        return cls(
            row.id,
            row.text,
            row.label,
            tuple(row.alternatives or ()),
            row.status,
            row.cause,
            tuple(row.change or ()),
            row.note,
            row.conversation_id,
            row.actor,
            row.created_at,
            row.reviewed_by,
        )


async def list_examples(
    sessions: async_sessionmaker[AsyncSession], status: str | None = None
) -> list[ExampleView]:
    async with sessions() as s:
        return [ExampleView.of(r) for r in await repo.list_examples(s, status)]


async def review(
    sessions: async_sessionmaker[AsyncSession],
    ids: Sequence[int],
    status: str,
    by: str,
    label: str | None = None,
) -> tuple[list[int], list[int]]:
    """Accept or reject examples (accepting may relabel, `label`); (changed, not found)."""
    if status not in ("accepted", "rejected"):
        raise ValueError(f"a review accepts or rejects, not {status!r}")
    changed, missing = [], []
    async with sessions() as s, s.begin():
        for example_id in ids:
            row = await s.get(LabelledExample, example_id)
            if row is None:
                missing.append(example_id)
                continue
            row.status = status
            if label is not None and status == "accepted":
                row.label = label
            row.reviewed_by = by
            row.reviewed_at = utcnow()
            changed.append(example_id)
    return changed, missing


async def training_examples(
    sessions: async_sessionmaker[AsyncSession], *, pending: bool = False
) -> dict[str, list[str]]:
    """Accepted examples by intent, oldest first: what joins the classifier at start. With
    `pending`, those awaiting review too (a dry run: `eval --replay --with-pending`)."""
    statuses = ("accepted", "pending") if pending else ("accepted",)
    out: dict[str, list[str]] = {}
    async with sessions() as s:
        for label, text in await repo.examples_by_label(s, statuses):
            out.setdefault(label, []).append(text)
    return out


def example_json(e: ExampleView) -> dict[str, Any]:
    return {
        "id": e.id,
        "text": e.text,
        "label": e.label,
        "alternatives": list(e.alternatives),
        "status": e.status,
        "cause": e.cause,
        "change": list(e.change),
        "note": e.note,
        "conversation_id": e.conversation_id,
        "actor": e.actor,
        "created_at": e.created_at.isoformat(),
        "reviewed_by": e.reviewed_by,
    }
