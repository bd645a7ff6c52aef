"""Leave-one-store-out: for each evaluation store, the tunables are chosen on the other stores only
and the left-out store is scored with them, so no store's score comes from settings fitted to it.

    .venv/bin/python bench/loso.py [--json out.json]

Tunables (everything a store's YAML exposes to the built-in agent's judgment): the intents'
decision threshold (one value for the request intents) and `knowledge.min_confidence`. Each
setting is scored once per store; a fold picks the setting with the best mean of the six measures
over the other stores (ties: the shipped default). Prints all six measures per left-out store."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.classifier import NONE, shipped_intents  # noqa: E402
from bot.evaluate import load_scenarios, run_eval  # noqa: E402
from domain.storeconfig import Intent, StoreConfig, load_config  # noqa: E402

SHARED = ROOT.parent / "shared" / "eval"
STORES = {
    "sneakers": (SHARED / "scenarios.jsonl", SHARED / "knowledge"),
    "pets": (SHARED / "pets" / "scenarios.jsonl", SHARED / "pets" / "knowledge"),
    "voltbox": (ROOT / "eval" / "voltbox" / "scenarios.jsonl", ROOT / "eval" / "voltbox" / "knowledge"),
    "lumen": (ROOT / "eval" / "lumen" / "scenarios.jsonl", ROOT / "eval" / "lumen" / "knowledge"),
}
MEASURES = (
    "escalation_recall",
    "escalation_precision",
    "tag_precision",
    "tag_recall",
    "timeliness",
    "knowledge_hit_rate",
)
THRESHOLDS = (0.3, 0.4, 0.5, 0.6)
MIN_CONFIDENCE = (0.35, 0.45, 0.55)
DEFAULT = (0.5, 0.45)


def configured(base: StoreConfig, threshold: float, min_confidence: float) -> StoreConfig:
    cfg = base.model_copy(deep=True)
    cfg.intents = {
        name: Intent(threshold=threshold) for name in shipped_intents() if name != NONE
    }
    cfg.knowledge.min_confidence = min_confidence
    return cfg


def mean(scores: dict[str, Any]) -> float:
    vals = [scores[m] for m in MEASURES if scores.get(m) is not None]
    return sum(vals) / len(vals) if vals else 0.0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", help="write every setting's scores here")
    p.add_argument("--stores", nargs="*", default=list(STORES))
    args = p.parse_args()
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        os.environ.pop(var, None)
    logging.disable(logging.WARNING)
    base = load_config()
    stores = {k: v for k, v in STORES.items() if k in args.stores and v[0].exists()}
    grid = list(itertools.product(THRESHOLDS, MIN_CONFIDENCE))
    table: dict[str, dict[tuple[float, float], dict[str, Any]]] = {}
    for store, (scenarios, knowledge) in stores.items():
        table[store] = {}
        sc = load_scenarios(scenarios)
        for setting in grid:
            report = asyncio.run(run_eval(sc, knowledge, configured(base, *setting)))
            table[store][setting] = report.scores()
            print(f"  {store:9} threshold {setting[0]} min_confidence {setting[1]}: "
                  f"mean {mean(table[store][setting]):.3f}", file=sys.stderr)
    header = f"{'left out':9} {'setting':>11}  " + "  ".join(f"{m[:12]:>12}" for m in MEASURES)
    print(header)
    for store in stores:
        others = [s for s in stores if s != store]

        def fit(setting: tuple[float, float], others: list[str] = others) -> tuple[float, bool]:
            return (sum(mean(table[o][setting]) for o in others) / max(1, len(others)),
                    setting == DEFAULT)

        chosen = max(grid, key=fit)
        scores = table[store][chosen]
        print(f"{store:9} {chosen[0]:>4}/{chosen[1]:<5}  " + "  ".join(
            f"{scores[m] if scores[m] is not None else 'n/a':>12}" for m in MEASURES))
    if args.json:
        Path(args.json).write_text(json.dumps(
            {s: {f"{k[0]}/{k[1]}": v for k, v in t.items()} for s, t in table.items()}, indent=1))


if __name__ == "__main__":
    main()
