"""The escalation rules engine: facts in, a decision out. The rules, not the LLM, decide tags.

Rule sets apply when their `applies_if` holds (a sale, a tier, an issue type); rules run in file
order and later rules see the tags earlier ones added (so "human-requested only when nothing else
explains it" is just `not tags`). A rule `for_each: order` is checked once per order and the
orders it matches count as problem orders (so "two or more orders with problems" is a fact)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from domain.storeconfig import Rule, StoreConfig
from domain.templating import ENV, evaluate_in, expression_context, render
from domain.waiting import Expectation, opens_text, render_wait


@dataclass
class Match:
    rule: Rule
    rule_set: str
    orders: list[str] = field(default_factory=list)
    reason: str = ""


@dataclass
class Decision:
    matches: list[Match] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    problem_orders: list[str] = field(default_factory=list)

    @property
    def escalate(self) -> bool:
        return bool(self.matches)

    @property
    def priority(self) -> int:
        return max((m.rule.priority for m in self.matches), default=0)

    @property
    def reason(self) -> str:
        return "; ".join(dict.fromkeys(m.reason for m in self.matches if m.reason))

    def asks(self) -> list[Match]:
        return [m for m in self.matches if m.rule.ask_for]


def evaluate_rules(config: StoreConfig, facts: dict[str, Any]) -> Decision:
    decision = Decision()
    orders = list(facts.get("orders") or [])
    # One context for the whole pass (domain/templating.py, evaluate_in): the facts, and the tags
    # and problem orders so far, refreshed when a rule adds to them.
    ctx = expression_context(facts)

    def refresh() -> None:
        ctx["tags"] = list(decision.tags)
        ctx["problem_orders"] = list(decision.problem_orders)
        ctx.pop("order", None)

    refresh()
    for rule_set in config.rule_sets:
        if not evaluate_in(rule_set.applies_if, ctx):
            continue
        for rule in rule_set.rules:
            if rule.for_each == "order":
                hits = []
                for o in orders:
                    ctx["order"] = o
                    if evaluate_in(rule.if_, ctx):
                        hits.append(o)
                ctx.pop("order", None)
                if not hits:
                    continue
                numbers = [str(o.get("number")) for o in hits]
                reason = (
                    render(rule.reason, **_facts(ctx), order=hits[0], orders_matched=hits)
                    if rule.reason
                    else rule.name
                )
                decision.matches.append(Match(rule, rule_set.name, numbers, reason))
                for n in numbers:
                    if n not in decision.problem_orders:
                        decision.problem_orders.append(n)
            else:
                if not evaluate_in(rule.if_, ctx):
                    continue
                reason = render(rule.reason, **_facts(ctx)) if rule.reason else rule.name
                decision.matches.append(Match(rule, rule_set.name, [], reason))
            for tag in rule.tags:
                if tag not in decision.tags:
                    decision.tags.append(tag)
            refresh()
    return decision


def _facts(ctx: dict[str, Any]) -> dict[str, Any]:
    """The context without the environment's globals (a render adds its own)."""
    return {k: v for k, v in ctx.items() if k not in ENV.globals or ctx[k] is not ENV.globals[k]}


def clock() -> datetime:
    """Now, for business hours: one seam so that a test suite can pin the time of day."""
    return datetime.now(UTC)


_STORE_DUMP: tuple[Any, dict[str, Any]] | None = None


def _store_dump(config: StoreConfig) -> dict[str, Any]:
    """`config.store.model_dump()`, made once per store object rather than on every handoff: a
    config does not change after start-up. Keyed by the object itself (held, so its id is never
    reused), so another config, or a reloaded one, gets its own. Read-only: the expectation's
    readers render it or copy it (json_safe) and never write to it."""
    global _STORE_DUMP
    store = config.store
    hit = _STORE_DUMP
    if hit is None or hit[0] is not store:
        hit = _STORE_DUMP = (store, store.model_dump())
    return hit[1]


def handoff_expectation(
    config: StoreConfig,
    decision: Decision,
    facts: dict[str, Any],
    now: datetime | None = None,
    language: str = "en",
) -> Expectation:
    """What the shopper is told at a handoff, before the queue is known: the template (the rule's
    own, the store's `expectation`, or `out_of_hours` with when people are back), in the
    shopper's language, the SLA from the rules and what the templates see. The core renders it
    with the live queue when the handoff commits (domain/waiting.py)."""
    now = now or clock()
    slas = [m.rule.sla_minutes for m in decision.matches if m.rule.sla_minutes]
    sla = min(slas) if slas else config.store.sla_minutes
    hours = config.store.hours
    msgs = config.messages
    custom = next((m.rule.expectation for m in decision.matches if m.rule.expectation), None)
    ctx = {**facts, "sla_minutes": sla, "tags": decision.tags, "store": _store_dump(config)}
    in_hours = hours.is_open(now)
    if in_hours:
        template = custom or msgs.wait_text("expectation", language)
    else:
        ctx["opens"] = opens_text(hours.next_open(now), now, hours.timezone, language)
        template = msgs.wait_text("out_of_hours", language)
    return Expectation(
        template=template,
        queue=msgs.wait_text("queue", language),
        context=ctx,
        sla_minutes=sla,
        in_hours=in_hours,
        language=language,
    )


def expectation_message(
    config: StoreConfig, decision: Decision, facts: dict[str, Any], now: datetime | None = None
) -> tuple[str, int]:
    """The message the shopper gets on handoff when the queue is not known (the SLA from the
    rules and business hours), and that SLA."""
    exp = handoff_expectation(config, decision, facts, now)
    return render_wait(exp, None), exp.sla_minutes
