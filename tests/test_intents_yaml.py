"""A store adds an intent in its YAML, with no code: the rule that reads it hands off with the
store's tag, in the store's own conversations."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bot.evaluate import run_eval
from domain.storeconfig import DEFAULT_CONFIG, parse_config
from tests.test_rules import scenario

KNOWLEDGE = Path(__file__).resolve().parent.parent / "examples" / "flash-sale" / "knowledge"

EXTRA = """
intents:
  engraving:
    description: The shopper wants an engraving or a personal text on a product
    threshold: 0.5
    examples:
      - can you engrave my initials on it
      - I'd like a name engraved on the back
      - is it possible to add a personal message engraving
      - please engrave "for Anna" on the lid
      - Können Sie einen Namen eingravieren?
      - Ich hätte gern eine Gravur mit Datum auf dem Deckel
      - Kann man den Ring gravieren lassen?
      - ¿Pueden grabar un nombre en la tapa?
      - Pouvez-vous graver mes initiales ?
      - Kunnen jullie er een naam in graveren?
  cancel:
    examples:
      - please tear up my order, we're emigrating
tags_extra:
"""


def _config() -> object:
    text = DEFAULT_CONFIG.read_text(encoding="utf-8")
    text += EXTRA.replace("tags_extra:\n", "")
    text = text.replace(
        "tags:\n",
        "tags:\n  engraving: {description: \"A personal engraving\", color: \"#999999\"}\n",
        1,
    )
    text = text.replace(
        "  - name: asks for a person\n",
        "  - name: engraving\n    rules:\n      - name: engraving request\n"
        "        if: \"'engraving' in intents\"\n        tags: [engraving]\n"
        "        reason: Wants an engraving\n  - name: asks for a person\n",
        1,
    )
    return parse_config(text, DEFAULT_CONFIG)


def test_a_new_intent_from_yaml_drives_a_rule() -> None:
    config = _config()
    scenarios = [
        scenario("engrave", ["could you engrave my son's name onto the watch?"], tags=["engraving"], by_turn=1),
        scenario("engrave-de", ["Könnt ihr meinen Namen auf die Uhr gravieren?"], tags=["engraving"], by_turn=1),
        scenario("plain", ["How much is shipping to Belgium?"], tags=[], kb="shipping.md"),
    ]
    report = asyncio.run(run_eval(scenarios, KNOWLEDGE, config))
    failures = {r.id: r.failures for r in report.results if r.failures}
    assert not failures, failures
