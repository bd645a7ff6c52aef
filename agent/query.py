"""What a shopper's message asks, as weighted search terms.

A long message is mostly story ("we adopted a greyhound last month, she's scared of the postman")
around one question; ranking with every word lets the story's nouns pick the passage. So each
sentence gets a weight: a question counts fully, the sentence just before it (where "they" in
"when do they start?" points) a little less, the rest of the story little, and a sentence that
talks to the assistant about its instructions ("ignore your previous instructions") nothing.
A sentence in German, Spanish, French, Dutch or Portuguese is read through the cross-language shop
vocabulary (agent/lexicon.py); its other words still reach the character n-grams."""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass, field
from functools import lru_cache

import Stemmer

from agent.lexicon import (
    ELISION,
    FOREIGN_FILLERS,
    FOREIGN_STOPWORDS,
    PARAPHRASES,
    looks_foreign,
    translate_phrases,
    translate_word,
)
from agent.text import STOPWORDS, fold, normalize

_STEMMER = Stemmer.Stemmer("english")

QUESTION_START = re.compile(
    r"^(?:(?:hi|hello|hey|so|and|but|also|ok|okay|well|anyway|um|oh|quick question|btw)\W+)*"
    r"(?:how|what|whats|when|where|which|who|why|can|could|do|does|did|is|are|was|will|would|"
    r"should|may|might|am|have|has|any|shall|must|"
    r"wie|was|wann|wo|warum|welche\w*|kann|kannst|konnen|konnt|gibt|ist|sind|muss|darf|habe|"
    r"comment|combien|quand|pourquoi|quel\w*|est-ce|puis|pouvez|peut|peux|"
    r"como|cuando|cuant\w+|donde|que|cual\w*|puedo|puede|pueden|hay|tienen|"
    r"hoe|wanneer|waar|waarom|wat|welke|kan|kunnen|kunt|mag|zijn|"
    r"quanto|quando|onde|qual|quais|posso|pode|podem|tem|"
    r"come|cosa|dove|perche|quale|quali|puoi|potete|devo|"
    r"hur|vad|var|nar|varfor|vilken|vilket|far|finns|maste)\b"
)
QUESTION_PHRASE = re.compile(
    r"\b(?:(?:want|like|need) to know|wondering|wonder if|any (?:way|chance|idea)|"
    r"is (?:it|that|this|there) (?:possible|doable|ok|okay|allowed)|tell me|let me know|"
    r"not sure (?:if|whether|how|what|when)|i would like to know)\b"
)
# A sentence that addresses the assistant's own instructions carries no question about the store.
INJECTION = re.compile(
    r"\b(?:ignore|disregard|forget|override)\b.{0,40}\b(?:instructions?|rules|prompts?|above|"
    r"guidelines|programming)\b|\bsystem prompt\b|\byou are now\b|\b(?:admin|developer|god|dan) "
    r"mode\b|\bjailbreak\w*|\bpretend (?:to be|you are)\b|\b(?:reveal|print|show|repeat)\b.{0,30}"
    r"\b(?:prompt|instructions)\b"
)
SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+|\n+|\s+[-–—]\s+|;\s+")
WORD = re.compile(r"[a-zß][a-z0-9ß'-]*[a-z0-9ß]|[a-z]")
NUMBER = re.compile(r"\d+(?:[.,]\d+)?")


def _starts(items: list[tuple[object, object]]) -> set[str] | None:
    """Strings one of which every match of a parsed pattern begins with; None when not known."""
    from re import _constants as sre  # type: ignore[attr-defined]

    prefix = ""
    for op, av in items:
        if op is sre.AT:  # \b, ^: zero width
            continue
        if op is sre.LITERAL:
            prefix += chr(av)  # type: ignore[arg-type]
            continue
        if op is sre.BRANCH:
            alts = [_starts(list(b)) for b in av[1]]  # type: ignore[index]
            if any(a is None for a in alts):
                break
            return {prefix + x for a in alts if a is not None for x in a}
        if op is sre.SUBPATTERN:
            _, add_flags, del_flags, sub = av  # type: ignore[misc]
            inner = None if add_flags or del_flags else _starts(list(sub))
            if inner is None:
                break
            return {prefix + x for x in inner}
        break
    return {prefix} if prefix else None


def required_starts(pattern: str) -> tuple[str, ...] | None:
    """Literal strings (from its parse) one of which every match of `pattern` begins with, so a
    text holding none of them cannot match; None when the pattern does not say (or Python's
    parser is not the one known here)."""
    try:
        from re import _parser  # type: ignore[attr-defined]

        tree = _parser.parse(pattern)
        if tree.state.flags & (re.IGNORECASE | re.VERBOSE):
            return None
        found = _starts(list(tree))
    except (ImportError, AttributeError, TypeError, ValueError):
        return None
    return tuple(sorted(found)) if found else None


# Each pattern with the strings a match must begin with: a message holding none of them skips the
# pattern's search (a few dozen patterns, a handful of which a message uses).
_PARAPHRASES = [(re.compile(p), extra, required_starts(p)) for p, extra in PARAPHRASES]
# Words spelled out in the paraphrase patterns ("send", "back", "arriv"): a matched word starting
# with one of them is the phrase's own wording.
_LITERALS = frozenset(
    w
    for p, _ in PARAPHRASES
    for w in re.findall(r"(?<![\\?])\b[a-z]{2,}", p.replace("\\b", " "))
    if w not in {"ed", "es", "ing", "ly"}
)


@lru_cache(maxsize=4096)
def _literal(word: str) -> bool:
    return any(word.startswith(lit) for lit in _LITERALS if len(lit) >= 3 or word == lit)


# Words that say nothing about what is asked in a shop question, beyond the shared stopwords.
QUERY_STOPWORDS = frozenset(
    """anyway take takes took taking go goes going went come comes came make makes made put puts
    say says said see look looking never ever else thing stuff guess think sure wonder wondered
    wondering hope happen happens possible able rather instead""".split()
)

# Sentence weights: the question, the sentence before it, the rest of the story.
QUESTION_WEIGHT = 1.0
CONTEXT_WEIGHT = 0.5
STORY_WEIGHT = 0.25
UNKNOWN_FOREIGN = 0.5


@lru_cache(maxsize=16384)
def stem(word: str) -> str:
    """Snowball (Porter 2) English stem, the same for the pages and the questions."""
    return _STEMMER.stemWord(word)


def words_of(text: str) -> list[str]:
    """Folded words of a text, apostrophes inside a word kept ("won't" stays one word)."""
    return WORD.findall(fold(text))


@dataclass(frozen=True)
class Sentence:
    text: str
    norm: str  # folded, contractions expanded
    weight: float
    foreign: bool


@dataclass(frozen=True)
class Group:
    """One thing asked about: a word, or a concept with its alternatives (a paraphrase's page
    words, a foreign word's translations). A passage matching any alternative matches the group
    once, so a concept with five synonyms does not outweigh a plain word."""

    stems: frozenset[str]
    weight: float
    words: tuple[str, ...]


@dataclass
class Query:
    text: str
    sentences: list[Sentence]
    groups: list[Group] = field(default_factory=list)
    numbers: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.groups

    @property
    def terms(self) -> dict[str, float]:
        """stem -> the largest weight of a group holding it."""
        out: dict[str, float] = {}
        for g in self.groups:
            for t in g.stems:
                out[t] = max(out.get(t, 0.0), g.weight)
        return out

    @property
    def words(self) -> dict[str, float]:
        """Surface word -> weight for the character n-grams; a group's weight is shared by its
        alternatives."""
        out: dict[str, float] = {}
        for g in self.groups:
            share = g.weight / len(g.words) if g.words else 0.0
            for w in g.words:
                out[w] = out.get(w, 0.0) + share
        return out


def is_question(norm: str) -> bool:
    """`norm`: the sentence through text.normalize."""
    s = norm.strip()
    return "?" in s or bool(QUESTION_START.match(s)) or bool(QUESTION_PHRASE.search(s))


def is_foreign(norm: str, raw: str = "") -> bool:
    """Written in one of the other five languages: more of their function words and shop words
    (agent/lexicon.py) than English function words; letters English does not use (ñ, ç, ã, ß,
    ü) count too. `raw`: the sentence before accents were folded."""
    ws = WORD.findall(norm)
    foreign = sum(
        1
        for w in ws
        if w not in STOPWORDS and (w in FOREIGN_STOPWORDS or (len(w) > 3 and looks_foreign(w)))
    )
    foreign += sum(1 for ch in raw if ch in "ñçãõßüöäàèìòùâêîôûœëïáéíóú¿¡")
    english = sum(1 for w in ws if w in STOPWORDS and w not in FOREIGN_STOPWORDS)
    return foreign > english


# A question that opens with a condition ("if I order at 2pm on a Friday, does it leave the same
# day?"): the condition is the setting, the clause after it the question. Split at the comma so
# the setting's nouns count as context, not as what is asked.
CONDITION = re.compile(
    r"^((?:if|wenn|falls|si|als|indien|se|om)\b[^,?]{8,}?),\s+(?=\S)", re.IGNORECASE
)


def split_sentences(text: str) -> list[str]:
    out: list[str] = []
    for s in SENTENCE_SPLIT.split(text):
        s = s.strip() if s else ""
        if not s:
            continue
        m = CONDITION.match(s)
        if m and is_question(normalize(s[m.end() :])):
            out.extend([m.group(1), s[m.end() :]])
        else:
            out.append(s)
    return out


def weigh_sentences(text: str) -> list[Sentence]:
    parts = split_sentences(text)
    norms = [normalize(p) for p in parts]
    injected = [bool(INJECTION.search(n)) for n in norms]
    asks = [is_question(n) and not inj for n, inj in zip(norms, injected, strict=True)]
    out = []
    for i, p in enumerate(parts):
        if injected[i]:
            w = 0.0
        elif not any(asks):
            w = QUESTION_WEIGHT
        elif asks[i]:
            w = QUESTION_WEIGHT
        elif i + 1 < len(parts) and asks[i + 1]:
            w = CONTEXT_WEIGHT
        else:
            w = STORY_WEIGHT
        out.append(Sentence(p, norms[i], w, is_foreign(norms[i], p.lower())))
    return out


def _content(words: list[str], foreign: bool) -> list[str]:
    out = []
    for w in words:
        w = w.strip("'-")
        if foreign:
            w = ELISION.sub("", w)
        if w.endswith("'s"):
            w = w[:-2]
        if (
            len(w) < 2
            or w in STOPWORDS
            or w in QUERY_STOPWORDS
            or w.isdigit()
            or (foreign and w in FOREIGN_STOPWORDS)
        ):
            continue
        out.append(w)
    return out


def _paraphrased(sentences: list[Sentence]) -> tuple[list[list[tuple[str, ...]]], list[str]]:
    """Paraphrase concepts found in each English sentence, and each sentence with their phrases
    blanked out. The patterns run once over the whole message, not once per sentence."""
    english = [s.norm if s.weight > 0 and not s.foreign else "" for s in sentences]
    joined = "\n".join(english)
    starts = [0]
    for e in english[:-1]:
        starts.append(starts[-1] + len(e) + 1)
    found: list[list[tuple[str, ...]]] = [[] for _ in sentences]
    kept: list[list[str]] = [[] for _ in sentences]
    for pattern, extra, begins in _PARAPHRASES:
        if begins is not None and not any(b in joined for b in begins):
            continue
        if pattern.search(joined) is None:
            continue
        for m in pattern.finditer(joined):
            i = bisect_right(starts, m.start()) - 1
            words = _content(WORD.findall(m.group(0)), False)
            # The phrase's own wording joins the concept; a word the pattern only let through
            # (the "jacket" in "send the jacket back") stays a search word of its own.
            own = [w for w in words if _literal(w)]
            found[i].append(tuple(dict.fromkeys([*extra, *own])))
            kept[i].extend(w for w in words if not _literal(w))
        joined = pattern.sub(lambda m: "|" * len(m.group(0)), joined)
    rest = [
        joined[a : a + len(e)] + " " + " ".join(k)
        for a, e, k in zip(starts, english, kept, strict=True)
    ]
    return found, rest


def parse(text: str, context: str | None = None) -> Query:
    """The message as weighted groups of stems, and the numbers in it. `context`, an earlier
    message a short follow-up leans on ("and how long does that take?"), counts as the sentence
    before a question does."""
    sentences = weigh_sentences(text)
    if context:
        before = [
            Sentence(c.text, c.norm, c.weight * CONTEXT_WEIGHT, c.foreign)
            for c in weigh_sentences(context)
        ]
        sentences = before + sentences
    q = Query(text=text, sentences=sentences)
    best: dict[frozenset[str], Group] = {}

    def add(stems: frozenset[str], weight: float, words: tuple[str, ...]) -> None:
        if not stems or weight <= 0:
            return
        old = best.get(stems)
        if old is None or weight > old.weight:
            best[stems] = Group(stems, weight, words)

    concepts, rests = _paraphrased(q.sentences)
    for s, found, rest in zip(q.sentences, concepts, rests, strict=True):
        if s.weight <= 0:
            continue
        if s.foreign:
            for w in _content(WORD.findall(FOREIGN_FILLERS.sub(" ", s.norm)), True):
                english = translate_word(w)
                if english:
                    alts = tuple(dict.fromkeys(english))
                    add(frozenset(stem(e) for e in alts), s.weight, (w, *alts))
                else:
                    # A word the vocabulary does not know may be anything in that language
                    # (not necessarily the thing asked about): it counts half.
                    add(frozenset([stem(w)]), s.weight * UNKNOWN_FOREIGN, (w,))
            for e in translate_phrases(s.norm):
                add(frozenset([stem(e)]), s.weight, (e,))
        else:
            for alts in found:
                add(frozenset(stem(e) for e in alts), s.weight, alts)
            for w in _content(WORD.findall(rest), False):
                add(frozenset([stem(w)]), s.weight, (w,))
        q.numbers.extend(n for n in NUMBER.findall(s.text) if n not in q.numbers)
    q.groups = list(best.values())
    return q
