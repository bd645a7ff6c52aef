"""The LLM agent on its own (no service around it): the agent's own masking, for text that was
stored before a mask pattern was configured; the fake server's card detector itself; the settings
that build the agent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from openai import AsyncOpenAI

from agent.actions import ActionRunner
from agent.knowledge import KnowledgeBase
from agent.llm import LLMAgent, build_llm_agent
from agent.offline import OfflineAgent
from domain.ports import ConversationView, CustomerView, MessageView
from domain.settings import Settings
from tests.llm.fake_openai import API_KEY, FakeOpenAI, cards_in, text

NOW = datetime.now(UTC)


def conversation(email: str | None = "ann@example.com") -> ConversationView:
    return ConversationView(
        id=7,
        channel="widget",
        channel_ref=None,
        state="bot",
        owner=None,
        priority=0,
        tags=(),
        reason=None,
        summary=None,
        context={},
        memory={},
        sale=None,
        inbox_ref=None,
        blocked=False,
        customer=CustomerView(id=1, channel="widget", external_id="w1", email=email),
        created_at=NOW,
    )


def message(i: int, role: str, text_: str) -> MessageView:
    return MessageView(id=i, conversation_id=7, role=role, text=text_, author=None, created_at=NOW)


@pytest.fixture
async def agent(
    llm: FakeOpenAI, store_config: Any, shop: tuple[Any, str]
) -> AsyncIterator[LLMAgent]:
    cfg = store_config.model_copy(deep=True)
    cfg.mask_patterns = [r"\bDE\d{20}\b"]
    kb = KnowledgeBase.from_folder(cfg.knowledge_path)
    actions = ActionRunner(cfg, shop[1])
    settings = Settings(
        _env_file=None, openai_api_key=API_KEY, openai_base_url=llm.url, openai_timeout=2.0
    )
    agent = build_llm_agent(settings, cfg, kb, actions, OfflineAgent(cfg, kb, actions))
    yield agent
    await agent.aclose()
    await actions.close()


async def test_the_fake_server_catches_a_card_number(llm: FakeOpenAI) -> None:
    assert cards_in("pay with 4111 1111 1111 1111 or 5500-0000-0000-0004") == [
        "4111 1111 1111 1111",
        "5500-0000-0000-0004",
    ]
    assert cards_in("[card ending 1111], order 100234, call_12, 4111 1111 1111 1112") == []
    client = AsyncOpenAI(api_key=API_KEY, base_url=llm.url, max_retries=0)
    llm.script = [text("ok")]
    await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "my card: 4111 1111 1111 1111"}]
    )
    await client.close()
    assert llm.leaked_cards  # the detector works...
    llm.leaked_cards.clear()  # ...and this one was on purpose


async def test_the_agent_masks_what_was_stored_unmasked(agent: LLMAgent, llm: FakeOpenAI) -> None:
    # Rows stored before masking (or before the IBAN pattern was added) are masked on the way out.
    history = [
        message(1, "shopper", "card 4111111111111111, IBAN DE44500105175407324931"),
        message(2, "agent", "Please don't send card numbers here."),
        message(3, "note", "internal: customer is difficult, card 5500 0000 0000 0004"),
        message(4, "shopper", "so can I still pay by Klarna in a drop?"),
    ]
    llm.script = [text("Klarna is not available for drop items. [source: payments.md]")]
    turn = await agent.respond(conversation(), history)
    assert turn.sources == []  # cited a file it never searched: not a source
    sent = llm.requests[0]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert sent[1]["content"] == "card [card ending 1111], IBAN [redacted]"
    assert "difficult" not in str(sent) and "0004" not in str(sent)  # staff notes stay home


async def test_settings_build_a_bounded_agent(llm: FakeOpenAI, agent: LLMAgent) -> None:
    assert agent.request_timeout == 2.0 and agent.total_timeout == 3.0
    assert agent.summary_timeout == 2.0 and agent.client.max_retries == 0
    assert agent.model == "gpt-4o-mini"
