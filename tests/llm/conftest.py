"""Fixtures for the LLM agent's tests: the fake OpenAI-compatible server, and the whole service
pointed at it by OPENAI_BASE_URL with the real openai client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from agent.llm import LLMAgent
from tests.conftest import services
from tests.llm.fake_openai import API_KEY, FakeOpenAI


@pytest.fixture
async def llm() -> AsyncIterator[FakeOpenAI]:
    fake = await FakeOpenAI().start()
    yield fake
    await fake.close()
    assert fake.leaked_cards == [], f"a card number reached the LLM: {fake.leaked_cards}"


@pytest.fixture
def llm_client(make_client: Any, llm: FakeOpenAI) -> Any:
    """make_client with the LLM agent on the fake server (fast timeouts for tests)."""

    async def factory(**overrides: Any) -> TestClient:
        settings = {
            "openai_api_key": API_KEY,
            "openai_base_url": llm.url,
            "openai_model": "fake-1",
            "openai_timeout": 2.0,
            **overrides,
        }
        return await make_client(**settings)

    return factory


@pytest.fixture
async def client(llm_client: Any) -> TestClient:
    return await llm_client()


def agent_of(client: TestClient) -> LLMAgent:
    agent = services(client).core.agent
    assert isinstance(agent, LLMAgent)
    return agent
