"""When the model's endpoint misbehaves: 429 with Retry-After, 500, hangs, unreadable replies,
malformed and endless tool calls, a wrong key. Retries stay within the turn's budget; then the
built-in agent answers (or the team takes over, tagged ai-unavailable), and the shopper never
waits on a dead request."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from storage.models import Message
from tests.conftest import services
from tests.llm.conftest import agent_of
from tests.llm.fake_openai import FakeOpenAI, garbage, hang, status, text, tool
from tests.llm.helpers import Chat, say, tool_results


async def agent_meta(client: TestClient, chat: Chat) -> dict[str, Any]:
    async with services(client).core.sessions() as s:
        m = await s.scalar(
            select(Message)
            .where(Message.conversation_id == chat.id, Message.role == "agent")
            .order_by(Message.id.desc())
            .limit(1)
        )
    assert m is not None
    return dict(m.meta)


async def test_429_with_retry_after_is_honoured_then_answered(
    client: TestClient, llm: FakeOpenAI
) -> None:
    llm.script = [status(429, retry_after=0.3), text("Hello! How can I help with your order?")]
    chat, reply = await say(client, "hello there, quick question")
    assert reply["text"] == "Hello! How can I help with your order?"
    assert len(llm.requests) == 2 and llm.times[1] - llm.times[0] >= 0.3
    meta = await agent_meta(client, chat)
    assert meta["agent"] == "llm" and meta["llm_retries"] == 1


async def test_a_retry_after_beyond_the_budget_is_not_waited_for(
    client: TestClient, llm: FakeOpenAI
) -> None:
    llm.script = [status(429, retry_after=30)]
    t0 = time.monotonic()
    chat, reply = await say(client, "What payment methods do you accept?")
    assert time.monotonic() - t0 < 1.5 and len(llm.requests) == 1
    assert reply["sources"] == ["payments.md"]  # the built-in agent's answer
    assert (await agent_meta(client, chat))["agent"] == "offline"


async def test_server_errors_are_retried_then_the_builtin_agent_answers(
    client: TestClient, llm: FakeOpenAI
) -> None:
    llm.script = [status(500), status(502), status(503)]
    chat, reply = await say(client, "How long does delivery to Austria take?")
    assert len(llm.requests) == 3  # the first try and two retries
    assert reply["role"] == "agent" and reply["sources"] == ["shipping.md"]
    meta = await agent_meta(client, chat)
    assert meta["agent"] == "offline" and "LLMUnavailable" in meta["llm_error"]
    assert (await chat.conversation()).state == "bot"


async def test_one_server_error_is_retried_and_the_model_answers(
    client: TestClient, llm: FakeOpenAI
) -> None:
    llm.script = [
        status(500),
        tool("search_knowledge", {"query": "returns"}),
        text("You have 30 days from delivery to return unworn items. [source: returns.md]"),
    ]
    _, reply = await say(client, "how long do I have to send shoes back?")
    assert reply["sources"] == ["returns.md"] and "30 days" in reply["text"]


async def test_a_hanging_model_does_not_make_the_shopper_wait(
    llm_client: Any, llm: FakeOpenAI
) -> None:
    client = await llm_client(openai_timeout=0.5)  # a turn's budget: 0.75 s
    llm.script = [hang(2), hang(2), hang(2)]
    t0 = time.monotonic()
    _, reply = await say(client, "What payment methods do you accept?")
    assert time.monotonic() - t0 < 1.5
    assert reply["sources"] == ["payments.md"]


async def test_an_unreadable_reply_is_retried(client: TestClient, llm: FakeOpenAI) -> None:
    llm.script = [garbage(), text("Hi there! How can I help?")]
    _, reply = await say(client, "hi")
    assert reply["text"] == "Hi there! How can I help?" and len(llm.requests) == 2


async def test_malformed_tool_arguments_are_answered_and_recovered(
    client: TestClient, llm: FakeOpenAI
) -> None:
    llm.script = [
        tool("search_knowledge", "{not json"),
        tool("search_knowledge", {"query": "returns"}),
        text("You have 30 days to return unworn items. [source: returns.md]"),
    ]
    _, reply = await say(client, "how long for returns?")
    assert "valid JSON" in tool_results(llm.requests[1])[0]["error"]
    assert reply["sources"] == ["returns.md"]


async def test_a_model_that_keeps_calling_tools_badly_gives_way(
    client: TestClient, llm: FakeOpenAI
) -> None:
    llm.script = [
        tool("search_knowledge", "{not json"),
        tool("delete_all_orders", {}),
        tool("search_knowledge", {"query": ""}),
    ]
    chat, reply = await say(client, "What payment methods do you accept?")
    assert len(llm.requests) == 3
    errors = [r["error"] for r in tool_results(llm.requests[2])]
    assert "valid JSON" in errors[0] and "no tool called 'delete_all_orders'" in errors[1]
    assert reply["sources"] == ["payments.md"]
    meta = await agent_meta(client, chat)
    assert meta["agent"] == "offline" and "malformed" in meta["llm_error"]


async def test_the_tool_loop_is_bounded(client: TestClient, llm: FakeOpenAI) -> None:
    llm.script = [tool("search_knowledge", {"query": f"sizes {i}"}) for i in range(10)]
    chat, reply = await say(client, "Do your sneakers run small or large?")
    steps = agent_of(client).max_steps
    assert len(llm.requests) == steps
    assert [r["tool_choice"] for r in llm.requests] == ["auto"] * (steps - 1) + ["none"]
    assert reply["role"] == "agent"
    assert (await agent_meta(client, chat))["agent"] == "offline"


async def test_a_wrong_key_is_not_retried(llm_client: Any, llm: FakeOpenAI) -> None:
    client = await llm_client(openai_api_key="sk-wrong")
    chat, reply = await say(client, "What payment methods do you accept?")
    assert len(llm.requests) == 0  # refused before the body was read: nothing recorded
    assert reply["sources"] == ["payments.md"]
    assert "AuthenticationError" in (await agent_meta(client, chat))["llm_error"]


async def test_the_circuit_breaker_rests_a_dead_endpoint(
    client: TestClient, llm: FakeOpenAI
) -> None:
    agent = agent_of(client)
    agent.max_retries, agent.breaker_cooldown = 0, 0.5
    llm.script = [status(500), status(500)]
    chat = await Chat.start(client)
    await chat.say("What payment methods do you accept?")
    await chat.say("How long does delivery to Austria take?")
    assert len(llm.requests) == 2 and not agent.available()
    t0 = time.monotonic()
    reply = await chat.say("How long do I have for returns?")
    assert len(llm.requests) == 2  # not asked at all while resting
    assert reply["sources"] == ["returns.md"] and time.monotonic() - t0 < 0.4
    assert (await agent_meta(client, chat))["llm_error"] == "circuit open"
    await asyncio.sleep(0.5)
    llm.script = [text("Happy to help with anything else!")]
    reply = await chat.say("thanks, that's all")
    assert reply["text"] == "Happy to help with anything else!" and agent.available()


async def test_the_store_can_send_the_chat_to_a_person_when_the_ai_fails(
    client: TestClient, llm: FakeOpenAI
) -> None:
    agent = agent_of(client)
    agent.on_failure = "handoff"
    llm.script = [status(500)] * 3
    chat, reply = await say(client, "How long does delivery to Austria take?")
    conv = await chat.conversation()
    assert conv.state == "queued" and conv.tags == ("ai-unavailable",)
    assert "unavailable" in conv.reason and "specialist" in reply["text"]
    assert len(llm.requests) == 3  # no summary asked of a dead endpoint


async def test_when_neither_agent_can_answer_the_team_sees_the_ai_was_down(
    client: TestClient, llm: FakeOpenAI
) -> None:
    llm.script = [status(500)] * 3
    chat, _ = await say(client, "Do you offer gift wrapping with a handwritten card?")
    conv = await chat.conversation()
    assert conv.state == "queued" and set(conv.tags) == {"unanswered", "ai-unavailable"}


async def test_the_summary_falls_back_to_the_template(client: TestClient, llm: FakeOpenAI) -> None:
    llm.script = [status(500)] * 3
    t0 = time.monotonic()
    chat, reply = await say(client, "My payment for FP-100311 failed")
    conv = await chat.conversation()
    assert conv.state == "queued" and conv.tags == ("payment-failure",)
    assert "Facts:" not in conv.summary and "FP-100311" in conv.summary
    assert "specialist" in reply["text"] and time.monotonic() - t0 < 2.5
