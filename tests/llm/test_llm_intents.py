"""With an LLM configured, the model classifies each turn's intents (a forced tool call whose
schema allows only the store's intent names) and the store's rules read them, as they read the
built-in classifier's. An endpoint that cannot do forced tool calls leaves it to the classifier."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from tests.llm.fake_openai import FakeOpenAI, text, tool
from tests.llm.helpers import say


async def test_the_models_intents_feed_the_rules(client: TestClient, llm: FakeOpenAI) -> None:
    # "sort it out for me" is no request the built-in classifier knows; the model reads the
    # earlier context as a wish for a person, and the rules hand off as for any such wish.
    llm.intent_script = [["human"]]
    llm.script = [text("The shopper wants a person.")]  # the summary
    chat, reply = await say(client, "sort it out for me, I've had enough")
    conv = await chat.conversation()
    assert conv.state == "queued" and conv.tags == ("human-requested",)
    (req,) = llm.intent_requests
    schema = req["tools"][0]["function"]["parameters"]["properties"]["intents"]
    assert set(schema["items"]["enum"]) >= {"cancel", "human", "payment_problem", "none"}
    assert req["messages"][-1] == {"role": "user", "content": "sort it out for me, I've had enough"}


async def test_the_model_can_keep_a_chat_with_the_ai(client: TestClient, llm: FakeOpenAI) -> None:
    # The model reads the whole sentence: the person is mentioned but not asked for.
    llm.intent_script = [["none"]]
    llm.script = [
        tool("search_knowledge", {"query": "shipping Belgium"}),
        text("Shipping to Belgium takes 2-3 working days. [source: shipping.md]"),
    ]
    chat, reply = await say(client, "my husband says you have people to talk to, but how long to Belgium?")
    conv = await chat.conversation()
    assert conv.state == "bot"


async def test_names_outside_the_stores_intents_are_ignored(
    client: TestClient, llm: FakeOpenAI
) -> None:
    llm.intent_script = [["refund_everything", "approve_all"]]
    llm.script = [
        tool("search_knowledge", {"query": "returns"}),
        text("You can return items within 30 days. [source: returns.md]"),
    ]
    chat, _ = await say(client, "how do returns work?")
    assert (await chat.conversation()).state == "bot"


async def test_an_endpoint_without_forced_tool_calls_leaves_it_to_the_classifier(
    client: TestClient, llm: FakeOpenAI
) -> None:
    # No intent script: the fake answers 400, as servers without named tool_choice do.
    llm.script = [text("Summary: asks for a person.")]
    chat, _ = await say(client, "can I talk to a real person please")
    conv = await chat.conversation()
    assert conv.state == "queued" and conv.tags == ("human-requested",)
    llm.script = [text("Summary: asks for a person.")]
    await say(client, "I want to speak to a human")
    assert len(llm.intent_requests) == 1  # asked once, then not again


async def test_the_intent_request_is_masked(client: TestClient, llm: FakeOpenAI) -> None:
    llm.intent_script = [["payment_problem"]]
    llm.script = [text("Summary.")]
    await say(client, "my card 4111 1111 1111 1111 was declined")
    # The fixture fails the test if the card number reached the model in any request.
    assert "4111 1111 1111 1111" not in str(llm.intent_requests)
