"""What a short reply means in the conversation: yes or no to the assistant's offer of a person
("Shall I get someone from the team?"), or taking back a request made earlier ("actually, don't
cancel", "never mind, it turned up").

Read by a small classifier of its own (agent/intent_data/replies/: accept, decline, retract, and
everything else), consulted only in that context: right after the offer, or while an earlier
request waits for something (the order number a rule asked for). So "yes", "ja bitte", "sí", "oui"
or "doe maar" are learned from examples in five languages, and the main intent classifier is never
asked to tell a bare "yes" or "never mind" from a request."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml

from agent.classifier import DATA_DIR, IntentClassifier, IntentSpec, split_sentences, trained

REPLIES_DIR = DATA_DIR / "replies"
Verdict = Literal["accept", "decline", "retract"] | None


def _specs() -> list[IntentSpec]:
    specs: dict[str, IntentSpec] = {}
    for path in sorted(Path(REPLIES_DIR).glob("*.yaml")):
        for name, raw in (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).items():
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
