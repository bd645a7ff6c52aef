"""`handoff eval`: plays scripted shopper conversations through the real core and scores the
agent's handoff judgment (format: shared/eval/FORMAT.md). Each scenario's shop data is served as
the shop API on 127.0.0.1, so the store's actions make real HTTP calls, as in production.

`handoff eval --replay SINCE` plays the store's own stored conversations instead, through the
current YAML and examples, and says which would end differently (bot/replay.py)."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.actions import ActionRunner
from agent.knowledge import KnowledgeBase
from agent.offline import OfflineAgent
from bot.examples import classifier_with
from bot.shop_server import ShopData, start_shop
from core.lifecycle import Core
from core.live import LiveHub
from domain.ports import Agent
from domain.storeconfig import StoreConfig
from storage.db import make_engine, make_sessionmaker
from storage.migrate import upgrade_async


@dataclass
class ScenarioResult:
    id: str
    expect: dict[str, Any]
    escalated: bool
    escalated_turn: int | None
    tags: list[str]
    sources: list[str]
    transcript: list[tuple[str, str]]

    @property
    def failures(self) -> list[str]:
        out = []
        exp = self.expect
        if exp["escalate"] != self.escalated:
            out.append(f"escalate: expected {exp['escalate']}, got {self.escalated}")
        if exp["escalate"] and self.escalated:
            if set(exp["tags"]) != set(self.tags):
                out.append(f"tags: expected {sorted(exp['tags'])}, got {sorted(self.tags)}")
            if exp.get("by_turn") and (self.escalated_turn or 99) > exp["by_turn"]:
                out.append(
                    f"late: expected by turn {exp['by_turn']}, handed off at turn {self.escalated_turn}"
                )
        if exp.get("kb_source") and exp["kb_source"] not in self.sources:
            out.append(
                f"knowledge: expected an answer from {exp['kb_source']}, got {self.sources or 'none'}"
            )
        return out


@dataclass
class EvalReport:
    results: list[ScenarioResult] = field(default_factory=list)

    def scores(self) -> dict[str, float | None]:
        tp = sum(1 for r in self.results if r.escalated and r.expect["escalate"])
        fp = sum(1 for r in self.results if r.escalated and not r.expect["escalate"])
        fn = sum(1 for r in self.results if not r.escalated and r.expect["escalate"])
        esc = [r for r in self.results if r.expect["escalate"]]
        tag_tp = tag_pred = tag_exp = 0
        for r in esc:
            pred = set(r.tags) if r.escalated else set()
            exp = set(r.expect["tags"])
            tag_tp += len(pred & exp)
            tag_pred += len(pred)
            tag_exp += len(exp)
        timely = [
            r
            for r in esc
            if r.escalated and (r.escalated_turn or 99) <= (r.expect.get("by_turn") or 99)
        ]
        kb = [r for r in self.results if r.expect.get("kb_source")]
        kb_hit = [r for r in kb if r.expect["kb_source"] in r.sources]

        def ratio(a: int, b: int) -> float | None:
            return round(a / b, 3) if b else None

        tp_ = ratio(tag_tp, tag_pred)
        tr_ = ratio(tag_tp, tag_exp)
        return {
            "scenarios": len(self.results),
            "escalation_precision": ratio(tp, tp + fp),
            "escalation_recall": ratio(tp, tp + fn),
            "tag_precision": tp_,
            "tag_recall": tr_,
            "tag_f1": round(2 * tp_ * tr_ / (tp_ + tr_), 3) if tp_ and tr_ else None,
            "timeliness": ratio(len(timely), len(esc)),
            "knowledge_hit_rate": ratio(len(kb_hit), len(kb)),
        }

    def as_json(self) -> dict[str, Any]:
        return {
            "scores": self.scores(),
            "results": [
                {
                    "id": r.id,
                    "expect": r.expect,
                    "escalated": r.escalated,
                    "escalated_turn": r.escalated_turn,
                    "tags": r.tags,
                    "sources": r.sources,
                    "failures": r.failures,
                    "transcript": r.transcript,
                }
                for r in self.results
            ],
        }

    def render(self, show_transcripts: bool = True) -> str:
        lines = ["metric                 value", "---------------------  -----"]
        for k, v in self.scores().items():
            lines.append(f"{k:<22} {v if v is not None else 'n/a'}")
        failed = [r for r in self.results if r.failures]
        lines.append(f"\n{len(failed)} of {len(self.results)} scenarios with failures")
        for r in failed:
            lines.append(f"\n== {r.id}: " + "; ".join(r.failures))
            if show_transcripts:
                for role, text in r.transcript:
                    lines.append(f"   {role:>7}: {text.replace(chr(10), ' / ')[:300]}")
        return "\n".join(lines)


def load_scenarios(path: str | Path) -> list[dict[str, Any]]:
    out = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except ValueError as exc:
                raise ValueError(f"{path}:{n}: not valid JSON: {exc}") from exc
    return out


async def run_eval(
    scenarios: list[dict[str, Any]],
    knowledge_dir: str | Path,
    config: StoreConfig,
    *,
    agent_factory: Any = None,
    examples: dict[str, list[str]] | None = None,
) -> EvalReport:
    """`examples`: labelled examples (intent -> texts) to train the built-in classifier with,
    on top of the shipped and the store's (the accepted ones from the database, in the CLI)."""
    shop = ShopData()
    runner, shop_url = await start_shop(shop)
    kb = KnowledgeBase.from_folder(knowledge_dir)
    actions = ActionRunner(config, shop_url)
    if agent_factory:
        agent: Agent = agent_factory(config, kb, actions)
    else:
        classifier = classifier_with(config, examples) if examples else None
        agent = OfflineAgent(config, kb, actions, classifier=classifier)
    report = EvalReport()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/eval.db"
        await upgrade_async(url)
        engine = make_engine(url)
        core = Core(
            sessions=make_sessionmaker(engine), agent=agent, live=LiveHub(), agent_timeout=120
        )
        try:
            for sc in scenarios:
                shop.load(sc.get("shop") or {})
                report.results.append(await _play(core, sc))
        finally:
            await core.close()
            await actions.close()
            await engine.dispose()
            await runner.cleanup()
    return report


async def _play(core: Core, sc: dict[str, Any]) -> ScenarioResult:
    customer = sc.get("customer") or {}
    started = await core.start_conversation(
        sc.get("channel", "widget"),
        f"eval:{sc['id']}",
        name=customer.get("name"),
        email=customer.get("email"),
    )
    cid = started.conversation.id
    escalated_turn = None
    for i, text in enumerate(sc["turns"], 1):
        await core.shopper_message(
            cid, text, source=sc.get("channel", "widget"), platform_id=f"{sc['id']}:{i}"
        )
        await core.idle()
        conv = await core.get(cid)
        if escalated_turn is None and conv.handed_off_at is not None:
            escalated_turn = i
    conv = await core.get(cid)
    hist = await core.history(cid)
    sources = [s for m in hist if m.role == "agent" for s in m.meta.get("sources", [])]
    return ScenarioResult(
        id=sc["id"],
        expect=sc["expect"],
        escalated=escalated_turn is not None,
        escalated_turn=escalated_turn,
        tags=list(conv.tags),
        sources=list(dict.fromkeys(sources)),
        transcript=[(m.role, m.text) for m in hist],
    )
