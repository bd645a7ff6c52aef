"""Grounding: figures (prices, percentages, durations, dates, times) and citations in a reply
must come from what the tools returned this turn, never from the model's imagination or the
shopper's say-so. Unit checks of the checker, then the agent correcting itself end to end."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from agent.llm_grounding import Evidence, check_reply, claims_in
from tests.llm.fake_openai import FakeOpenAI, text, tool
from tests.llm.helpers import say

SHIPPING = (
    "| Austria, Netherlands, Belgium, France | DHL | 2–4 working days | €7.90 | €100 |\n"
    "Orders paid before 13:00 CET leave the warehouse the same day."
)


def shipping() -> Evidence:
    ev = Evidence()
    ev.add_passage("shipping.md", SHIPPING)
    return ev


def test_figures_from_the_passages_are_grounded() -> None:
    c = check_reply(
        "To Austria it's 2 to 4 working days and costs €7.90, free from 100 EUR; order by "
        "13:00. [source: shipping.md]",
        shipping(),
    )
    assert c.problems == [] and c.sources == ["shipping.md"]
    assert c.reply.endswith("order by 13:00.")


def test_invented_figures_and_citations_are_caught() -> None:
    c = check_reply(
        "Shipping to Austria is free over €50 and takes three days, with a 10% discount until "
        "December 24th. [source: shipping.md, policies.md]",
        shipping(),
    )
    assert c.sources == ["shipping.md"]
    assert c.problems == [
        "a citation of policies.md",
        "€50",
        "3 days",
        "10%",
        "December 24th",
    ]


def test_text_without_figures_passes_and_no_knowledge_means_no_source() -> None:
    c = check_reply("I don't know that one, shall I ask a person from the team?", Evidence())
    assert c.problems == [] and c.sources == []


def test_only_real_claims_count() -> None:
    assert claims_in("Order FP-100234 with 2 pairs, size 42, is on its way") == []
    assert claims_in("It takes 30-day returns, 5 working days, $12.50 and 3pm") == [
        "30-day",
        "5 working days",
        "$12.50",
        "3pm",
    ]


def test_an_uncited_answer_is_credited_only_when_it_draws_on_a_passage() -> None:
    ev = shipping()
    drawn = check_reply("DHL brings orders to Austria, Netherlands, Belgium and France.", ev)
    assert drawn.sources == ["shipping.md"]
    assert check_reply("Happy to help with your question today!", ev).sources == []


async def test_an_invented_policy_is_sent_back_and_the_grounded_answer_goes_out(
    client: TestClient, llm: FakeOpenAI
) -> None:
    llm.script = [
        text("Returns are free within 60 days!"),
        tool("search_knowledge", {"query": "return window"}),
        text("You have 30 days from delivery to return unworn items. [source: returns.md]"),
    ]
    _, reply = await say(client, "how long do I have to return my sneakers?")
    assert "60 days" not in reply["text"] and "30 days" in reply["text"]
    assert reply["sources"] == ["returns.md"]
    correction = llm.requests[1]["messages"][-1]
    assert correction["role"] == "user" and "'60 days'" in correction["content"]
    assert llm.requests[1]["messages"][-2] == {
        "role": "assistant",
        "content": "Returns are free within 60 days!",
    }


async def test_an_invented_source_is_not_a_source(client: TestClient, llm: FakeOpenAI) -> None:
    llm.script = [
        text("We ship to Mars for free. [source: made-up.md]"),
        text("I don't know whether we ship there; shall I ask a person from the team?"),
    ]
    _, reply = await say(client, "Do you ship to Mars?")
    assert reply["sources"] == [] and "Mars for free" not in reply["text"]
    assert "I don't know" in reply["text"]
