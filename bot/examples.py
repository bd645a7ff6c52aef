"""The classifier with what the team taught it: the shipped intents, the store's `intents:` and
the accepted labelled examples from the database (core/corrections.py), merged in that order.

Used at start (bot/app.py) and by `handoff eval` and `eval --replay`, so a dry run sees the
agent the next start would run."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from sqlalchemy.exc import DBAPIError

from agent.classifier import IntentClassifier, IntentSpec, merge_intents, shipped_intents, trained
from core.corrections import training_examples
from domain.storeconfig import StoreConfig
from storage.db import make_engine, make_sessionmaker

log = logging.getLogger("handoff.examples")


def store_specs(config: StoreConfig) -> dict[str, IntentSpec]:
    return {s.name: s for s in merge_intents(shipped_intents(), config.intents)}


def classifier_with(
    config: StoreConfig, examples: Mapping[str, Sequence[str]]
) -> IntentClassifier:
    """The store's classifier plus `examples` (intent -> texts). An example of an intent the
    store no longer has (removed from its YAML since) is left out, with a warning."""
    specs = store_specs(config)
    unknown = sorted(n for n in examples if n not in specs)
    if unknown:
        log.warning("examples of intents this store does not have are left out: %s", unknown)
    extra = {n: {"examples": list(texts)} for n, texts in examples.items() if n in specs and texts}
    return trained(merge_intents(specs, extra))


async def read_examples(database_url: str, *, pending: bool = False) -> dict[str, list[str]]:
    """Accepted (and with `pending`, pending) examples from a database; none from a SQLite file
    that does not exist (it is not created) or a database not yet migrated this far."""
    if database_url.startswith("sqlite"):
        path = database_url.split("///", 1)[-1]
        if not path or path == ":memory:" or not Path(path).exists():
            return {}
    engine = make_engine(database_url)
    try:
        return await training_examples(make_sessionmaker(engine), pending=pending)
    except DBAPIError as exc:
        log.warning("no labelled examples read from the database: %s", type(exc).__name__)
        return {}
    finally:
        await engine.dispose()


def count(examples: Mapping[str, Sequence[str]]) -> int:
    return sum(len(v) for v in examples.values())
