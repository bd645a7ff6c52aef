"""`handoff eval --replay SINCE`: the dry run before a rule or example change.

The conversations the store had since then are played again, shopper turn by shopper turn, through
the current YAML, the current examples and the real core, and every conversation whose handoff
would end differently is printed, before -> after. What "before" was is read from the record:
whether and at which shopper turn the agent handed off, with which tags. Only the agent's part of
a conversation is replayed: the turns up to its first handoff (or until a person took over);
what the shopper wrote to a person afterwards was never the agent's to read.

The store's API is not called: a stub answers each lookup with what the stored lookup captured
then (the agent's replies keep what their actions returned), and with "not found" for one never
made. So a replay shows what the rules and examples change, not what the shop's data did since."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agent.actions import ActionResult, ActionRunner
from agent.knowledge import KnowledgeBase
from agent.offline import OfflineAgent
from bot.examples import classifier_with, count
from core.corrections import turn_message
from core.lifecycle import Core
from core.live import LiveHub
from domain.ports import MessageView
from domain.storeconfig import StoreConfig
from storage import repo
from storage.db import make_engine, make_sessionmaker
from storage.migrate import upgrade_async
from storage.models import Conversation, Customer, StateEvent


@dataclass(frozen=True)
class Outcome:
    """How the agent's part of a conversation ended."""

    handed_off: bool
    turn: int | None = None  # the shopper turn that produced the handoff (1-based)
    tags: tuple[str, ...] = ()

    def describe(self) -> str:
        if not self.handed_off:
            return "not handed off"
        return f"handed off at turn {self.turn} [{', '.join(sorted(self.tags)) or 'no tags'}]"

    def as_json(self) -> dict[str, Any]:
        return {"handed_off": self.handed_off, "turn": self.turn, "tags": sorted(self.tags)}


@dataclass
class Stored:
    """A stored conversation as the replay needs it."""

    id: int
    channel: str
    customer: dict[str, str | None]
    turns: list[str]
    before: Outcome
    team_tags: tuple[str, ...]  # the tags it carries now, after people changed them
    lookups: dict[str, ActionResult] = field(default_factory=dict)


@dataclass
class Replayed:
    id: int
    turns: list[str]
    before: Outcome
    after: Outcome
    team_tags: tuple[str, ...]

    @property
    def changed(self) -> bool:
        b, a = self.before, self.after
        return b.handed_off != a.handed_off or b.turn != a.turn or set(b.tags) != set(a.tags)


@dataclass
class ReplayReport:
    since: datetime
    examples: int
    conversations: list[Replayed] = field(default_factory=list)

    @property
    def changed(self) -> list[Replayed]:
        return [c for c in self.conversations if c.changed]

    def render(self) -> str:
        n = len(self.conversations)
        lines = [
            f"Replayed {n} conversation{'s' if n != 1 else ''} started since "
            f"{self.since:%Y-%m-%d %H:%M} UTC through the current rules and examples "
            f"({self.examples} labelled example{'s' if self.examples != 1 else ''} from the "
            "database; shop data: what the stored lookups captured).",
        ]
        changed = self.changed
        if not changed:
            lines.append("Nothing would change.")
            return "\n".join(lines)
        lines.append(f"{len(changed)} would change (before -> after):")
        for c in changed:
            lines.append(f"  #{c.id}: {c.before.describe()} -> {c.after.describe()}")
            agent_tags = set(c.before.tags) if c.before.handed_off else set()
            if c.team_tags and set(c.team_tags) != agent_tags:
                lines.append(f"      the team's tags now: {', '.join(c.team_tags)}")
            last = max(c.before.turn or 0, c.after.turn or 0) or len(c.turns)
            for i, text in enumerate(c.turns[:last], 1):
                clipped = text.replace("\n", " / ")
                clipped = clipped if len(clipped) <= 120 else clipped[:117] + "..."
                lines.append(f"      turn {i}: {clipped}")
        lines.append(f"{n - len(changed)} unchanged.")
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat(),
            "examples": self.examples,
            "replayed": len(self.conversations),
            "changed": [
                {
                    "id": c.id,
                    "before": c.before.as_json(),
                    "after": c.after.as_json(),
                    "team_tags": list(c.team_tags),
                    "turns": c.turns,
                }
                for c in self.changed
            ],
        }


def _key(action: str, inputs: dict[str, Any]) -> str:
    return json.dumps([action, inputs], sort_keys=True, default=str)


class RecordedShop(ActionRunner):
    """The store's API as it answered then: each lookup's stored capture, else "not found"."""

    def __init__(self, config: StoreConfig) -> None:
        super().__init__(config, "http://replay.invalid")
        self.answers: dict[str, ActionResult] = {}

    async def run(self, name: str, inputs: dict[str, Any]) -> ActionResult:
        found = self.answers.get(_key(name, inputs))
        if found is None:
            return ActionResult(name, dict(inputs), "not_found")
        return ActionResult(name, dict(inputs), found.status, dict(found.captured), found.error)


def _lookups(history: list[MessageView], context: dict[str, Any]) -> dict[str, ActionResult]:
    runs = [a for m in history if m.role == "agent" for a in m.meta.get("actions") or []]
    runs += list(context.get("actions") or [])
    out: dict[str, ActionResult] = {}
    for a in runs:
        if isinstance(a, dict) and a.get("action") and isinstance(a.get("inputs"), dict):
            out.setdefault(
                _key(str(a["action"]), a["inputs"]),
                ActionResult(
                    str(a["action"]),
                    dict(a["inputs"]),
                    str(a.get("status") or "ok"),
                    dict(a.get("captured") or {}),
                    a.get("error"),
                ),
            )
    return out


def _agent_part(
    history: list[MessageView], events: list[StateEvent]
) -> tuple[list[MessageView], StateEvent | None]:
    """The shopper messages the agent read before the conversation first left it, and the
    agent's handoff that ended them (None: never handed off, or a person took over)."""
    shopper = [m for m in history if m.role == "shopper"]
    left = next((e for e in events if e.kind == "state" and e.old == "bot"), None)
    if left is None:
        return shopper, None
    if left.actor == "agent" and left.new == "queued":
        trigger = turn_message(history, left.at)
        if trigger is not None:
            return [m for m in shopper if m.id <= trigger.id], left
    return [m for m in shopper if m.created_at < left.at], None


async def load_stored(s: AsyncSession, cid: int) -> Stored | None:
    conv = await s.get(Conversation, cid)
    if conv is None:
        return None
    customer = await s.get(Customer, conv.customer_id)
    history = await repo.history(s, cid, include_notes=False)
    events = await repo.state_events(s, cid)
    turns, handoff = _agent_part(history, events)
    if not turns:
        return None
    before = Outcome(False)
    if handoff is not None:
        later = [
            e.at
            for e in events
            if e.id > handoff.id and e.actor == "agent" and e.new == "queued"
        ]
        until = later[0] if later else None
        tags = [
            t.tag
            for t in await repo.tag_events(s, cid)
            if t.actor == "agent"
            and t.action == "add"
            and t.at >= handoff.at
            and (until is None or t.at < until)
        ]
        before = Outcome(True, len(turns), tuple(dict.fromkeys(tags)))
    return Stored(
        id=cid,
        channel=conv.channel,
        customer={
            "name": customer.name if customer else None,
            "username": customer.username if customer else None,
            "email": customer.email if customer else None,
            "claimed_email": customer.claimed_email if customer else None,
        },
        turns=[m.text for m in turns],
        before=before,
        team_tags=await repo.tags_of(s, cid),
        lookups=_lookups(history, dict(conv.context or {})),
    )


async def _play(core: Core, shop: RecordedShop, stored: Stored) -> Outcome:
    shop.answers = stored.lookups
    c = stored.customer
    started = await core.start_conversation(
        stored.channel,
        f"replay:{stored.id}",
        name=c["name"],
        username=c["username"],
        email=c["email"],
        claimed_email=c["claimed_email"],
    )
    cid = started.conversation.id
    for i, text in enumerate(stored.turns, 1):
        await core.shopper_message(cid, text, source=stored.channel, platform_id=f"{stored.id}:{i}")
        await core.idle()
        conv = await core.get(cid)
        if conv.handed_off_at is not None:
            return Outcome(True, i, conv.tags)
    return Outcome(False)


async def run_replay(
    sessions: async_sessionmaker[AsyncSession],
    since: datetime,
    config: StoreConfig,
    knowledge_dir: str | Path,
    *,
    examples: dict[str, list[str]] | None = None,
) -> ReplayReport:
    """Replay the conversations started since `since` in `sessions` (the store's database,
    only read) through `config`, the classifier trained with `examples` on top of the shipped
    and the store's, and a core of its own on a scratch database."""
    async with sessions() as s:
        stored = [x for cid in await repo.conversations_since(s, since) if (x := await load_stored(s, cid))]
    report = ReplayReport(since, count(examples or {}))
    shop = RecordedShop(config)
    classifier = classifier_with(config, examples) if examples else None
    agent = OfflineAgent(config, KnowledgeBase.from_folder(knowledge_dir), shop, classifier=classifier)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/replay.db"
        await upgrade_async(url)
        engine = make_engine(url)
        core = Core(sessions=make_sessionmaker(engine), agent=agent, live=LiveHub(), agent_timeout=120)
        try:
            for conv in stored:
                after = await _play(core, shop, conv)
                report.conversations.append(
                    Replayed(conv.id, conv.turns, conv.before, after, conv.team_tags)
                )
        finally:
            await core.close()
            await engine.dispose()
    return report
