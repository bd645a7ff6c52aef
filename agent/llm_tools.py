"""The model's tools: their JSON schemas from the store config, and running one tool call.

Every argument is checked before anything runs: a tool call is a request from the model, which
read text from the shopper, so it is treated like input from the shopper. Store actions go through
the offline agent's `run_action` (the same entity patterns as typed text; only what this shopper
may see comes back), and any fact they find goes through the rules at once."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from agent.llm_grounding import Evidence
from agent.offline import OfflineAgent, TurnState
from agent.prompts import suggestable_tags
from domain.ports import Turn
from domain.storeconfig import StoreConfig

SEARCH = "search_knowledge"
HANDOFF = "handoff"
INTENTS = "report_intents"
DEFAULT_HANDOFF_TAG = "human-requested"
MAX_QUERY = 300
MAX_REASON = 300
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def clean_text(value: Any, limit: int) -> str:
    """Model-written text bound for the inbox: no control characters, one line, bounded."""
    text = _CONTROL.sub(" ", str(value or ""))
    return re.sub(r"\s+", " ", text).strip()[:limit]


def tool_specs(config: StoreConfig) -> list[dict[str, Any]]:
    tags = suggestable_tags(config)
    handoff_props: dict[str, Any] = {
        "reason": {
            "type": "string",
            "description": "One sentence for the team: why a person is needed.",
        }
    }
    if tags:
        handoff_props["tags"] = {
            "type": "array",
            "items": {"type": "string", "enum": sorted(tags)},
            "description": "Tags that fit: "
            + "; ".join(f"{name} = {desc}" for name, desc in tags.items()),
        }
    specs: list[dict[str, Any]] = [
        _function(
            SEARCH,
            "Search the store's help pages (policies, shipping, returns, payments, sizes, "
            "products). Returns passages with the file they come from.",
            {"query": {"type": "string", "description": "What to look up, in a few words."}},
        ),
        _function(
            HANDOFF,
            "Hand the conversation to a person on the team: when the shopper asks for one, wants "
            "an exception, or you cannot help from the help pages and tools.",
            handoff_props,
            required=["reason"],
        ),
    ]
    for name, action in config.actions.items():
        if action.writes:  # a write runs only when a person approves it: never the model's tool
            continue
        props = {}
        for inp, entity_name in action.inputs.items():
            entity = config.entities[entity_name]
            props[inp] = {
                "type": "string",
                "description": entity.description or entity_name.replace("_", " "),
            }
        specs.append(_function(name, action.description or name.replace("_", " "), props))
    return specs


def intent_spec(descriptions: dict[str, str]) -> dict[str, Any]:
    """The structured output for classifying a turn: a list limited to the store's intent names
    (the shipped ones plus any its YAML adds), each explained by its description."""
    names = sorted(descriptions)
    return _function(
        INTENTS,
        "Report what the shopper's latest message asks the store for.",
        {
            "intents": {
                "type": "array",
                "items": {"type": "string", "enum": names},
                "description": "Every intent the latest message expresses: "
                + "; ".join(f"{n} = {descriptions[n]}" for n in names),
            }
        },
    )


def read_intents(message: Any, allowed: set[str]) -> list[str] | None:
    """The intents from the model's forced tool call, limited to known names; None when the
    reply is not a usable call (the built-in classifier decides then)."""
    for call in getattr(message, "tool_calls", None) or []:
        fn = getattr(call, "function", None)
        if fn is None or getattr(fn, "name", "") != INTENTS:
            continue
        try:
            args = json.loads(getattr(fn, "arguments", None) or "{}")
        except ValueError:
            return None
        names = args.get("intents") if isinstance(args, dict) else None
        if not isinstance(names, list):
            return None
        return [n for n in dict.fromkeys(names) if isinstance(n, str) and n in allowed]
    return None


def _function(
    name: str, description: str, props: dict[str, Any], required: list[str] | None = None
) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": props,
                "required": list(props) if required is None else required,
                "additionalProperties": False,
            },
        },
    }


@dataclass
class ToolOutcome:
    result: dict[str, Any]
    turn: Turn | None = None  # set when the turn ends here (a handoff, or the rules' verdict)
    invalid: bool = False  # a malformed call: counted against the turn's budget


@dataclass
class ToolBox:
    config: StoreConfig
    fallback: OfflineAgent
    state: TurnState
    evidence: Evidence = field(default_factory=Evidence)
    called: list[str] = field(default_factory=list)

    async def call(self, name: str, raw_args: str | None) -> ToolOutcome:
        self.called.append(name)
        try:
            args = json.loads(raw_args or "{}")
        except ValueError:
            return ToolOutcome(
                {"error": "the arguments were not valid JSON; call the tool again"}, invalid=True
            )
        if not isinstance(args, dict):
            return ToolOutcome({"error": "the arguments must be a JSON object"}, invalid=True)
        if name == SEARCH:
            return self._search(args)
        if name == HANDOFF:
            return self._handoff(args)
        if name in self.config.actions and not self.config.actions[name].writes:
            return await self._action(name, args)
        return ToolOutcome({"error": f"there is no tool called {name[:60]!r}"}, invalid=True)

    def _search(self, args: dict[str, Any]) -> ToolOutcome:
        query = args.get("query")
        if not isinstance(query, str) or not query.strip():
            return ToolOutcome({"error": "query must be a non-empty string"}, invalid=True)
        floor = self.config.knowledge.min_confidence / 2
        hits = [h for h in self.fallback.kb.search(query[:MAX_QUERY], k=3) if h.confidence >= floor]
        if not hits:
            return ToolOutcome(
                {
                    "passages": [],
                    "note": "Nothing in the help pages: say you don't know and offer a person.",
                }
            )
        for h in hits:
            self.evidence.add_passage(h.source, h.text)
        return ToolOutcome(
            {"passages": [{"source": h.source, "section": h.heading, "text": h.text} for h in hits]}
        )

    def _handoff(self, args: dict[str, Any]) -> ToolOutcome:
        """The model may ask for a person; the rules' tags win, its suggestions only fill a gap."""
        self.fallback.refresh(self.state)
        allowed = suggestable_tags(self.config)
        raw_tags = args.get("tags")
        suggested = [
            t
            for t in (raw_tags if isinstance(raw_tags, list) else [])
            if isinstance(t, str) and t in allowed
        ]
        rule_tags = list(self.state.decision.tags)
        if rule_tags:
            extra: list[str] = []
        else:
            extra = list(dict.fromkeys(suggested)) or [DEFAULT_HANDOFF_TAG]
        reason = clean_text(args.get("reason"), MAX_REASON) or "The assistant asked for a person"
        turn = self.fallback.handoff_turn(self.state, tags=extra, reason=reason)
        return ToolOutcome({"ok": True}, turn=turn)

    async def _action(self, name: str, args: dict[str, Any]) -> ToolOutcome:
        action = self.config.actions[name]
        unknown = sorted(set(args) - set(action.inputs))
        if unknown:
            return ToolOutcome(
                {"error": f"unknown argument(s): {', '.join(unknown)}"}, invalid=True
            )
        if any(not isinstance(v, str | int) or isinstance(v, bool) for v in args.values()):
            return ToolOutcome({"error": "every argument must be a string"}, invalid=True)
        result = await self.fallback.run_action(self.state, name, args)
        # A fact the action found may be one the rules act on (a failed payment): they decide.
        verdict = self.fallback.decide(self.state)
        if verdict is not None:
            return ToolOutcome(result, turn=verdict)
        self.evidence.add(json.dumps(result, ensure_ascii=False, default=str))
        return ToolOutcome(result)
