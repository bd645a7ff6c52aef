"""Intent detection for the offline agent: what the shopper wants, not which words they used.

Each intent is a combination of concepts (a request aimed at the store + the thing requested),
checked per sentence, with negation ("I don't want to cancel") and hypotheticals ("what happens if
my payment fails?") taken into account. Typos in the words that matter are repaired first: a word
the English dictionary (pyspellchecker) does not know is mapped to the nearest concept word within
one or two edits (rapidfuzz's Damerau-Levenshtein), so "cancle" and "persn" still count while real
words like "change" are never bent into "charge"."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from rapidfuzz.distance import DamerauLevenshtein
from spellchecker import SpellChecker

from agent.text import normalize

# Concept vocabularies, as regular expressions over normalised text.
REQUEST = (
    r"(want|would like|would love|need|needs|wish|please|can you|could you|would you|will you|"
    r"how (do|can|would) i|how to|help me|trying to|have to|is it possible|i would|"
    r"can i|could i|may i|let me|i am asking|asking you to)"
)
CANCEL = r"(cancel\w*|call off|withdraw (my|the|this) order|undo (my|the|this) order|stop (my|the|this) order)"
CONTACT = (
    r"(talk|speak|chat|get|connect|transfer|put me through|put me in touch|contact|reach|call|"
    r"escalate|hand me|pass me|want|need|give me|is there|are there|have)"
)
PERSON = (
    r"(human|humans|person|people|someone|somebody|agent|representative|rep|operator|staff|"
    r"team member|manager|supervisor|employee|real one|customer service|support team|your team|"
    r"live agent|live chat|colleague|anyone)"
)
PAY = (
    r"(payment|payments|pay|paid|paying|charge|charged|card|apple pay|google pay|paypal|ideal|"
    r"klarna|bank|transaction|checkout|money|debited|taken)"
)
PAY_FAIL = (
    r"(fail\w*|declin\w*|reject\w*|refused|did not work|does not work|not working|"
    r"did not go through|not go through|not going through|error|bounced|charged twice|"
    r"double charged|double charge|taken twice|twice)"
)
FRAUD = (
    r"(fraud\w*|scam\w*|hack\w*|stolen|unauthori[sz]ed|chargeback|identity theft|phishing|"
    r"dispute\w*|someone (else )?(is |has been |was |has )?(using|used|accessed|logged into|got into|"
    r"in) my (account|card)|(do|did) not recogni[sz]e|never (ever )?(made|placed|ordered|bought|"
    r"authori[sz]ed|purchased)|(did|have|had) not (order|ordered|buy|bought|make|made|place|placed|"
    r"purchase|purchased|authori[sz]e|authori[sz]ed) (this|that|it|anything|any order|these|"
    r"this order|that order))"
)
IDENTITY = (
    r"((verify|confirm|prove|check) (my |your |his |her )?identity|identity (check|verification)|"
    r"(id|passport) (check|verification)|verify (that )?it is me)"
)
PRICE_REQUEST = (
    r"(can you|could you|would you|will you|please|give me|i want|i would like|i would love|"
    r"is it possible|can i (still )?(get|have)|could i (still )?(get|have)|honou?r|apply|match|"
    r"adjust|refund me|let me have|take)"
)
PRICE = (
    r"(price|prices|pricing|discount|code|coupon|voucher|promo|\d+ ?% off|percent off|difference|"
    r"cheaper|deal|offer|off the price)"
)
RETRO = (
    r"(ended|expired|is over|was over|forgot|forgotten|missed|already|too late|difference|dropped|"
    r"went back|now (only|cheaper|in|on sale|reduced)|lower|yesterday|last week|ran out|timer|"
    r"retroactive|still|after the (sale|drop)|before the (sale|drop)|went up|back up)"
)
ORDER_TOPIC = (
    r"(where (is|are) my|status|track\w*|shipped|ship|shipping|deliver\w*|arriv\w*|dispatch\w*|"
    r"on (its|the) way|go through|went through|warehouse|my order|my orders|my package|my parcel|"
    r"my kicks|my stuff|my shoes|my sneakers|when will|has it|did it|order number|placed an order)"
)
MY_ORDER = (
    r"((my|our) (order|orders|package|parcel|kicks|stuff|shoes|sneakers|pair|purchase|delivery|"
    r"shipment)|where (is|are) (it|they)|order status|status of (my|the|an) order)"
)
NEGATORS = {"not", "no", "never", "without", "nothing", "nobody"}
HYPOTHETICAL = re.compile(r"^(what (happens|if)|if|in case|suppose|supposing|hypothetically)\b")
GREETING = re.compile(r"^(hi|hello|hey|hiya|yo|good (morning|afternoon|evening)|hallo)[\s!.,]*$")
THANKS = re.compile(
    r"^(ok(ay)?|great|perfect|cool|awesome|thanks|thank you|thx|cheers|nice|got it|brilliant|"
    r"wonderful|lovely|super)\b[\w\s!.,']{0,30}$"
)

_VOCAB = sorted(
    {
        w
        for pattern in (REQUEST, CANCEL, CONTACT, PERSON, PAY, PAY_FAIL, FRAUD, IDENTITY, PRICE)
        for w in re.findall(r"[a-z]{5,}", pattern)
    }
    | {"cancel", "cancellation", "declined", "refund", "discount", "person", "human", "payment"}
)


@lru_cache(maxsize=1)
def _speller() -> SpellChecker:
    return SpellChecker(distance=1)


@lru_cache(maxsize=4096)
def _repair_word(word: str) -> str:
    if len(word) < 5 or not word.isalpha() or word in _VOCAB:
        return word
    if _speller().known([word]):
        return word
    limit = 1 if len(word) < 8 else 2
    best, best_d = word, limit + 1
    for cand in _VOCAB:
        if abs(len(cand) - len(word)) > limit:
            continue
        d = DamerauLevenshtein.distance(word, cand, score_cutoff=limit)
        if d < best_d:
            best, best_d = cand, d
    return best


def repair_typos(text: str) -> str:
    return re.sub(r"[a-z]+", lambda m: _repair_word(m.group(0)), text)


@dataclass
class Intents:
    found: set[str] = field(default_factory=set)
    negated: set[str] = field(default_factory=set)
    retro_price: bool = False
    question: bool = False
    greeting: bool = False
    thanks: bool = False
    order_topic: bool = False
    my_order: bool = False

    def __contains__(self, name: str) -> bool:
        return name in self.found


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?;])\s+|\n+|\s+-\s+", text) if s.strip()]


def _negated(sentence: str, start: int) -> bool:
    before = re.findall(r"[a-z']+", sentence[:start])[-4:]
    return any(w in NEGATORS for w in before)


def _find(pattern: str, sentence: str) -> list[re.Match[str]]:
    return list(re.finditer(rf"\b{pattern}\b", sentence))


def _near(
    a: str, b: str, sentence: str, window: int = 8, ordered: bool = True
) -> re.Match[str] | None:
    """A match of `b` with a match of `a` within `window` words before it (or either side)."""
    for mb in _find(b, sentence):
        for ma in _find(a, sentence):
            if ordered and ma.start() > mb.start():
                continue
            lo, hi = sorted((ma.end(), mb.start()))
            if len(re.findall(r"\w+", sentence[lo:hi])) <= window:
                return mb
    return None


def detect(text: str) -> Intents:
    norm = repair_typos(normalize(text))
    result = Intents()
    stripped = norm.strip()
    result.question = "?" in norm or bool(
        re.match(
            r"^(who|what|when|where|why|how|can|could|do|does|did|is|are|will|would|should|may|has|have)\b",
            stripped,
        )
    )
    result.greeting = bool(GREETING.match(stripped))
    result.thanks = bool(THANKS.match(stripped)) and "?" not in stripped
    result.order_topic = bool(re.search(rf"\b{ORDER_TOPIC}\b", norm))
    result.my_order = bool(re.search(rf"\b{MY_ORDER}\b", norm))
    result.retro_price = bool(re.search(rf"\b{RETRO}\b", norm))

    for sentence in _sentences(norm):
        hypothetical = bool(HYPOTHETICAL.match(sentence))
        # cancel: a request to cancel, not a report that something "got cancelled"
        for m in _find(CANCEL, sentence):
            word = m.group(0)
            past = bool(re.match(r"cancell?ed", word))
            requested = bool(re.search(rf"\b{REQUEST}\b", sentence[: m.start()]))
            imperative = bool(re.match(r"^(please )?(just )?cancel\b", sentence))
            if _negated(sentence, m.start()) or (hypothetical and not requested):
                result.negated.add("cancel")
            elif (
                requested
                or imperative
                or (
                    not past
                    and re.match(
                        r"cancel (my|the|it|this|that|both|them|order|all)\b", sentence[m.start() :]
                    )
                )
            ):
                result.found.add("cancel")
        # asks for a person
        m = _near(CONTACT, PERSON, sentence, window=5)
        if m is None:
            m = re.search(
                r"\b(real|actual|live) (person|human|agent)\b|\bhuman please\b|^(a )?human\b",
                sentence,
            )
        if m is not None:
            if _negated(sentence, m.start()) and not re.search(
                r"\b(can|could) not\b", sentence[: m.start()]
            ):
                result.negated.add("human")
            else:
                result.found.add("human")
        # fraud, a charge they did not make, a dispute
        if re.search(rf"\b{FRAUD}\b", sentence) and not hypothetical:
            result.found.add("fraud")
        if re.search(rf"\b{IDENTITY}\b", sentence):
            result.found.add("identity")
        # a payment that failed or was taken wrongly
        if not hypothetical and _near(PAY, PAY_FAIL, sentence, window=12, ordered=False):
            result.found.add("payment_problem")
        # a request to bend a price rule
        if _near(PRICE_REQUEST, PRICE, sentence, window=8) and not hypothetical:
            result.found.add("price_request")
    return result
