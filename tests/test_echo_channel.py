"""A new channel is one folder and one line: the test-only echo channel (tests/echo_channel.py),
added where the app is built and nowhere else, runs the whole loop: a shopper asks, the agent
answers, hands off, a person replies from the web inbox, the shopper reads it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.app import BRIDGES, SERVICES, build_app
from domain.storeconfig import StoreConfig
from tests import echo_channel
from tests.conftest import eventually, inbox_login, make_settings


@pytest.fixture
async def client(
    tmp_path: Path, shop: tuple[Any, str], store_config: StoreConfig
) -> AsyncIterator[TestClient]:
    app = build_app(
        make_settings(tmp_path, shop[1]),
        store_config,
        bridges=[*BRIDGES, echo_channel.build],  # the one line
    )
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    yield client
    await client.close()


async def test_the_echo_channel_runs_the_whole_loop(client: TestClient) -> None:
    async def screen() -> list[str]:
        return list((await (await client.get("/echo/ann")).json())["messages"])

    async def shown(n: int) -> list[str]:
        async def enough() -> list[str] | None:
            got = await screen()
            return got if len(got) >= n else None

        result: list[str] = await eventually(enough)
        return result

    resp = await client.post("/echo/ann", json={"id": 1, "text": "What payment methods do you accept?"})
    assert resp.status == 200
    cid = (await resp.json())["conversation_id"]
    assert "card" in (await shown(1))[0].lower()  # the agent answered from the store's pages
    assert (await client.post("/echo/ann", json={"id": 1, "text": "again?"})).status == 200
    await client.post("/echo/ann", json={"id": 2, "text": "Can I talk to a person please?"})
    handoff = (await shown(2))[1]
    assert "human-requested" in (await client.app[SERVICES].core.get(cid)).tags
    staff = await inbox_login(client)
    listing = await (await client.get("/inbox/api/conversations", headers=staff)).json()
    assert [c["channel"] for c in listing["conversations"] if c["id"] == cid] == ["echo"]
    resp = await client.post(
        f"/inbox/api/conversations/{cid}/reply", json={"text": "Hi Ann, Maria here."}, headers=staff
    )
    assert resp.status == 200
    await shown(3)
    services = client.app[SERVICES]
    await services.core.idle()
    await services.worker.drain()
    # Each once, in order; the redelivered message id 1 was not taken (or answered) again.
    assert await screen() == [(await screen())[0], handoff, "Maria Lopez: Hi Ann, Maria here."]
    echo = services.bridges["echo"]
    assert echo.states["ann"] == ["queued", "claimed"]  # type: ignore[attr-defined]
    assert (await services.core.get(cid)).state == "claimed"
