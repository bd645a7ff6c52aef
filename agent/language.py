"""Which of the five languages the agent reads (en, de, es, fr, nl) a shopper writes in, for the
messages the service words in their language (the wait at a handoff: domain/waiting.py).

Function words decide: every language's short, frequent words ("ich", "und", "nicht"; "el",
"que", "por"; "je", "est", "pas"; "het", "een", "niet"), counted over the shopper's recent
messages, with accents as a tie-breaker. Order numbers, emails and shop words say nothing. A
language needs two such words more than English and more than any other, else it is English:
"Hi, FP-100234?" stays English, and so does a chat that only names a German city."""

from __future__ import annotations

import re
from collections.abc import Iterable

_WORDS: dict[str, frozenset[str]] = {
    "en": frozenset(
        "i you my me the a an is are was it this that and or not no to of for in on with "
        "can could would please where when what how why do does did have has want need "
        "order help person someone talk speak cancel payment".split()
    ),
    "de": frozenset(
        "ich du sie mein meine meiner meinen mir mich der die das ein eine einen ist sind war "
        "und oder nicht kein keine zu mit für von bei auf bitte wo wann was wie warum kann "
        "können könnte möchte will habe hat hallo bestellung jemand sprechen stornieren "
        "zahlung noch schon auch aber gerne mit einem einer".split()
    ),
    "es": frozenset(
        "yo tú mi mis me el la los las un una es son está estoy y o no que de del por para con "
        "en por favor dónde donde cuándo qué cómo quiero necesito puedo puede hola pedido "
        "alguien hablar cancelar pago persona gracias ya pero también".split()
    ),
    "fr": frozenset(
        "je tu vous mon ma mes moi le la les un une est sont suis et ou pas ne que de du des "
        "pour avec dans sur merci où quand quoi comment pourquoi veux voudrais peux pouvez "
        "bonjour commande quelqu'un parler annuler paiement personne déjà mais aussi".split()
    ),
    "nl": frozenset(
        "ik jij je u mijn me de het een is zijn was en of niet geen te met voor van bij op "
        "alstublieft alsjeblieft waar wanneer wat hoe waarom kan kunt wil wilt heb heeft "
        "hallo bestelling iemand spreken annuleren betaling nog al ook maar graag".split()
    ),
}
_ACCENTS = {"de": "äöüß", "es": "ñ¿¡áíóú", "fr": "çàèêëîïôûœ", "nl": ""}
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")


# Each word's languages, so a message is read once, not once per language (a turn reads the
# shopper's last three messages).
_LANGUAGES_OF: dict[str, tuple[str, ...]] = {}
for _lang, _words in _WORDS.items():
    for _w in _words:
        _LANGUAGES_OF[_w] = (*_LANGUAGES_OF.get(_w, ()), _lang)


def detect_language(texts: Iterable[str]) -> str:
    """The language of these messages (the latest first, as many as are given): en, de, es, fr
    or nl; English when unsure."""
    score = dict.fromkeys(_WORDS, 0.0)
    for text in texts:
        lower = text.lower()
        for word in _WORD.findall(lower):
            for lang in _LANGUAGES_OF.get(word, ()):
                score[lang] += 1
        if not lower.isascii():  # no accented letter to count in plain ASCII
            for lang, chars in _ACCENTS.items():
                score[lang] += 0.5 * sum(lower.count(ch) for ch in chars) if chars else 0
    best = max(score, key=lambda lang: score[lang])
    if best == "en":
        return "en"
    runner_up = max(v for lang, v in score.items() if lang != best)
    return best if score[best] >= runner_up + 2 else "en"
