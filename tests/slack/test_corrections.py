"""Correction that teaches, in Slack (signed requests through the real Bolt app, a fake Slack on
127.0.0.1): a retag on the ticket or "Wrong handoff" makes the shopper's message a pending
example; `handoff examples accept` lets it change the next `handoff eval`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli import run_cli
from tests.conftest import SHOP
from tests.slack.conftest import Harness

KNOWLEDGE = Path(__file__).resolve().parent.parent.parent / "examples" / "flash-sale" / "knowledge"
# A shopper who changed their mind, in words the shipped examples do not have: the classifier
# reads a charge that "should never have happened" as fraud.
REMORSE = "That charge from last night should never have happened, I changed my mind about the jacket"


def _scenario(tmp_path: Path) -> Path:
    path = tmp_path / "remorse.jsonl"
    scenario = {
        "id": "remorse",
        "customer": {"name": "Ann", "email": "ann@example.com"},
        "shop": SHOP,
        "turns": [REMORSE, "It's FP-100234"],
        "expect": {"escalate": True, "tags": ["cancellation"], "by_turn": 2},
    }
    path.write_text(json.dumps(scenario) + "\n")
    return path


async def _eval_failures(tmp_path: Path, scenarios: Path) -> list[str]:
    out = tmp_path / "eval.json"
    code, _ = await run_cli("eval", str(scenarios), "--knowledge", str(KNOWLEDGE), "--json", str(out), "--quiet")
    assert code == 0
    [result] = json.loads(out.read_text())["results"]
    return list(result["failures"])


async def test_a_retag_in_slack_becomes_an_example_that_once_accepted_changes_the_next_eval(
    h: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", h.svc.settings.database_url)
    scenarios = _scenario(tmp_path)
    cid, _ = await h.shopper(REMORSE)
    channel, ts = await h.thread(cid)
    assert (await h.svc.core.get(cid)).tags == ("fraud-review",), "the classifier must misread it"

    # Sam puts the right tag on and takes the wrong one off, in the ticket's tag picker.
    await h.pick_tag(cid, "cancellation", channel, ts, user="U2")
    await h.pick_tag(cid, "fraud-review", channel, ts, user="U2")
    assert (await h.svc.core.get(cid)).tags == ("cancellation",)

    code, out = await run_cli("examples", "list", "--json")
    [example] = json.loads(out)
    assert (example["text"], example["label"], example["status"]) == (REMORSE, "cancel", "pending")
    assert (example["conversation_id"], example["actor"], example["cause"]) == (cid, "Sam Chen", "retag")

    # Pending, it teaches nothing yet: the eval still reads fraud.
    assert await _eval_failures(tmp_path, scenarios) == [
        "tags: expected ['cancellation'], got ['fraud-review']"
    ]
    # The dry run with it shows what accepting it would change in the store's own chats.
    code, out = await run_cli("eval", "--replay", "24h", "--examples", "pending")
    assert f"#{cid}: handed off at turn 1 [fraud-review] -> not handed off" in out
    assert "the team's tags now: cancellation" in out

    code, out = await run_cli("examples", "accept", str(example["id"]), "--by", "Lee")
    assert code == 0 and out.startswith(f"accepted: #{example['id']}")
    assert await _eval_failures(tmp_path, scenarios) == []
    [example] = json.loads((await run_cli("examples", "list", "--status", "accepted", "--json"))[1])
    assert example["reviewed_by"] == "Lee"


async def test_wrong_handoff_button_and_command(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", h.svc.settings.database_url)
    cid, token = await h.shopper("Can I talk to a person please?")
    channel, ts = await h.thread(cid)
    wrong = next(b for b in h.parent(ts)["blocks"] if b.get("block_id") == f"handoff-correct:{cid}")
    assert [e["action_id"] for e in wrong["elements"]] == ["handoff_wrong"]

    await h.press("handoff_wrong", str(cid), channel, ts, user="U2")
    [answer] = h.slack.responses  # to the person who pressed it, nobody else
    assert answer["response_type"] == "ephemeral" and answer["replace_original"] is False
    assert "“Can I talk to a person please?” waits for review as an example of 'none'" in answer["text"]
    [example] = json.loads((await run_cli("examples", "list", "--json"))[1])
    assert (example["text"], example["label"], example["actor"]) == (
        "Can I talk to a person please?", "none", "Sam Chen"
    )
    assert (await h.svc.core.get(cid)).state == "queued"  # the shopper still gets their person

    again = await h.command(f"wrong #{cid} they only wanted the tracking link")
    assert again.startswith(f"#{cid}: marked as a handoff that should not have happened.")
    assert f"already example #{example['id']} of 'none' (pending)" in again

    # Another chat, handed off after the agent offered a person: the question is the example,
    # not the "yes"; the note is masked like everything else people type.
    other, token = await h.shopper("Do you sell gift cards for the flagship store in Lisbon?")
    await h.say(other, token, "yes please")
    await h.thread(other)
    said = await h.command(f"wrong #{other} card 4111 1111 1111 1111 was in their question")
    assert "“Do you sell gift cards for the flagship store in Lisbon?” waits for review" in said
    examples = json.loads((await run_cli("examples", "list", "--status", "pending", "--json"))[1])
    assert examples[-1]["note"].startswith("card [card ") and "4111 1111" not in json.dumps(examples)

    bot, _ = await h.shopper("How long does delivery to Germany take?")
    assert await h.command(f"wrong #{bot}") == f"The assistant did not hand off #{bot}."
    assert "/handoff wrong #42" in await h.command("help")
