"""Leave-one-store-out: for each evaluation store, the tunables are chosen on the other stores only
and the left-out store is scored with them, so no store's score comes from settings fitted to it.

    .venv/bin/python bench/loso.py [--json out.json] [--stores sneakers pets ...] [--jobs 2]

Tunables (everything a store's YAML exposes to the built-in agent's judgment): each request
intent's `threshold`, the `fallback_threshold` of the request intents (the bar when the pages have
no answer), and `knowledge.min_confidence`. A joint grid over eight parameters is out of reach
(each setting plays every conversation), so each parameter is varied alone around the shipped
defaults, and a fold picks, parameter by parameter, the value with the best mean of the six
measures over the other stores (ties: the shipped default), then scores the left-out store with
the combined choice. Prints the choice and all six measures per left-out store."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
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
THRESHOLDS = (0.35, 0.4, 0.5, 0.6, 0.7)
FALLBACKS = (0.25, 0.3, 0.4, 1.0)  # 1.0: the fallback bar off
MIN_CONFIDENCE = (0.35, 0.45, 0.55)

Setting = tuple[tuple[str, float], ...]  # (parameter, value) pairs that differ from the shipped


def defaults(base: StoreConfig) -> dict[str, float]:
    """The shipped value of every tunable."""
    out = {f"threshold:{n}": s.threshold for n, s in shipped_intents().items() if n != NONE}
    fallbacks = {s.fallback_threshold for n, s in shipped_intents().items() if n != NONE}
    out["fallback"] = fallbacks.pop() if len(fallbacks) == 1 else 0.3
    out["min_confidence"] = base.knowledge.min_confidence
    return out


def candidates(base: StoreConfig) -> dict[str, tuple[float, ...]]:
    grid: dict[str, tuple[float, ...]] = {}
    for name in defaults(base):
        if name.startswith("threshold:"):
            grid[name] = THRESHOLDS
        elif name == "fallback":
            grid[name] = FALLBACKS
        else:
            grid[name] = MIN_CONFIDENCE
    return grid


def configured(base: StoreConfig, values: dict[str, float]) -> StoreConfig:
    """The store's config with these tunables, written the way a store writes them in its YAML."""
    cfg = base.model_copy(deep=True)
    cfg.intents = {
        name: Intent(threshold=values[f"threshold:{name}"], fallback_threshold=values["fallback"])
        for name in shipped_intents()
        if name != NONE
    }
    cfg.knowledge.min_confidence = values["min_confidence"]
    return cfg


_BASE: list[StoreConfig] = []


def _play(store: str, values: dict[str, float]) -> dict[str, Any]:
    """One eval of `store` with these tunables (in a worker process: the config and the trained
    classifier are loaded once per process)."""
    logging.disable(logging.WARNING)
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        os.environ.pop(var, None)
    if not _BASE:
        _BASE.append(load_config())
    scenarios, knowledge = STORES[store]
    report = asyncio.run(
        run_eval(load_scenarios(scenarios), knowledge, configured(_BASE[0], values))
    )
    return report.scores()


def mean(scores: dict[str, Any]) -> float:
    vals = [scores[m] for m in MEASURES if scores.get(m) is not None]
    return sum(vals) / len(vals) if vals else 0.0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", help="write every setting's scores here")
    p.add_argument("--stores", nargs="*", default=list(STORES))
    p.add_argument("--jobs", type=int, default=1, help="plays run at a time (processes)")
    args = p.parse_args()
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        os.environ.pop(var, None)
    logging.disable(logging.WARNING)
    base = load_config()
    shipped = defaults(base)
    grid = candidates(base)
    stores = {k: v for k, v in STORES.items() if k in args.stores and v[0].exists()}

    jobs: list[tuple[str, tuple[str, float], dict[str, float]]] = []
    for store in stores:
        jobs.append((store, ("default", 0.0), shipped))
        for name, values in grid.items():
            jobs.extend((store, (name, v), {**shipped, name: v}) for v in values if v != shipped[name])

    # Every parameter varied alone, on every store; plays are independent, so --jobs N runs N
    # at a time (each eval is mostly the core's database round trips, not the agent's CPU).
    started = time.monotonic()
    table: dict[str, dict[tuple[str, float], dict[str, Any]]] = {s: {} for s in stores}
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [(store, key, pool.submit(_play, store, values)) for store, key, values in jobs]
        for store, key, fut in futures:
            table[store][key] = fut.result()
            label = "shipped" if key[0] == "default" else f"{key[0]}={key[1]}"
            print(f"  {store:9} {label}: mean {mean(table[store][key]):.3f}", file=sys.stderr)

    def score(store: str, name: str, v: float) -> float:
        key = ("default", 0.0) if v == shipped[name] else (name, v)
        return mean(table[store][key])

    folds: dict[str, dict[str, float]] = {}
    for store in stores:
        others = [s for s in stores if s != store]
        chosen = dict(shipped)
        for name, values in grid.items():
            best = max(
                (sum(score(o, name, v) for o in others) / len(others), v == shipped[name], v)
                for v in (*values, shipped[name])
            )
            chosen[name] = best[2]
        folds[store] = chosen
    # A fold's choice that differs from the shipped defaults in at most one value was played.
    fold_results: dict[str, dict[str, Any]] = {}
    for store, chosen in folds.items():
        diff = [(k, v) for k, v in chosen.items() if v != shipped[k]]
        if len(diff) <= 1:
            fold_results[store] = table[store][diff[0] if diff else ("default", 0.0)]
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        pending = {
            s: pool.submit(_play, s, c) for s, c in folds.items() if s not in fold_results
        }
        fold_results.update({s: f.result() for s, f in pending.items()})

    header = f"{'left out':9}  " + "  ".join(f"{m[:12]:>12}" for m in MEASURES) + "  changed"
    print(header)
    out: dict[str, Any] = {"single": {}, "folds": {}}
    for store in stores:
        chosen = folds[store]
        changed = {k: v for k, v in chosen.items() if v != shipped[k]}
        scores = fold_results[store]
        out["folds"][store] = {"changed": changed, "scores": scores}
        print(f"{store:9}  " + "  ".join(
            f"{scores[m] if scores[m] is not None else 'n/a':>12}" for m in MEASURES
        ) + "  " + (", ".join(f"{k}={v}" for k, v in changed.items()) or "shipped defaults"))
    print(f"wall time {time.monotonic() - started:.0f} s", file=sys.stderr)
    if args.json:
        out["single"] = {s: {f"{k[0]}={k[1]}": v for k, v in t.items()} for s, t in table.items()}
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
