"""Two instances of the service on one PostgreSQL database, as behind a load balancer: a burst to
both at random, one killed mid-burst, and every message handled exactly once, in order; a reply
taken in by one instance reaches a shopper's socket on the other."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bot.shop_server import free_port
from storage.migrate import upgrade_async
from tests.conftest import INBOX_TOKEN, WIDGET_SECRET, inbox_login, signed

ROOT = Path(__file__).resolve().parent.parent
PG = os.environ.get("TEST_DATABASE_URL")
START_TIMEOUT = 90.0  # seconds for an instance to answer /healthz
pytestmark = pytest.mark.skipif(not PG, reason="needs TEST_DATABASE_URL (PostgreSQL)")


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    assert PG
    name = f"handoff_mi_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(PG, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG.rsplit("/", 1)[0] + f"/{name}"
    await upgrade_async(url)
    yield url
    async with admin.connect() as conn:
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    await admin.dispose()


class Instance:
    def __init__(self, url: str, shop_url: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        env.update(
            DATABASE_URL=url,
            INBOX_TOKEN=INBOX_TOKEN,
            WIDGET_IDENTITY_SECRET=WIDGET_SECRET,
            SHOP_API_URL=shop_url,
            LOG_LEVEL="WARNING",
            DELIVERY_LEASE_SECONDS="3",
            PROCESSING_LEASE_SECONDS="3",
            SWEEP_SECONDS="1",
            DELIVERY_POLL_SECONDS="0.05",
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "run", "--port", str(self.port)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    async def ready(self, session: aiohttp.ClientSession) -> None:
        # A start-up trains the intent classifier: about 5 s alone, 20 s and more on a machine
        # that runs other suites, so the wait is by the clock, not a count of tries.
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                async with session.get(self.base + "/healthz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if self.proc.poll() is not None:
                raise AssertionError(
                    self.proc.stderr.read().decode() if self.proc.stderr else "instance died"
                )
            await asyncio.sleep(0.1)
        raise AssertionError("instance did not start")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


QUESTIONS = [
    "How long does delivery to Austria take?",
    "What payment methods do you accept?",
    "How long do I have to return shoes?",
    "When does the next drop start?",
]


async def test_two_instances_burst_kill_and_cross_instance_reply(pg_url: str, shop: Any) -> None:
    a, b = Instance(pg_url, shop[1]), Instance(pg_url, shop[1])
    try:
        async with aiohttp.ClientSession() as http:
            await a.ready(http)
            await b.ready(http)
            rng = random.Random(3)
            convs = []
            for i in range(12):
                inst = (a, b)[i % 2]
                async with http.post(
                    inst.base + "/api/conversations", json=signed("ann@example.com")
                ) as r:
                    data = await r.json()
                convs.append((data["conversation_id"], data["token"]))

            # One shopper keeps a socket on instance A for the cross-instance check.
            watch_id, watch_token = convs[0]
            ws = await http.ws_connect(
                f"{a.base}/api/conversations/{watch_id}/ws?token={watch_token}"
            )
            alive = [a, b]

            async def send(cid: int, token: str, n: int) -> None:
                text_ = QUESTIONS[n % len(QUESTIONS)] + f" (#{n})"
                body = {"text": text_, "client_id": f"{cid}-{n}"}
                for _ in range(
                    50
                ):  # like a widget: on failure, retry elsewhere with the same client_id
                    inst = rng.choice(alive)
                    try:
                        async with http.post(
                            f"{inst.base}/api/conversations/{cid}/messages?token={token}", json=body
                        ) as r:
                            if r.status == 200:
                                return
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.05)
                raise AssertionError(f"could not send {body}")

            async def shopper(cid: int, token: str) -> None:
                for n in range(6):
                    await send(cid, token, n)
                    await asyncio.sleep(rng.uniform(0, 0.05))

            burst = asyncio.gather(*[shopper(cid, tok) for cid, tok in convs[1:]])
            await asyncio.sleep(0.4)
            b.kill()  # mid-burst
            alive.remove(b)
            await burst

            # Hand the watched conversation off through A, answer it as a person through a new B.
            await send(watch_id, watch_token, 100)
            async with http.post(
                f"{a.base}/api/conversations/{watch_id}/messages?token={watch_token}",
                json={"text": "I want to talk to a person", "client_id": "human-please"},
            ) as r:
                assert r.status == 200
            b2 = Instance(pg_url, shop[1])
            try:
                await b2.ready(http)
                AUTH = await inbox_login(http, "Maria", b2.base)

                async def queued() -> bool:
                    async with http.get(
                        f"{b2.base}/inbox/api/conversations/{watch_id}", headers=AUTH
                    ) as r:
                        return (await r.json())["conversation"]["state"] == "queued"

                for _ in range(200):
                    if await queued():
                        break
                    await asyncio.sleep(0.05)
                async with http.post(
                    f"{b2.base}/inbox/api/conversations/{watch_id}/reply",
                    headers=AUTH,
                    json={"text": "Hello from instance B"},
                ) as r:
                    assert r.status == 200

                async def human_frame() -> dict[str, Any]:
                    while True:
                        frame = await ws.receive_json()
                        if frame.get("type") == "message" and frame.get("role") == "human":
                            return frame

                frame = await asyncio.wait_for(human_frame(), 10)
                assert frame["text"] == "Hello from instance B"
                await ws.close()

                # Exactly once and in order, per conversation, after everything settled.
                for cid, token in convs[1:]:
                    for _ in range(300):
                        async with http.get(
                            f"{a.base}/api/conversations/{cid}/messages?token={token}"
                        ) as r:
                            msgs = (await r.json())["messages"]
                        if sum(m["role"] == "agent" for m in msgs) >= 6:
                            break
                        await asyncio.sleep(0.05)
                    shopper_msgs = [m["text"] for m in msgs if m["role"] == "shopper"]
                    assert shopper_msgs == [
                        QUESTIONS[n % len(QUESTIONS)] + f" (#{n})" for n in range(6)
                    ], cid
                    agent_msgs = [m for m in msgs if m["role"] == "agent"]
                    assert len(agent_msgs) == 6, (cid, [(m["role"], m["text"][:30]) for m in msgs])
                    # each answer follows the question it answers
                    roles = [m["role"] for m in msgs]
                    assert roles == ["shopper", "agent"] * 6 or _answers_follow(roles), roles
            finally:
                b2.stop()
    finally:
        a.stop()
        b.stop()


def _answers_follow(roles: list[str]) -> bool:
    """Every prefix has at least as many questions as answers (no answer before its question)."""
    asked = answered = 0
    for r in roles:
        asked += r == "shopper"
        answered += r == "agent"
        if answered > asked:
            return False
    return asked == answered
