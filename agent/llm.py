"""The LLM agent: Chat Completions with tools on any OpenAI-compatible endpoint.

The rules stay in charge. Every turn starts with the offline agent's `prepare`/`decide`: the same
intents, actions and escalation rules, so a handoff the rules call for happens whatever the model
would say (the model only writes the inbox's summary). Only when the rules are silent does the
model compose the answer, with three kinds of tools (see agent/llm_tools.py): search_knowledge,
one tool per store action, and handoff. Facts an action finds go through the rules at once; the
model's suggested tags are filtered to the store's definitions and only fill in when the rules
have none. Replies are checked against what the tools returned (agent/llm_grounding.py).

Failure is bounded: each request has a timeout, 429/5xx/timeouts are retried only while the turn's
budget lasts (a Retry-After longer than what is left is not waited for), malformed tool calls cost
steps, and the whole turn runs under `asyncio.timeout`. When the budget is spent the offline agent
answers (or, if configured, the chat is handed off as `ai-unavailable`). After repeated failures a
circuit breaker skips the endpoint for a while, so later shoppers do not wait on a dead server."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import openai
from openai import AsyncOpenAI

from agent.actions import ActionRunner
from agent.facts import build_facts
from agent.knowledge import KnowledgeBase
from agent.llm_grounding import check_reply
from agent.llm_tools import (
    INTENTS,
    MAX_REASON,
    ToolBox,
    clean_text,
    intent_spec,
    read_intents,
    tool_specs,
)
from agent.offline import OfflineAgent, TurnState
from agent.prompts import correction, intent_prompt, known_facts, summary_prompt, system_prompt
from domain.masking import mask_sensitive
from domain.ports import ConversationView, MessageView, Turn
from domain.storeconfig import StoreConfig

log = logging.getLogger("handoff.llm")

AI_UNAVAILABLE = "ai-unavailable"
HISTORY_MESSAGES = 30
HISTORY_CHARS = 2000
INTENT_CONTEXT = 6  # earlier messages the intent request sees as context
RETRYABLE_STATUS = {408, 409, 429}
UNSUPPORTED_STATUS = {400, 404, 422}  # an endpoint without forced tool calls says so at once


class LLMUnavailable(Exception):
    """The endpoint did not answer usefully within the budget (timeouts, 429, 5xx, bad replies)."""


class LLMUnusable(Exception):
    """The endpoint answered, but not with something we may send (ungrounded, malformed, looping)."""


@dataclass
class _Run:
    """One turn's budget and accounting."""

    deadline: float
    tokens_in: int = 0
    tokens_out: int = 0
    calls: int = 0
    retries: int = 0
    steps: int = 0
    tools: list[str] = field(default_factory=list)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()


class LLMAgent:
    def __init__(
        self,
        client: AsyncOpenAI,
        model: str,
        config: StoreConfig,
        knowledge: KnowledgeBase,
        fallback: OfflineAgent,
        *,
        request_timeout: float = 20.0,
        total_timeout: float = 30.0,
        summary_timeout: float = 8.0,
        max_steps: int = 5,
        max_retries: int = 2,
        max_invalid_calls: int = 2,
        on_failure: Literal["answer", "handoff"] = "answer",
        breaker_threshold: int = 2,
        breaker_cooldown: float = 30.0,
        temperature: float | None = None,
        classify_intents: bool = True,
    ) -> None:
        self.client = client
        self.model = model
        self.config = config
        self.kb = knowledge
        self.fallback = fallback
        self.request_timeout = request_timeout
        self.total_timeout = total_timeout
        self.summary_timeout = summary_timeout
        self.max_steps = max(2, max_steps)
        self.max_retries = max_retries
        self.max_invalid_calls = max_invalid_calls
        self.on_failure = on_failure
        self.breaker_threshold = breaker_threshold
        self.breaker_cooldown = breaker_cooldown
        self.temperature = temperature
        self.classify_intents = classify_intents
        self._intents_unsupported = False
        self._failures = 0
        self._open_until = 0.0

    async def aclose(self) -> None:
        await self.client.close()

    # ---------------------------------------------------------------- the turn

    async def respond(self, conversation: ConversationView, history: list[MessageView]) -> Turn:
        started = time.monotonic()
        run = _Run(deadline=started + self.total_timeout)
        intents = await self._intents(history, run)
        state = await self.fallback.prepare(conversation, history, intents=intents)
        verdict = self.fallback.decide(state)
        meta: dict[str, Any] = {"model": self.model}
        meta["intents_by"] = "llm" if intents is not None else "classifier"
        if verdict is not None:
            # The rules decided (a handoff, or a fact they need first): the model gets no say.
            turn = verdict
            meta["agent"] = "rules"
            if turn.handoff is not None:
                await self._summarize(state, turn, run)
        elif not self.available():
            turn = self._fallback_turn(state, "resting after repeated failures")
            meta.update(agent="offline", llm_error="circuit open")
        else:
            try:
                async with asyncio.timeout(max(run.remaining(), 0.01)):
                    turn = await self._tool_loop(state, run)
                meta["agent"] = "llm"
                if turn.handoff is not None:
                    await self._summarize(state, turn, run)
            except LLMUnusable as exc:
                log.info("LLM answer not used on #%s: %s", conversation.id, exc)
                turn = self.fallback.answer(state)
                meta.update(agent="offline", llm_error=f"unusable: {exc}"[:300])
            except Exception as exc:  # timeouts, transport, anything: the shopper gets an answer
                self._record(ok=False)
                log.warning(
                    "LLM failed on #%s, the built-in agent answers: %r", conversation.id, exc
                )
                why = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
                turn = self._fallback_turn(state, why)
                meta.update(agent="offline", llm_error=f"{type(exc).__name__}: {exc}"[:300])
        meta.update(llm_calls=run.calls, llm_retries=run.retries, llm_steps=run.steps)
        if run.tools:
            meta["llm_tools"] = run.tools
        turn.meta = {**meta, **turn.meta}
        turn.tokens_in, turn.tokens_out = run.tokens_in, run.tokens_out
        turn.latency_ms = int((time.monotonic() - started) * 1000)
        return turn

    async def _intents(self, history: list[MessageView], run: _Run) -> list[str] | None:
        """The latest message's intents as the model classifies them, with a forced tool call whose
        schema allows only the store's intent names; the same rules then read them. None (the
        built-in classifier decides) when the endpoint cannot, is resting, or does not answer
        within a third of the turn's budget. One attempt, no retries: the classifier is a good
        fallback, and the shopper should not wait for this."""
        if not self.classify_intents or self._intents_unsupported or not self.available():
            return None
        clf = self.fallback.classifier
        allowed = set(clf.names)
        if not history or history[-1].role != "shopper":
            return None
        budget = min(self.request_timeout, run.remaining() / 3)
        if budget < 0.2:
            return None
        context = [
            {"role": "user" if m.role == "shopper" else "assistant", "content": self._mask(m.text)[:HISTORY_CHARS]}
            for m in history[-INTENT_CONTEXT:]
            if m.role in ("shopper", "agent", "human")
        ]
        descriptions = {n: clf.specs[n].description or n for n in clf.names}
        run.calls += 1
        try:
            async with asyncio.timeout(budget):
                resp = await self.client.chat.completions.create(
                    model=self.model,
                    timeout=budget,
                    messages=[{"role": "system", "content": intent_prompt(self.config)}, *context],
                    tools=[intent_spec(descriptions)],
                    tool_choice={"type": "function", "function": {"name": INTENTS}},
                    **self._sampling(),
                )
        except openai.APIStatusError as exc:
            if exc.status_code in UNSUPPORTED_STATUS:
                self._intents_unsupported = True
                log.info(
                    "the LLM endpoint refused a forced tool call (%s): the built-in classifier "
                    "decides intents from now on",
                    exc.status_code,
                )
            return None
        except Exception as exc:  # timeouts, transport: the classifier decides this turn
            log.info("intents by the built-in classifier (LLM: %r)", exc)
            return None
        if getattr(resp, "usage", None) is not None:
            run.tokens_in += resp.usage.prompt_tokens or 0
            run.tokens_out += resp.usage.completion_tokens or 0
        choices = getattr(resp, "choices", None)
        if not choices:
            return None
        return read_intents(choices[0].message, allowed)

    def available(self) -> bool:
        """False while the circuit breaker rests the endpoint after repeated failures."""
        return time.monotonic() >= self._open_until

    def _record(self, *, ok: bool) -> None:
        if ok:
            self._failures = 0
            return
        self._failures += 1
        if self._failures >= self.breaker_threshold:
            self._open_until = time.monotonic() + self.breaker_cooldown
            self._failures = 0
            log.warning(
                "LLM endpoint failed %d times in a row: the built-in agent answers for %.0f s",
                self.breaker_threshold,
                self.breaker_cooldown,
            )

    def _fallback_turn(self, state: TurnState, why: str) -> Turn:
        """The AI is unavailable: the built-in agent answers, or the team takes over."""
        reason = f"The AI assistant was unavailable ({why[:120]})"
        if self.on_failure == "handoff":
            return self.fallback.handoff_turn(state, tags=[AI_UNAVAILABLE], reason=reason)
        turn = self.fallback.answer(state)
        if turn.handoff is None and state.mem.get("offered"):
            # Neither agent has an answer: with the AI down, a person now rather than an offer.
            return self.fallback.handoff_turn(
                state,
                tags=["unanswered", AI_UNAVAILABLE],
                reason=f"The assistant had no answer in the store's content; {reason}",
                lead=self.config.messages.dont_know,
            )
        if turn.handoff is not None and AI_UNAVAILABLE not in turn.handoff.tags:
            # The built-in agent could not answer either: say why a person is needed.
            turn.handoff.tags.append(AI_UNAVAILABLE)
            turn.handoff.reason = f"{turn.handoff.reason}; {reason}"
        return turn

    # ---------------------------------------------------------------- the model

    def _mask(self, text: str) -> str:
        return mask_sensitive(text or "", self.config.mask_patterns)

    def _history(self, state: TurnState) -> list[dict[str, Any]]:
        """This conversation only, masked; staff notes and system lines never leave."""
        out: list[dict[str, Any]] = []
        for m in state.history[-HISTORY_MESSAGES:]:
            text = self._mask(m.text)[:HISTORY_CHARS]
            if m.role == "shopper":
                out.append({"role": "user", "content": text})
            elif m.role == "agent":
                out.append({"role": "assistant", "content": text})
            elif m.role == "human":
                out.append({"role": "assistant", "content": f"(a person from the team) {text}"})
        return out

    async def _complete(self, run: _Run, **kwargs: Any) -> Any:
        """One completion, retried on 408/409/429/5xx, timeouts and unreadable replies, but only
        while the turn's budget lasts: a Retry-After longer than what is left is not waited for."""
        last: Exception | None = None
        for attempt in range(self.max_retries + 1):
            remaining = run.remaining()
            if remaining <= 0.05:
                break
            delay: float | None = None
            run.calls += 1
            try:
                async with asyncio.timeout(remaining):
                    resp = await self.client.chat.completions.create(
                        model=self.model,
                        timeout=min(self.request_timeout, remaining),
                        **kwargs,
                    )
                if not getattr(resp, "choices", None):
                    raise LLMUnavailable("a reply without choices")
            except openai.APIStatusError as exc:
                if exc.status_code not in RETRYABLE_STATUS and exc.status_code < 500:
                    raise  # 400/401/403/404/422: asking again will not help
                last, delay = exc, _retry_after(exc.response.headers)
            except (openai.APIError, LLMUnavailable, TimeoutError, ValueError) as exc:
                last = exc
            else:
                if resp.usage is not None:
                    run.tokens_in += resp.usage.prompt_tokens or 0
                    run.tokens_out += resp.usage.completion_tokens or 0
                self._record(ok=True)
                return resp
            if attempt == self.max_retries:
                break
            wait = delay if delay is not None else 0.25 * 2**attempt * (0.75 + random.random() / 4)
            if wait >= run.remaining() - 0.05:
                break  # the shopper would wait on a request we know is dead
            run.retries += 1
            await asyncio.sleep(max(wait, 0.0))
        raise LLMUnavailable(f"no answer within the budget (last: {last!r})"[:300])

    async def _tool_loop(self, state: TurnState, run: _Run) -> Turn:
        system = self._mask(system_prompt(self.config, state.facts))
        messages: list[dict[str, Any]] = [{"role": "system", "content": system}]
        messages += self._history(state)
        box = ToolBox(self.config, self.fallback, state)
        box.evidence.add(system)
        for m in state.history:
            if m.role in ("agent", "human"):
                box.evidence.add(m.text)  # what the store's side already said stands
        tools = tool_specs(self.config)
        corrected = False
        invalid = 0
        for step in range(self.max_steps):
            run.steps = step + 1
            last_step = step == self.max_steps - 1
            resp = await self._complete(
                run,
                messages=messages,
                tools=tools,
                tool_choice="none" if last_step else "auto",
                **self._sampling(),
            )
            msg = resp.choices[0].message
            calls = list(msg.tool_calls or [])
            if not calls:
                text = (msg.content or "").strip()
                if not text:
                    raise LLMUnusable("neither text nor a tool call")
                checked = check_reply(text, box.evidence)
                if checked.problems:
                    if corrected or last_step:
                        raise LLMUnusable("ungrounded: " + "; ".join(checked.problems)[:200])
                    corrected = True
                    messages.append({"role": "assistant", "content": self._mask(text)})
                    messages.append({"role": "user", "content": correction(checked.problems)})
                    continue
                return self._answer_turn(state, checked.reply, checked.sources)
            messages.append(
                {
                    "role": "assistant",
                    "content": self._mask(msg.content) if msg.content else None,
                    "tool_calls": [_echo_call(c, self._mask) for c in calls],
                }
            )
            for call in calls:
                fn = getattr(call, "function", None)
                name = str(getattr(fn, "name", "") or "")[:64]
                run.tools.append(name)
                if fn is None:
                    outcome_result: dict[str, Any] = {"error": "only function tools exist"}
                    invalid += 1
                else:
                    outcome = await box.call(name, getattr(fn, "arguments", None))
                    if outcome.turn is not None:
                        return outcome.turn
                    outcome_result = outcome.result
                    invalid += outcome.invalid
                messages.append(
                    {
                        "role": "tool",
                        "tool_call_id": call.id,
                        "content": self._mask(
                            json.dumps(outcome_result, ensure_ascii=False, default=str)
                        ),
                    }
                )
            if invalid > self.max_invalid_calls:
                raise LLMUnusable(f"{invalid} malformed tool calls")
        raise LLMUnusable(f"no answer within {self.max_steps} steps")

    def _answer_turn(self, state: TurnState, reply: str, sources: list[str]) -> Turn:
        if sources:
            reply += "\n(Source: " + ", ".join(sources) + ")"
        # Orders the model told the shopper about count as reported, as the built-in agent keeps it.
        for number, order in state.mem.get("orders", {}).items():
            if order.get("verified") and number.lower() in reply.lower():
                order["reported"] = True
        return Turn(reply=reply, sources=sources, actions_run=state.actions_run, memory=state.mem)

    async def _summarize(self, state: TurnState, turn: Turn, run: _Run) -> None:
        """The inbox's summary in the model's words when it answers in time; the template (kept
        under "Facts:") otherwise. The model sees this conversation and only the facts the shopper
        proved: the template's details about unproved orders stay on our side."""
        assert turn.handoff is not None
        budget = min(self.summary_timeout, max(run.remaining(), 0.0))
        if budget < 0.5 or not self.available():
            return
        facts = build_facts(state.conversation, state.mem)
        payload = {
            "tags": {t: self._tag_description(t) for t in turn.handoff.tags},
            "proved_facts": known_facts(facts),
            "conversation": [
                [m.role, m.text[:HISTORY_CHARS]]
                for m in state.history[-HISTORY_MESSAGES:]
                if m.role in ("shopper", "agent", "human")
            ],
        }
        sub = _Run(deadline=time.monotonic() + budget)
        try:
            resp = await self._complete(
                sub,
                messages=[
                    {"role": "system", "content": summary_prompt(self.config)},
                    {
                        "role": "user",
                        "content": self._mask(json.dumps(payload, ensure_ascii=False)),
                    },
                ],
                **self._sampling(),
            )
            text = clean_text(resp.choices[0].message.content, 1500)
        except Exception as exc:
            self._record(ok=False)
            log.info("summary by template (LLM: %r)", exc)
            text = ""
        finally:
            run.tokens_in += sub.tokens_in
            run.tokens_out += sub.tokens_out
            run.calls += sub.calls
            run.retries += sub.retries
        if text:
            turn.handoff.summary = f"{self._mask(text)}\n\nFacts: {turn.handoff.summary}"[:4000]
            turn.meta["summary_by"] = "llm"

    def _sampling(self) -> dict[str, Any]:
        # Not sent unless set: some models (reasoning ones) refuse any temperature but their own.
        return {} if self.temperature is None else {"temperature": self.temperature}

    def _tag_description(self, tag: str) -> str:
        t = self.config.tags.get(tag)
        return clean_text(t.description if t else tag, MAX_REASON)


def _echo_call(call: Any, mask: Any) -> dict[str, Any]:
    fn = getattr(call, "function", None)
    return {
        "id": call.id,
        "type": "function",
        "function": {
            "name": str(getattr(fn, "name", "") or ""),
            "arguments": mask(str(getattr(fn, "arguments", "") or "")),
        },
    }


def _retry_after(headers: Any) -> float | None:
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name) if headers is not None else None
        if value is None:
            continue
        try:
            return max(float(value) / divisor, 0.0)
        except ValueError:
            continue
    return None


def build_llm_agent(
    settings: Any,
    config: StoreConfig,
    knowledge: KnowledgeBase,
    actions: ActionRunner,
    fallback: OfflineAgent | None = None,
    *,
    keep_alive: bool = True,
    **options: Any,
) -> LLMAgent:
    """The LLM agent from OPENAI_* settings. The turn's budget is 1.5 request timeouts, capped so
    that a turn (with its summary) always ends well inside the core's own agent timeout.
    `keep_alive=False` closes each connection after its response, for callers that never call
    `aclose()` (nothing is left open when their event loop ends)."""
    request_timeout = max(float(settings.openai_timeout), 0.1)
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "not-needed"
    client = AsyncOpenAI(
        api_key=key,
        base_url=settings.openai_base_url,
        timeout=request_timeout,
        max_retries=0,  # retries are ours, within the turn's budget
        default_headers=None if keep_alive else {"Connection": "close"},
    )
    options.setdefault("request_timeout", request_timeout)
    options.setdefault("total_timeout", min(request_timeout * 1.5, 40.0))
    options.setdefault("summary_timeout", min(request_timeout, 8.0))
    return LLMAgent(
        client,
        settings.openai_model,
        config,
        knowledge,
        fallback or OfflineAgent(config, knowledge, actions),
        **options,
    )


def llm_agent_factory(settings: Any) -> Any:
    """For `handoff eval --llm`: factory(config, knowledge, actions) -> the LLM agent. The eval
    harness does not close agents, so these do not keep connections open."""

    def factory(config: StoreConfig, knowledge: KnowledgeBase, actions: ActionRunner) -> LLMAgent:
        return build_llm_agent(settings, config, knowledge, actions, keep_alive=False)

    return factory
