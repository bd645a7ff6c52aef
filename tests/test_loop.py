"""The whole handoff loop through real HTTP and WebSockets: shopper → agent → inbox → shopper."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp.test_utils import TestClient

from tests.conftest import eventually, inbox_login, services


async def _start(client: TestClient, **body: Any) -> tuple[int, str]:
    resp = await client.post("/api/conversations", json=body)
    assert resp.status == 200
    data = await resp.json()
    return data["conversation_id"], data["token"]


async def _next(
    ws: Any, want: str, role: str | None = None, timeout: float = 10.0
) -> dict[str, Any]:
    """The next server frame of a type (and role), skipping others."""

    async def read() -> dict[str, Any]:
        while True:
            frame = await ws.receive_json()
            if frame.get("type") == want and (role is None or frame.get("role") == role):
                return frame

    return await asyncio.wait_for(read(), timeout)


async def test_question_answered_from_knowledge_with_source(make_client: Any) -> None:
    client = await make_client()
    cid, token = await _start(client, email="ann@example.com", name="Ann")
    async with client.ws_connect(f"/api/conversations/{cid}/ws?token={token}") as ws:
        assert (await _next(ws, "state"))["state"] == "bot"
        await ws.send_json(
            {
                "type": "message",
                "text": "How long does delivery to Austria take?",
                "client_id": "c1",
            }
        )
        echo = await _next(ws, "message", "shopper")
        assert echo["text"] == "How long does delivery to Austria take?"
        reply = await _next(ws, "message", "agent")
    assert reply["sources"] == ["shipping.md"]
    assert "2–4 working days" in reply["text"]


async def test_full_loop_handoff_human_reply_back_to_ai_and_restart(
    make_client: Any, tmp_path: Any
) -> None:
    client = await make_client()
    cid, token = await _start(client, email="ann@example.com", name="Ann")
    ws = await client.ws_connect(f"/api/conversations/{cid}/ws?token={token}")
    await _next(ws, "state")
    await ws.send_json(
        {"type": "message", "text": "Can I talk to a real person please?", "client_id": "c1"}
    )
    expectation = await _next(ws, "message", "agent")
    assert "minutes" in expectation["text"] or "person will reply" in expectation["text"]
    assert (await _next(ws, "state"))["state"] == "queued"

    # The inbox sees it with its tag and the full history (Maria Lopez signed in).
    AUTH = await inbox_login(client, "Maria Lopez")
    resp = await client.get("/inbox/api/conversations?state=open", headers=AUTH)
    queue = (await resp.json())["conversations"]
    assert [c["id"] for c in queue] == [cid]
    assert queue[0]["tags"] == ["human-requested"]
    detail = await (await client.get(f"/inbox/api/conversations/{cid}", headers=AUTH)).json()
    assert [m["role"] for m in detail["messages"]] == ["shopper", "agent"]

    # While queued the agent stays silent; the shopper's message waits for the person.
    await ws.send_json({"type": "message", "text": "It's about a gift order", "client_id": "c2"})
    await _next(ws, "message", "shopper")

    # A person replies from the inbox: it reaches the shopper's socket and claims the chat.
    resp = await client.post(
        f"/inbox/api/conversations/{cid}/reply",
        json={"text": "Hi Ann, Maria here. How can I help?"},
        headers=AUTH,
    )
    assert resp.status == 200
    human = await _next(ws, "message", "human")
    assert human["text"] == "Hi Ann, Maria here. How can I help?"
    assert human["author"] == "Maria Lopez"
    assert (await _next(ws, "state"))["state"] == "claimed"

    # An internal note never reaches the shopper.
    await client.post(
        f"/inbox/api/conversations/{cid}/reply",
        json={"text": "; checking the gift order"},
        headers=AUTH,
    )

    # Back to AI: the agent answers again.
    resp = await client.post(
        f"/inbox/api/conversations/{cid}/command",
        json={"command": "bot"},
        headers=AUTH,
    )
    assert resp.status == 200
    assert (await _next(ws, "state"))["state"] == "bot"
    await ws.send_json(
        {"type": "message", "text": "How long does delivery to Germany take?", "client_id": "c3"}
    )
    answer = await _next(ws, "message", "agent")
    assert answer["sources"] == ["shipping.md"]
    await ws.close()

    # Restart the service on the same database mid-conversation: nothing lost or repeated.
    await services(client).worker.drain()
    await client.close()
    client2 = await make_client()
    again = await client2.post(
        f"/api/conversations/{cid}/messages?token={token}",
        json={"text": "How long does delivery to Germany take?", "client_id": "c3"},
    )
    assert again.status == 200  # same client_id: the same message, not a new one
    history = (
        await (await client2.get(f"/api/conversations/{cid}/messages?token={token}")).json()
    )["messages"]
    texts = [(m["role"], m["text"]) for m in history]
    assert (
        sum(
            1
            for r, t in texts
            if r == "shopper" and t.startswith("How long does delivery to Germany")
        )
        == 1
    )
    assert ("note", "checking the gift order") not in texts and all(r != "note" for r, _ in texts)
    assert [r for r, _ in texts].count("human") == 1


async def test_message_stored_before_restart_is_answered_after_it(make_client: Any) -> None:
    client = await make_client()
    cid, token = await _start(client, email="ann@example.com")
    svc = services(client)
    # Simulate a crash between intake and the agent's turn: store without processing.
    await svc.core.shopper_message(
        cid, "What payment methods do you accept?", source="widget", platform_id="x1", answer=False
    )
    async with svc.core.sessions() as s, s.begin():
        from sqlalchemy import update

        from storage.models import Message

        await s.execute(update(Message).where(Message.conversation_id == cid).values(handled=False))
    await client.close()
    client2 = await make_client()

    async def answered() -> list[dict[str, Any]]:
        data = await (await client2.get(f"/api/conversations/{cid}/messages?token={token}")).json()
        return [m for m in data["messages"] if m["role"] == "agent"]

    replies = await eventually(answered)
    assert len(replies) == 1 and replies[0]["sources"] == ["payments.md"]


async def test_wrong_token_is_forbidden_and_reveals_nothing(make_client: Any) -> None:
    client = await make_client()
    cid, token = await _start(client)
    for path in (
        f"/api/conversations/{cid}/messages?token=nope",
        f"/api/conversations/{cid + 999}/messages?token={token}",
    ):
        resp = await client.get(path)
        assert resp.status == 403
        assert await resp.json() == {"error": "forbidden"}
    resp = await client.post(f"/api/conversations/{cid}/messages?token=nope", json={"text": "hi"})
    assert resp.status == 403


async def test_bad_input_gets_clear_errors(make_client: Any) -> None:
    client = await make_client()
    cid, token = await _start(client)
    url = f"/api/conversations/{cid}/messages?token={token}"
    resp = await client.post(url, json={"text": "x" * 5000, "client_id": "big"})
    assert resp.status == 400 and "too long" in (await resp.json())["error"]
    resp = await client.post(url, data=b"{not json", headers={"Content-Type": "application/json"})
    assert resp.status == 400 and "JSON" in (await resp.json())["error"]
    resp = await client.post(url, data=b"x" * 70000, headers={"Content-Type": "application/json"})
    assert resp.status == 413
    resp = await client.post(url, json={"text": "   "})
    assert resp.status == 400
    async with client.ws_connect(f"/api/conversations/{cid}/ws?token={token}") as ws:
        await _next(ws, "state")
        await ws.send_str("not json")
        assert "JSON" in (await _next(ws, "error"))["error"]
        await ws.send_json({"type": "message", "text": "y" * 5000, "client_id": "c9"})
        err = await _next(ws, "error")
        assert err["client_id"] == "c9" and "too long" in err["error"]
    # nothing of the bad input was stored
    history = (await (await client.get(url)).json())["messages"]
    assert history == []


async def test_inbox_requires_a_signed_in_person(make_client: Any) -> None:
    client = await make_client()
    assert (await client.get("/inbox/api/conversations")).status == 401
    assert (
        await client.get("/inbox/api/conversations", headers={"Authorization": "Bearer wrong"})
    ).status == 401
    assert (await client.get("/inbox")).status == 200  # the page itself, which asks to sign in


async def test_card_numbers_are_masked_before_storage(make_client: Any) -> None:
    client = await make_client()
    cid, token = await _start(client)
    await client.post(
        f"/api/conversations/{cid}/messages?token={token}",
        json={"text": "my card 4111 1111 1111 1111 was charged twice", "client_id": "m"},
    )
    history = (await (await client.get(f"/api/conversations/{cid}/messages?token={token}")).json())[
        "messages"
    ]
    assert "4111 1111 1111 1111" not in history[0]["text"]
    assert "[card ending 1111]" in history[0]["text"]


async def test_healthz(make_client: Any) -> None:
    client = await make_client()
    resp = await client.get("/healthz")
    assert resp.status == 200 and (await resp.json())["ok"] is True
