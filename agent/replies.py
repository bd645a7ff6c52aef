"""What a short reply means in the conversation: yes or no to the assistant's offer of a person
("Shall I get someone from the team?"), or taking back a request made earlier ("actually, don't
cancel", "never mind, it turned up").

Read by a small classifier of its own (agent/intent_data/replies/: accept, decline, retract, and
everything else), consulted only in that context: right after the offer, or while an earlier
request waits for something (the order number a rule asked for). So "yes", "ja bitte", "sí", "oui"
or "doe maar" are learned from examples in five languages, and the main intent classifier is never
asked to tell a bare "yes" or "never mind" from a request."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from agent.classifier import (
    DATA_DIR,
    IntentClassifier,
    IntentSpec,
    SentenceIntents,
    read_yaml,
    split_sentences,
    trained,
)
from agent.text import normalize

REPLIES_DIR = DATA_DIR / "replies"
Verdict = Literal["accept", "decline", "retract"] | None


def _specs(folder: Path = REPLIES_DIR) -> list[IntentSpec]:
    specs: dict[str, IntentSpec] = {}
    for path in sorted(Path(folder).glob("*.yaml")):
        for name, raw in read_yaml(path).items():
            specs[name] = IntentSpec(
                name=name,
                description=str(raw.get("description", "")),
                examples=tuple(str(e) for e in raw.get("examples") or ()),
                threshold=float(raw.get("threshold", 0.5)),
            )
    return list(specs.values())


@lru_cache(maxsize=1)
def reply_classifier() -> IntentClassifier:
    """Trained once per process (a few hundred short examples, no sentence vectors: about 50 ms
    at start)."""
    return trained(_specs(), vectors=False, c=10.0)


def read_reply(
    classifier: IntentClassifier, text: str, *, offered: bool, waiting: bool
) -> Verdict:
    """`offered`: the agent's last reply offered a person; `waiting`: an earlier request has not
    led to a handoff yet. After the offer, "yes" accepts and "no" (or "never mind") declines; a
    waiting request is taken back only by a retraction, never by a bare "no" (that may answer
    "do you have the order number?"). The first sentence decides ("Yes please. And where is my
    order?" accepts), else its first clause ("Ja, und wo ist meine Bestellung?"); read whole
    first, so "ok, never mind then" is not a yes."""
    if not (offered or waiting):
        return None
    sentences = split_sentences(text)
    if not sentences:
        return None
    for piece in (sentences[0], sentences[0].split(",")[0]):
        found = classifier.classify(piece)
        label = found[0].intents[0] if found and found[0].intents else None
        if offered and label == "accept":
            return "accept"
        if offered and label in ("decline", "retract"):
            return "retract" if waiting and label == "retract" else "decline"
        if waiting and label == "retract":
            return "retract"
    return None


# ------------------------------------------------------------- a request denied in the next sentence

# Intents that are no request of their own (a status question stays when its neighbour is denied).
_NOT_REQUESTS = frozenset({"none", "order_status"})


# The shopper's own bare no opening a sentence ("No, ...", "Nein, ...", "Non, ..."), not "no rush"
# or "nicht mit einem Bot": a word list like the classifier's negators, no store's words.
_BARE_NO = re.compile(r"^(no+|nope|nah|nein|nö|non|nee|neen|nej|não|nao|niet)\s*([,.!;:…—-]|$)")


def deny_requests(classifier: IntentClassifier, sentences: list[SentenceIntents]) -> None:
    """A request followed at once by the shopper's own no ("should we cancel? No, just tell me
    when it ships"; "my husband says cancel it. Nein, mache ich nicht") is not a request: the
    requests of that sentence are dropped. Only a bare no opening the next sentence counts (read
    by the replies classifier as a decline or retraction too), and only when that sentence asks
    for nothing the rules act on itself. Changes `sentences` in place."""
    for before, after in zip(sentences, sentences[1:], strict=False):
        if not (set(before.intents) - _NOT_REQUESTS) or set(after.intents) - _NOT_REQUESTS:
            continue
        opening = normalize(after.text).strip()
        if not _BARE_NO.match(opening):
            continue
        clause = re.split(r"[,.!;:…]", opening, maxsplit=1)[0]
        found = classifier.classify(clause)
        if found and found[0].intents and found[0].intents[0] in ("decline", "retract"):
            before.intents = [i for i in before.intents if i in _NOT_REQUESTS]


# ------------------------------------------------------------- when a payment failed

STAGE_DIR = DATA_DIR / "payment_stage"
CHECKOUT = "payment_at_checkout"


@lru_cache(maxsize=1)
def stage_classifier() -> IntentClassifier:
    """Whether a payment problem happened while paying (no order exists: `checkout`) or on an
    order that was placed (`order`); a few dozen examples per class, no sentence vectors."""
    return trained(_specs(STAGE_DIR), vectors=False, c=10.0)


def at_checkout(classifier: IntentClassifier, sentences: list[SentenceIntents]) -> bool:
    """The shopper's payment problem happened at checkout, so there is no order number to ask
    for: a sentence read as a payment problem that the stage classifier reads as `checkout`."""
    for s in sentences:
        if "payment_problem" in s.intents:
            found = classifier.classify(s.text)
            if any("checkout" in f.intents for f in found):
                return True
    return False
