"""`handoff eval --replay SINCE`: the store's own conversations played again through the current
YAML; what would change is printed, before -> after. The store's API is not called: the replay
answers each lookup with what the stored lookup captured."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from domain.storeconfig import DEFAULT_CONFIG
from tests.cli import run_cli
from tests.conftest import services, signed

PERSON = "Can I talk to a person please?"
PAYMENT = "My payment for FP-100311 failed, can you help?"
QUESTION = "How long does delivery to Germany take?"


async def _chat(client: Any, *texts: str) -> int:
    data = await (await client.post("/api/conversations", json=signed("ann@example.com", name="Ann"))).json()
    for i, text in enumerate(texts):
        await client.post(
            f"/api/conversations/{data['conversation_id']}/messages?token={data['token']}",
            json={"text": text, "client_id": str(i)},
        )
        await services(client).core.idle()
    return int(data["conversation_id"])


async def test_replay_shows_the_decisions_a_yaml_change_would_change(
    make_client: Any, shop: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await make_client()
    monkeypatch.setenv("DATABASE_URL", services(client).settings.database_url)
    person = await _chat(client, PERSON)
    payment = await _chat(client, PAYMENT)
    question = await _chat(client, QUESTION)
    core = services(client).core
    assert (await core.get(person)).tags == ("human-requested",)
    assert (await core.get(payment)).tags == ("payment-failure",)
    assert (await core.get(question)).handed_off_at is None

    # The shop's data has changed since (the payment went through): the replay uses what the
    # lookup captured then, so the same YAML changes nothing.
    shop[0].load({"orders": {}, "customers": {}})
    code, out = await run_cli("eval", "--replay", "24h")
    assert code == 0, out
    assert out.splitlines()[0].startswith("Replayed 3 conversations started since ")
    assert "Nothing would change." in out

    # The store decides a request for a person alone no longer hands off.
    text = DEFAULT_CONFIG.read_text()
    old = "if: \"'human' in intents and not tags\""
    assert old in text
    changed = tmp_path / "handoff.yaml"
    changed.write_text(text.replace(old, "if: \"'human' in intents and not tags and orders_named\""))
    (tmp_path / "knowledge").symlink_to(DEFAULT_CONFIG.parent / "knowledge")
    code, out = await run_cli("eval", "--replay", "24h", "--config", str(changed))
    assert code == 0, out
    lines = out.splitlines()
    assert "1 would change (before -> after):" in lines
    assert f"  #{person}: handed off at turn 1 [human-requested] -> not handed off" in lines
    assert f"      turn 1: {PERSON}" in lines
    assert lines[-1] == "2 unchanged."

    # Conversations started before the window are not replayed.
    code, out = await run_cli("eval", "--replay", "0h", "--config", str(changed))
    assert out.splitlines()[0].startswith("Replayed 0 conversations")
    code, out = await run_cli("eval", "--replay", "yesterday")
    assert code == 2
