"""The LLM agent: Chat Completions with tools on any OpenAI-compatible endpoint.

The rules stay in charge. Every turn starts with the offline agent's `prepare`/`decide`: the same
intents, actions and rules, so a handoff the rules call for happens whatever the model would say.
Only when the rules are silent does the model compose the answer, with three kinds of tools:
search_knowledge, one tool per store action (validated by the store's entity patterns, and
returning only what this shopper has proved), and handoff (its suggested tags filtered to the
store's definitions, the rules' tags first). Everything sent is masked; the budget is bounded in
steps and seconds; on any failure the offline agent answers instead, so the shopper never waits on
a dead request."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from typing import Any

import openai
from openai import AsyncOpenAI

from agent.actions import ActionRunner
from agent.knowledge import KnowledgeBase
from agent.offline import OfflineAgent, TurnState
from agent.prompts import summary_prompt, system_prompt
from agent.storeconfig import StoreConfig
from bot.masking import mask_sensitive
from bot.ports import ConversationView, MessageView, Turn

log = logging.getLogger("handoff.llm")
SOURCE_RE = re.compile(r"\[source:\s*([^\]]+)\]", re.IGNORECASE)
FAILURES = (
    openai.APIError,
    openai.OpenAIError,
    TimeoutError,
    asyncio.TimeoutError,
    ValueError,
    KeyError,
)


class LLMAgent:
    def __init__(
        self,
        client: AsyncOpenAI,
        model: str,
        config: StoreConfig,
        knowledge: KnowledgeBase,
        fallback: OfflineAgent,
        *,
        max_steps: int = 4,
        total_timeout: float = 25.0,
    ) -> None:
        self.client = client
        self.model = model
        self.config = config
        self.kb = knowledge
        self.fallback = fallback
        self.max_steps = max_steps
        self.total_timeout = total_timeout

    async def aclose(self) -> None:
        await self.client.close()

    # ------------------------------------------------------------------ turn

    async def respond(self, conversation: ConversationView, history: list[MessageView]) -> Turn:
        started = time.monotonic()
        state = await self.fallback.prepare(conversation, history)
        usage = [0, 0]
        verdict = self.fallback.decide(state)
        if verdict is not None:
            if verdict.handoff is not None:
                await self._summarize(state, verdict, usage)
            turn = verdict
        else:
            try:
                async with asyncio.timeout(self.total_timeout):
                    turn = await self._tool_loop(state, usage)
            except FAILURES as exc:
                log.warning(
                    "LLM failed on #%s, the built-in agent answers: %r", conversation.id, exc
                )
                turn = self.fallback.answer(state)
                turn.meta["llm_error"] = f"{type(exc).__name__}: {exc}"[:300]
        turn.tokens_in, turn.tokens_out = usage
        turn.meta.setdefault("model", self.model)
        turn.latency_ms = int((time.monotonic() - started) * 1000)
        return turn

    def _mask(self, text: str) -> str:
        return mask_sensitive(text or "", self.config.mask_patterns)

    def _messages(self, state: TurnState) -> list[dict[str, Any]]:
        msgs: list[dict[str, Any]] = [
            {"role": "system", "content": system_prompt(self.config, state)}
        ]
        for m in state.history[-30:]:
            if m.role == "shopper":
                msgs.append({"role": "user", "content": self._mask(m.text)})
            elif m.role == "agent":
                msgs.append({"role": "assistant", "content": self._mask(m.text)})
            elif m.role == "human":
                msgs.append(
                    {
                        "role": "assistant",
                        "content": f"(a person from the team wrote) {self._mask(m.text)}",
                    }
                )
        return msgs

    def _tools(self) -> list[dict[str, Any]]:
        tools: list[dict[str, Any]] = [
            {
                "type": "function",
                "function": {
                    "name": "search_knowledge",
                    "description": "Search the store's help pages. Answer policy questions only from what this returns.",
                    "parameters": {
                        "type": "object",
                        "properties": {
                            "query": {"type": "string", "description": "what to look up"}
                        },
                        "required": ["query"],
                    },
                },
            },
            {
                "type": "function",
                "function": {
                    "name": "handoff",
                    "description": "Hand the conversation to a person on the team, when the shopper asks for one or you cannot help.",
                    "parameters": {
                        "type": "object",
                        "properties": {
                            "reason": {
                                "type": "string",
                                "description": "one sentence for the team",
                            },
                            "tags": {
                                "type": "array",
                                "items": {"type": "string", "enum": sorted(self._suggestable())},
                                "description": "tags that fit, from the store's definitions",
                            },
                        },
                        "required": ["reason"],
                    },
                },
            },
        ]
        for name, action in self.config.actions.items():
            props = {
                inp: {"type": "string", "description": self.config.entities[ent].description or ent}
                for inp, ent in action.inputs.items()
            }
            tools.append(
                {
                    "type": "function",
                    "function": {
                        "name": name,
                        "description": action.description or name,
                        "parameters": {
                            "type": "object",
                            "properties": props,
                            "required": list(props),
                        },
                    },
                }
            )
        return tools

    def _suggestable(self) -> set[str]:
        return {name for name, tag in self.config.tags.items() if tag.suggest}

    async def _tool_loop(self, state: TurnState, usage: list[int]) -> Turn:
        messages = self._messages(state)
        tools = self._tools()
        offered: set[str] = set()
        for _ in range(self.max_steps):
            resp = await self.client.chat.completions.create(
                model=self.model,
                messages=messages,
                tools=tools,
                tool_choice="auto",
                temperature=0.2,
            )
            if resp.usage is not None:
                usage[0] += resp.usage.prompt_tokens or 0
                usage[1] += resp.usage.completion_tokens or 0
            msg = resp.choices[0].message
            calls = msg.tool_calls or []
            if not calls:
                text = (msg.content or "").strip()
                if not text:
                    raise ValueError("the model returned neither text nor a tool call")
                cited = [s.strip() for s in SOURCE_RE.findall(text)]
                sources = [s for s in dict.fromkeys(cited) if s in offered]
                reply = SOURCE_RE.sub("", text).strip()
                if sources:
                    reply += "\n(Source: " + ", ".join(sources) + ")"
                return Turn(
                    reply=reply, sources=sources, actions_run=state.actions_run, memory=state.mem
                )
            messages.append(
                {
                    "role": "assistant",
                    "content": msg.content or None,
                    "tool_calls": [
                        {
                            "id": c.id,
                            "type": "function",
                            "function": {
                                "name": c.function.name,
                                "arguments": c.function.arguments,
                            },
                        }
                        for c in calls
                    ],
                }
            )
            for call in calls:
                result, turn = await self._run_tool(
                    state, call.function.name, call.function.arguments, offered
                )
                if turn is not None:
                    return turn
                messages.append(
                    {
                        "role": "tool",
                        "tool_call_id": call.id,
                        "content": self._mask(json.dumps(result)),
                    }
                )
        raise ValueError(f"no answer within {self.max_steps} steps")

    async def _run_tool(
        self, state: TurnState, name: str, raw_args: str, offered: set[str]
    ) -> tuple[dict[str, Any], Turn | None]:
        try:
            args = json.loads(raw_args or "{}")
            if not isinstance(args, dict):
                raise ValueError("not an object")
        except ValueError:
            return {
                "error": "the arguments were not a valid JSON object; call the tool again"
            }, None
        if name == "search_knowledge":
            query = str(args.get("query", ""))[:500]
            hits = [
                h
                for h in self.kb.search(query, k=3)
                if h.confidence >= self.config.knowledge.min_confidence / 2
            ]
            offered.update(h.source for h in hits)
            if not hits:
                return {
                    "passages": [],
                    "note": "nothing in the help pages: say you don't know or hand off",
                }, None
            return {
                "passages": [
                    {"source": h.source, "section": h.heading, "text": h.text} for h in hits
                ]
            }, None
        if name == "handoff":
            self.fallback.refresh(state)
            rule_tags = state.decision.tags
            suggested = [
                t for t in args.get("tags") or [] if isinstance(t, str) and t in self._suggestable()
            ]
            tags = rule_tags or suggested or ["human-requested"]
            reason = str(args.get("reason") or "The assistant asked for a person")[:300]
            turn = self.fallback.handoff_turn(
                state, tags=[t for t in tags if t not in rule_tags], reason=reason
            )
            return {}, turn
        if name in self.config.actions:
            result = await self.fallback.run_action(state, name, args)
            # A fact the action found may be one the rules act on (a failed payment): they decide.
            verdict = self.fallback.decide(state)
            if verdict is not None:
                return {}, verdict
            return result, None
        return {"error": f"there is no tool called {name}"}, None

    async def _summarize(self, state: TurnState, turn: Turn, usage: list[int]) -> None:
        """The inbox's summary in the model's words when it answers in time; the template otherwise."""
        assert turn.handoff is not None
        try:
            async with asyncio.timeout(min(8.0, self.total_timeout)):
                resp = await self.client.chat.completions.create(
                    model=self.model,
                    messages=[
                        {"role": "system", "content": summary_prompt(self.config)},
                        {
                            "role": "user",
                            "content": self._mask(
                                json.dumps(
                                    {
                                        "facts": turn.handoff.summary,
                                        "reason": turn.handoff.reason,
                                        "conversation": [
                                            [m.role, m.text]
                                            for m in state.history[-20:]
                                            if m.role != "note"
                                        ],
                                    }
                                )
                            ),
                        },
                    ],
                    temperature=0.2,
                )
        except FAILURES as exc:
            log.info("summary by template (LLM: %r)", exc)
            return
        if resp.usage is not None:
            usage[0] += resp.usage.prompt_tokens or 0
            usage[1] += resp.usage.completion_tokens or 0
        text = (resp.choices[0].message.content or "").strip()
        if text:
            turn.handoff.summary = f"{text}\n\nFacts: {turn.handoff.summary}"[:3000]


def build_llm_agent(
    settings: Any,
    config: StoreConfig,
    knowledge: KnowledgeBase,
    actions: ActionRunner,
    fallback: OfflineAgent,
) -> LLMAgent:
    client = AsyncOpenAI(
        api_key=settings.openai_api_key.get_secret_value()
        if settings.openai_api_key
        else "not-needed",
        base_url=settings.openai_base_url,
        timeout=settings.openai_timeout,
        max_retries=2,
    )
    return LLMAgent(
        client,
        settings.openai_model,
        config,
        knowledge,
        fallback,
        total_timeout=max(settings.openai_timeout * 1.5, 1.0),
    )


def llm_agent_factory(settings: Any) -> Any:
    def factory(config: StoreConfig, knowledge: KnowledgeBase, actions: ActionRunner) -> LLMAgent:
        return build_llm_agent(
            settings, config, knowledge, actions, OfflineAgent(config, knowledge, actions)
        )

    return factory
