"""Leave-one-store-out tuning of `knowledge.min_confidence`, the one retrieval tunable.

For every store and every bar on a grid, the whole built-in agent plays the store's scenarios
(`handoff eval`: knowledge hit rate, escalation precision) and retrieval alone answers the
off-topic questions (generic ones, plus the store's own in bench/retrieval/ when there are some):
an answer to one of those is a wrong answer. A store's objective is the mean of its knowledge hit
rate, its escalation precision and its share of off-topic questions left unanswered. For each store left out, the bar that
maximises the mean objective over the other stores is applied to it.

    .venv/bin/python bench/retrieval/loso.py [--stores sneakers,pets,voltbox,lumen]

Only aggregate numbers are printed: the held-out stores' texts are never shown."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from agent.knowledge import KnowledgeBase  # noqa: E402
from agent.text import content_words  # noqa: E402
from bot.evaluate import load_scenarios, run_eval  # noqa: E402
from domain.storeconfig import load_config  # noqa: E402

HERE = Path(__file__).resolve().parent
SHARED = ROOT.parent / "shared" / "eval"
STORES = {
    "sneakers": (SHARED / "scenarios.jsonl", SHARED / "knowledge", HERE / "kickdrop.jsonl"),
    "pets": (SHARED / "pets" / "scenarios.jsonl", SHARED / "pets" / "knowledge", HERE / "pawpost.jsonl"),
    "voltbox": (ROOT / "eval" / "voltbox" / "scenarios.jsonl", ROOT / "eval" / "voltbox" / "knowledge", None),
    "lumen": (ROOT / "eval" / "lumen" / "scenarios.jsonl", ROOT / "eval" / "lumen" / "knowledge", None),
}
GRID = [0.30, 0.35, 0.40, 0.45, 0.50, 0.55, 0.60]


def offtopic(extra: Path | None) -> list[str]:
    out = []
    for f in [HERE / "offtopic.jsonl", extra]:
        if f is None:
            continue
        for line in f.read_text().splitlines():
            d = json.loads(line)
            if d["source"] is None and d["q"] not in out:
                out.append(d["q"])
    return out


def score(name: str) -> dict[float, dict[str, float]]:
    scenarios_path, knowledge, extra = STORES[name]
    scenarios = load_scenarios(scenarios_path)
    kb = KnowledgeBase.from_folder(knowledge)
    negatives = offtopic(extra)
    # As the agent does: a message with fewer than two content words is not searched.
    confs = [(kb.search(q, k=1) or [None])[0] if len(content_words(q)) >= 2 else None for q in negatives]
    base = load_config()
    out = {}
    for bar in GRID:
        config = base.model_copy(
            update={"knowledge": base.knowledge.model_copy(update={"min_confidence": bar})}
        )
        s = asyncio.run(run_eval(scenarios, knowledge, config)).scores()
        answered = sum(1 for p in confs if p is not None and p.confidence >= bar) / len(confs)
        out[bar] = {
            "kb": s["knowledge_hit_rate"],
            "prec": s["escalation_precision"],
            "off": answered,
            "obj": (s["knowledge_hit_rate"] + s["escalation_precision"] + 1 - answered) / 3,
        }
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--stores", default=",".join(STORES))
    a = p.parse_args()
    logging.disable(logging.WARNING)
    names = a.stores.split(",")
    table = {n: score(n) for n in names}
    print("bar   " + "  ".join(f"{n:>24}" for n in names))
    for bar in GRID:
        cells = [
            f"kb {table[n][bar]['kb']:.2f} prec {table[n][bar]['prec']:.2f} off {table[n][bar]['off']:.2f}"
            for n in names
        ]
        print(f"{bar:.2f}  " + "  ".join(f"{c:>24}" for c in cells))
    print("\nleft out    chosen bar (on the others)   kb hit   esc. precision   off-topic answered")
    for left in names:
        others = [n for n in names if n != left]
        bar = max(GRID, key=lambda b: (sum(table[n][b]["obj"] for n in others), -b))
        r = table[left][bar]
        print(f"{left:<11} {bar:>10.2f}                   {r['kb']:.2f}     {r['prec']:.2f}             {r['off']:.2f}")


if __name__ == "__main__":
    main()
