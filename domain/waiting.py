"""An honest wait: what a shopper handed off to people is told about the queue, in their language.

At the handoff the shopper learns where they stand (their place among the unclaimed handoffs of
the same routing: the tag's Slack channel, else the inbox) and about how long it takes, from the
recent time to claim (the median over the last hour, once there are enough claims to trust it;
before that, the store's promise, its SLA). When the wait slips well past that estimate (twice it,
and at least a few minutes more) one short follow-up says the team is still on it and how many
are ahead, once per handoff.

The wording is the store's (`messages.queue`, `messages.queue_followup`, and `expectation` /
`out_of_hours` with `{{ queue }}` in them); for a shopper writing German, Spanish, French or Dutch
the store's `messages.translations.<lang>` when it gives one, else the built-in wording below.
Everything is rendered by the same sandboxed templates as every other message."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from domain.templating import render

LANGUAGES = ("en", "de", "es", "fr", "nl")
MIN_SAMPLES = 5  # claims in the window before their median is trusted over the SLA
SAMPLE_WINDOW = timedelta(hours=1)
SLIP_FACTOR = 2.0  # the follow-up comes when the wait reaches twice the estimate...
SLIP_MIN_EXTRA = timedelta(minutes=3)  # ...and at least this much past it

# The messages that speak about the wait, per language. English is the store's `messages`.
BUILTIN: dict[str, dict[str, str]] = {
    "de": {
        "expectation": "Ich habe das an unser Team weitergegeben. {{ queue }}",
        "out_of_hours": (
            "Ich habe das an unser Team weitergegeben. Wir sind gerade nicht erreichbar; "
            "jemand antwortet Ihnen hier {{ opens }}."
        ),
        "queue": (
            "{% if ahead == 0 %}Sie sind als Nächstes dran; {% elif position %}Sie sind an "
            "{{ position }}. Stelle; {% endif %}{% if measured %}unser Team antwortet gerade in "
            "etwa {{ wait_minutes }} Minuten.{% else %}eine Person antwortet Ihnen hier innerhalb "
            "von {{ sla_minutes }} Minuten.{% endif %}"
        ),
        "queue_followup": (
            "Wir sind noch dran{% if ahead %}: {{ ahead }} vor Ihnen{% else %}: Sie sind als "
            "Nächstes dran{% endif %}."
        ),
    },
    "es": {
        "expectation": "He pasado esto a nuestro equipo. {{ queue }}",
        "out_of_hours": (
            "He pasado esto a nuestro equipo. Ahora no estamos disponibles; una persona te "
            "responderá aquí {{ opens }}."
        ),
        "queue": (
            "{% if ahead == 0 %}Eres el siguiente; {% elif position %}Estás en el puesto "
            "{{ position }} de la cola; {% endif %}{% if measured %}nuestro equipo está respondiendo "
            "en unos {{ wait_minutes }} minutos.{% else %}una persona te responderá aquí en menos "
            "de {{ sla_minutes }} minutos.{% endif %}"
        ),
        "queue_followup": (
            "Seguimos en ello{% if ahead %}: {{ ahead }} por delante de ti{% else %}: eres el "
            "siguiente{% endif %}."
        ),
    },
    "fr": {
        "expectation": "J'ai transmis ceci à notre équipe. {{ queue }}",
        "out_of_hours": (
            "J'ai transmis ceci à notre équipe. Nous sommes absents pour le moment ; une personne "
            "vous répondra ici {{ opens }}."
        ),
        "queue": (
            "{% if ahead == 0 %}Vous êtes le prochain ; {% elif position %}Vous êtes "
            "{{ position }}e dans la file ; {% endif %}{% if measured %}notre équipe répond en "
            "environ {{ wait_minutes }} minutes.{% else %}une personne vous répondra ici dans les "
            "{{ sla_minutes }} minutes.{% endif %}"
        ),
        "queue_followup": (
            "Nous nous en occupons{% if ahead %} : encore {{ ahead }} avant vous{% else %} : "
            "vous êtes le prochain{% endif %}."
        ),
    },
    "nl": {
        "expectation": "Ik heb dit doorgegeven aan ons team. {{ queue }}",
        "out_of_hours": (
            "Ik heb dit doorgegeven aan ons team. We zijn nu niet bereikbaar; iemand antwoordt "
            "u hier {{ opens }}."
        ),
        "queue": (
            "{% if ahead == 0 %}U bent als volgende aan de beurt; {% elif position %}U bent "
            "{{ position }}e in de rij; {% endif %}{% if measured %}ons team antwoordt nu binnen "
            "ongeveer {{ wait_minutes }} minuten.{% else %}iemand antwoordt u hier binnen "
            "{{ sla_minutes }} minuten.{% endif %}"
        ),
        "queue_followup": (
            "We zijn er nog mee bezig{% if ahead %}: nog {{ ahead }} voor u{% else %}: u bent "
            "als volgende aan de beurt{% endif %}."
        ),
    },
}

WAIT_MESSAGES = ("expectation", "out_of_hours", "queue", "queue_followup")

# When people are back, in words: "tomorrow from 08:00 (Europe/Amsterdam)".
_DAYS = {
    "en": ("today", "tomorrow", "on {day}", "from", ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")),
    "de": ("heute", "morgen", "am {day}", "ab", ("Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag")),
    "es": ("hoy", "mañana", "el {day}", "desde las", ("lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo")),
    "fr": ("aujourd'hui", "demain", "{day}", "à partir de", ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche")),
    "nl": ("vandaag", "morgen", "op {day}", "vanaf", ("maandag", "dinsdag", "woensdag", "donderdag", "vrijdag", "zaterdag", "zondag")),
}


def opens_text(opens_at: datetime, now: datetime, timezone: str, language: str = "en") -> str:
    today, tomorrow, on_day, from_, days = _DAYS.get(language, _DAYS["en"])
    local_now = now.astimezone(opens_at.tzinfo)
    delta = (opens_at.date() - local_now.date()).days
    day = today if delta == 0 else tomorrow if delta == 1 else on_day.format(day=days[opens_at.weekday()])
    return f"{day} {from_} {opens_at:%H:%M} ({timezone})"


def ordinal(n: int) -> str:
    """English: 1st, 2nd, 3rd, 4th, 11th, 22nd."""
    if 10 <= n % 100 <= 20:
        return f"{n}th"
    return f"{n}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th') }"


def estimate_minutes(claim_seconds: Sequence[float], sla_minutes: int) -> tuple[int, bool]:
    """About how long the team takes to claim a handoff now: the median of the recent times to
    claim once there are `MIN_SAMPLES` of them (a median: one ticket left for an hour does not
    move it), else the SLA. (minutes, measured)."""
    if len(claim_seconds) < MIN_SAMPLES:
        return sla_minutes, False
    return max(1, round(statistics.median(claim_seconds) / 60)), True


def followup_due(handed_off_at: datetime, estimate: int) -> datetime:
    """When a wait has slipped well past its estimate: twice it, and at least a few minutes more."""
    est = timedelta(minutes=estimate)
    return handed_off_at + max(est * SLIP_FACTOR, est + SLIP_MIN_EXTRA)


@dataclass
class Quote:
    """Where a handoff stands: `ahead` of it in its routing's queue, and the estimate."""

    ahead: int
    wait_minutes: int
    measured: bool  # from recent claims (else the SLA)
    sla_minutes: int

    def variables(self, language: str) -> dict[str, Any]:
        position = self.ahead + 1
        return {
            "ahead": self.ahead,
            "position": position,
            "position_ordinal": ordinal(position) if language == "en" else str(position),
            "wait_minutes": self.wait_minutes,
            "measured": self.measured,
            "sla_minutes": self.sla_minutes,
        }


@dataclass
class Expectation:
    """What the agent decided to tell the shopper at a handoff, rendered by the core when the
    handoff commits, with the live queue in it (`{{ queue }}`, `{{ position }}`, `{{ ahead }}`,
    `{{ wait_minutes }}`). Not stored: what is stored is the message it renders."""

    template: str  # `expectation` (or the rule's own), or `out_of_hours` when the team is away
    queue: str  # the `queue` line's template
    context: dict[str, Any] = field(default_factory=dict)  # what the template sees besides
    sla_minutes: int = 15
    in_hours: bool = True  # out of hours: no estimate and no follow-up
    language: str = "en"
    lead: str | None = None  # said before the message ("I couldn't reach our order system.")


def render_wait(exp: Expectation, quote: Quote | None) -> str:
    """The handoff's message with the queue in it (`quote` None: the queue is not known, as when
    the agent runs without the core, and the line says only the SLA)."""
    live = quote.variables(exp.language) if quote is not None else {"sla_minutes": exp.sla_minutes}
    line = render(exp.queue, **{**exp.context, **live}).strip()
    line = line[:1].upper() + line[1:]
    text = render(exp.template, **{**exp.context, **live, "queue": line}).strip()
    return f"{exp.lead} {text}".strip() if exp.lead and exp.lead not in text else text
