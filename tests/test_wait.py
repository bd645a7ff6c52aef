"""An honest wait: at a handoff the shopper is told their place among the unclaimed handoffs of
the same routing and the recent time to claim (the SLA until there are enough claims), or when
people are back; if the wait slips well past that, one follow-up, never after a claim, once
across restarts. The service runs on a fake clock that moves only when the test moves it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agent import rules
from agent.language import detect_language
from domain.storeconfig import StoreConfig
from domain.waiting import estimate_minutes, followup_due
from tests.clock import FakeClock
from tests.conftest import services
from tests.test_agent_trust import Chat

OPEN = datetime(2026, 11, 25, 11, 0, tzinfo=UTC)  # a Wednesday, noon in Amsterdam: open
ASK = "Can I talk to a person please?"
NO_PERIODIC = 86_400.0  # the test runs the follow-up check itself, at the fake times it chooses


async def handoff(client: Any, text: str = ASK, email: str | None = None) -> tuple[Chat, str]:
    chat = await Chat.open(client, email)
    reply = await chat.say(text)
    assert (await services(client).core.get(chat.cid)).state == "queued", reply
    return chat, reply


async def claim(client: Any, chat: Chat) -> None:
    result = await services(client).core.staff_command(chat.cid, "claim", actor="Maria Lopez")
    assert result.ok


async def shopper_lines(client: Any, chat: Chat) -> list[str]:
    url = f"/api/conversations/{chat.cid}/messages?token={chat.token}"
    msgs = (await (await client.get(url)).json())["messages"]
    return [m["text"] for m in msgs if m["role"] in ("agent", "system")]


async def followups(client: Any, chat: Chat) -> list[str]:
    return [t for t in await shopper_lines(client, chat) if t.startswith("Still on it")]


def routed(config: StoreConfig, tag: str, channel: str) -> StoreConfig:
    cfg = config.model_copy(deep=True)
    cfg.tags[tag].channel = channel
    return cfg


async def test_place_in_line_counts_the_same_routing_and_a_claim_moves_everyone_up(
    make_client: Any, store_config: StoreConfig
) -> None:
    clock = FakeClock(OPEN)
    client = await make_client(routed(store_config, "cancellation", "C_CANCEL"), clock=clock, wait_check_seconds=NO_PERIODIC)
    chats, replies = zip(*[await handoff(client) for _ in range(3)], strict=True)
    assert "You're next in line; a person will reply here within 15 minutes." in replies[0]
    assert "You're 2nd in line" in replies[1] and "You're 3rd in line" in replies[2]
    # Too few claims in the last hour to trust: the store's SLA, not a made-up estimate.
    assert all("within 15 minutes" in r for r in replies)

    # A cancellation waits in its own channel's queue: nobody ahead of it there.
    _, cancel = await handoff(client, "Please cancel my order FP-100234, I ordered it twice")
    assert "You're next in line" in cancel

    await claim(client, chats[0])
    _, later = await handoff(client)
    assert "You're 3rd in line" in later  # two unclaimed ahead, not three


async def test_the_estimate_is_the_median_time_to_claim_of_the_last_hour(
    make_client: Any,
) -> None:
    clock = FakeClock(OPEN)
    client = await make_client(clock=clock, wait_check_seconds=NO_PERIODIC)
    chats = [(await handoff(client))[0] for _ in range(5)]
    # Claimed after 4, 6, 6, 8 and 50 minutes: one ticket left waiting does not move a median.
    for chat, minutes in zip(chats, (4, 2, 0, 2, 42), strict=True):
        clock.advance(minutes * 60)
        await claim(client, chat)
    _, reply = await handoff(client)
    assert "You're next in line; our team is answering in about 6 minutes." in reply

    # An hour later those claims are history: back to the SLA.
    clock.advance(61 * 60)
    _, reply = await handoff(client)
    assert "our team is answering" not in reply and "within 15 minutes" in reply


async def test_a_slipped_wait_gets_one_follow_up_never_after_a_claim_and_once_across_restarts(
    make_client: Any,
) -> None:
    clock = FakeClock(OPEN)
    client = await make_client(clock=clock, wait_check_seconds=NO_PERIODIC)
    a, b, c, d = [(await handoff(client))[0] for _ in range(4)]
    waiting = services(client).core.waiting
    assert waiting is not None
    clock.advance(60)
    await claim(client, a)  # B and C move up
    clock.advance(4 * 60)
    await claim(client, d)  # claimed: D's follow-up is off

    clock.advance(24 * 60)  # 29 minutes: the 15-minute SLA not yet slipped by 2x
    assert await waiting.check() == []
    clock.advance(2 * 60)
    assert sorted(await waiting.check()) == [b.cid, c.cid]
    assert await followups(client, b) == ["Still on it: you're next."]
    assert await followups(client, c) == ["Still on it: 1 ahead of you."]
    assert await waiting.check() == []  # never a stream
    assert await followups(client, a) == [] and await followups(client, d) == []

    # Claimed once is claimed: D released back to the queue still gets no follow-up.
    await services(client).core.staff_command(d.cid, "release", actor="Maria Lopez")
    e, _ = await handoff(client)  # due 30 minutes from now

    # A restart: what was sent stays sent, what is due is still due.
    client = await make_client(clock=clock, wait_check_seconds=NO_PERIODIC)
    waiting = services(client).core.waiting
    assert waiting is not None
    clock.advance(29 * 60)
    assert await waiting.check() == []
    clock.advance(2 * 60)
    assert await waiting.check() == [e.cid]
    assert await followups(client, e) == ["Still on it: 3 ahead of you."]  # B, C, D
    for chat in (b, c):
        assert len(await followups(client, chat)) == 1
    assert await followups(client, d) == []


async def test_out_of_hours_the_shopper_hears_when_people_are_back_and_no_follow_up(
    make_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    night = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)  # 03:00 in Amsterdam; open from 08:00
    monkeypatch.setattr(rules, "clock", lambda: night)
    clock = FakeClock(night)
    client = await make_client(clock=clock, wait_check_seconds=NO_PERIODIC)
    chat, reply = await handoff(client)
    assert "We're offline right now" in reply
    assert "today from 08:00 (Europe/Amsterdam)" in reply
    waiting = services(client).core.waiting
    assert waiting is not None
    clock.advance(6 * 3600)
    assert await waiting.check() == [] and await followups(client, chat) == []


@pytest.mark.parametrize(
    ("text", "first", "second"),
    [
        ("Kann ich mit einem Menschen sprechen?", "Sie sind als Nächstes dran", "an 2. Stelle"),
        ("Quiero hablar con una persona", "Eres el siguiente", "puesto 2 de la cola"),
        ("Puis-je parler à une vraie personne ?", "Vous êtes le prochain", "Vous êtes 2e"),
        ("Kan ik met een medewerker praten?", "U bent als volgende", "U bent 2e in de rij"),
    ],
)
async def test_the_wait_is_told_in_the_shoppers_language(
    make_client: Any, text: str, first: str, second: str
) -> None:
    clock = FakeClock(OPEN)
    client = await make_client(clock=clock, wait_check_seconds=NO_PERIODIC)
    _, one = await handoff(client, text)
    b, two = await handoff(client, text)
    assert first in one and second in two and "15" in two
    assert "line" not in one + two
    clock.advance(31 * 60)
    waiting = services(client).core.waiting
    assert waiting is not None
    assert b.cid in await waiting.check()
    lines = await shopper_lines(client, b)
    assert "1" in lines[-1] and "Still on it" not in lines[-1]


async def test_the_store_words_the_wait_in_its_yaml(
    make_client: Any, store_config: StoreConfig
) -> None:
    cfg = store_config.model_copy(deep=True)
    cfg.messages.queue = "Number {{ position }} in the queue, about {{ wait_minutes }} min."
    cfg.messages.translations = {"de": {"queue_followup": "Gleich! Noch {{ ahead }}."}}
    clock = FakeClock(OPEN)
    client = await make_client(cfg, clock=clock, wait_check_seconds=NO_PERIODIC)
    await handoff(client)
    _, reply = await handoff(client)
    assert "Number 2 in the queue, about 15 min." in reply
    b, _ = await handoff(client, "Kann ich mit einem Menschen sprechen?")
    clock.advance(31 * 60)
    await services(client).core.waiting.check()  # type: ignore[union-attr]
    assert (await shopper_lines(client, b))[-1] == "Gleich! Noch 2."


def test_the_arithmetic() -> None:
    assert estimate_minutes([60.0] * 4, 15) == (15, False)  # too few: the SLA
    assert estimate_minutes([60, 120, 180, 240, 3600], 15) == (3, True)
    t = OPEN
    assert followup_due(t, 6) == t + timedelta(minutes=12)  # twice the estimate
    assert followup_due(t, 1) == t + timedelta(minutes=4)  # but at least a few minutes past it


def test_the_language_is_read_from_function_words_and_english_when_unsure() -> None:
    assert detect_language(["Wo ist meine Bestellung? Ich habe sie vor einer Woche bestellt"]) == "de"
    assert detect_language(["¿Dónde está mi pedido?"]) == "es"
    assert detect_language(["Où est ma commande ? Je l'attends depuis lundi"]) == "fr"
    assert detect_language(["Waar is mijn bestelling? Ik wacht al een week"]) == "nl"
    assert detect_language(["Where is my order FP-100234?"]) == "en"
    assert detect_language(["FP-100234"]) == "en"
    assert detect_language(["shipping to Deutschland?"]) == "en"


def test_a_language_without_the_services_wording_gets_english_not_a_neighbour() -> None:
    """Swedish umlauts are not German and Portuguese is not Spanish: a shopper is better served
    by English than by a wait message in a language they never wrote."""
    swedish = "Hej! Jag vill avbryta min beställning. Den är inte skickad än, jag har väntat länge på svar."
    portuguese = "Olá, quero cancelar o meu pedido, ainda não foi enviado. Podem ajudar-me?"
    italian = "Buongiorno, vorrei sapere dove è il mio ordine, non è ancora arrivato."
    assert detect_language([swedish]) == "en"
    assert detect_language([portuguese]) == "en"
    assert detect_language([italian]) == "en"
    assert detect_language(["Können Sie mir helfen? Die Größe passt nicht"]) == "de"
    assert detect_language(["Quiero cancelar mi pedido, no lo quiero"]) == "es"
