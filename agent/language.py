"""Which of the five languages the service words its messages in (en, de, es, fr, nl) a shopper
writes in (the wait at a handoff: domain/waiting.py); English for any other language.

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
# Languages the service has no wording for, read only so that they lose: a Swedish "är" or a
# Portuguese "não" would otherwise count for German or Spanish, and a shopper would get the wait
# in a language they never wrote. When one of these wins, the answer is English.
_UNWORDED: dict[str, frozenset[str]] = {
    "it": frozenset(
        "il lo gli di della delle sono ho ha non che per favore ciao vorrei posso potete "
        "ordine mio mia ancora già anche ma grazie buongiorno perché quando dove come".split()
    ),
    "pt": frozenset(
        "o os um uma meu minha não nao você vocês obrigado obrigada olá ola quero posso "
        "podem ainda já também mas encomenda pedido pelo pela foi está estou com em".split()
    ),
    "sv": frozenset(
        "jag du vi ni min mitt mina är och inte att det den en ett har hej tack kan vill "
        "beställning fortfarande också men när var hur varför".split()
    ),
    "da": frozenset(
        "jeg du vi i min mit mine er og ikke at det den en et har hej tak kan vil "
        "bestilling ordre stadig også men hvornår hvor hvordan hvorfor".split()
    ),
    "pl": frozenset(
        "jestem nie to jak gdzie kiedy dlaczego moje moja mój zamówienie proszę dziękuję "
        "chcę mogę możecie jeszcze już też ale cześć dzień dobry".split()
    ),
}
_ACCENTS = {
    "de": "äöüß", "es": "ñ¿¡áíóú", "fr": "çàèêëîïôûœ", "nl": "",
    "it": "ìò", "pt": "ãõâ", "sv": "å", "da": "æøå", "pl": "ąćęłńśźż",
}
ACCENT_CAP = 1.0  # accents break ties; alone they never make a language (Swedish "ä", German "ä")
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")


# Each word's languages, so a message is read once, not once per language (a turn reads the
# shopper's last three messages).
_LANGUAGES_OF: dict[str, tuple[str, ...]] = {}
for _lang, _words in (*_WORDS.items(), *_UNWORDED.items()):
    for _w in _words:
        _LANGUAGES_OF[_w] = (*_LANGUAGES_OF.get(_w, ()), _lang)


def detect_language(texts: Iterable[str]) -> str:
    """The language of these messages (the latest first, as many as are given): en, de, es, fr
    or nl; English when unsure or when the shopper writes a language the service has no
    wording for."""
    score = dict.fromkeys((*_WORDS, *_UNWORDED), 0.0)
    accents = dict.fromkeys(score, 0.0)
    for text in texts:
        lower = text.lower()
        for word in _WORD.findall(lower):
            for lang in _LANGUAGES_OF.get(word, ()):
                score[lang] += 1
        if not lower.isascii():  # no accented letter to count in plain ASCII
            for lang, chars in _ACCENTS.items():
                if chars:
                    accents[lang] += 0.5 * sum(lower.count(ch) for ch in chars)
    for lang, extra in accents.items():
        score[lang] += min(extra, ACCENT_CAP)
    best = max(score, key=lambda lang: score[lang])
    if best not in _WORDS or best == "en":
        return "en"
    runner_up = max(v for lang, v in score.items() if lang != best)
    return best if score[best] >= runner_up + 2 else "en"
