"""What the shopper wants in one message: the intents a classifier found sentence by sentence
(agent/classifier.py), plus the few surface facts the answer needs (a question, a greeting, thanks).

The intents themselves are learned from examples, so a store changes them in YAML; nothing here
knows a store's words. A model (the LLM agent) may supply the intents instead; the rest is the same."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from agent.classifier import IntentClassifier, SentenceIntents
from agent.text import normalize

GREETING = re.compile(
    r"^(hi|hello|hey|hiya|yo|good (morning|afternoon|evening)|hallo|hola|bonjour|salut|hoi|"
    r"moin|servus|buenas|buenos dias|guten (morgen|tag|abend)|ciao|buongiorno|salve|olá|ola|"
    r"bom dia|hej|hallå)[\s!.,]*$"
)
THANKS = re.compile(
    r"^(ok(ay)?|great|perfect|cool|awesome|thanks|thank you|thx|cheers|nice|got it|brilliant|"
    r"wonderful|lovely|super|danke|gracias|merci|bedankt|dank je|grazie|obrigad[oa]|tack)\b[\w\s!.,']{0,30}$"
)
QUESTION_START = re.compile(
    r"^(who|what|when|where|why|how|can|could|do|does|did|is|are|will|would|should|may|has|have|"
    r"wie|wann|wo|was|warum|kann|gibt|como|cuando|donde|que|qué|cuánto|puedo|comment|quand|où|"
    r"est-ce|combien|puis-je|hoe|wanneer|waar|wat|kan|kunnen|"
    r"come|cosa|dove|quando|quanto|posso|potete|onde|pode|hur|vad|när|var|varför|finns)\b"
)


@dataclass
class Intents:
    """The turn's intents (names), per sentence, and the surface facts of the message."""

    found: set[str] = field(default_factory=set)
    sentences: list[SentenceIntents] = field(default_factory=list)
    question: bool = False
    greeting: bool = False
    thanks: bool = False

    def __contains__(self, name: str) -> bool:
        return name in self.found

    @property
    def my_order(self) -> bool:
        """The shopper asks about an order of theirs (where it is, whether it went through)."""
        return "order_status" in self.found


def surface(text: str) -> Intents:
    norm = normalize(text).strip()
    return Intents(
        question="?" in norm or bool(QUESTION_START.match(norm)),
        greeting=bool(GREETING.match(norm)),
        thanks=bool(THANKS.match(norm)) and "?" not in norm,
    )


def detect(text: str, classifier: IntentClassifier) -> Intents:
    result = surface(text)
    result.sentences = classifier.classify(text)
    result.found = {i for s in result.sentences for i in s.intents}
    return result


def from_names(text: str, names: Iterable[str], known: Iterable[str]) -> Intents:
    """Intents given by someone else (a model's structured output), limited to known names; the
    whole message counts as one sentence carrying them."""
    result = surface(text)
    allowed = set(known)
    found = [n for n in dict.fromkeys(names) if n in allowed]
    result.found = set(found)
    result.sentences = [SentenceIntents(text, found[0] if found else "none", 1.0, found)]
    return result
