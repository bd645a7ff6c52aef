"""CPU per retrieval and start-up cost, against a baseline in the same run.

    .venv/bin/python bench/retrieval/cpu.py KNOWLEDGE_DIR QUESTIONS... [--baseline SRC_DIR]

QUESTIONS: files in the eval format (every shopper turn) or bench/retrieval/*.jsonl. Each
question is searched as the agent does (k=1) `--repeat` times; the per-question CPU time is
the minimum over the repeats (least disturbed by other work on the machine), and the report
gives the mean and the 95th percentile. The caches of stems and translations are cleared before
every repeat, so each question costs what a new shopper's message costs. With `--baseline`,
another checkout's agent/knowledge.py (for example main before this change, from `git archive`)
is timed on the same questions in the same process, and the ratio is printed."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def questions(paths: list[Path]) -> list[str]:
    out: list[str] = []
    for p in paths:
        for line in p.read_text().splitlines():
            if not line.strip():
                continue
            d = json.loads(line)
            out.extend([d["q"]] if "q" in d else d["turns"])
    return out


def timed(search, qs: list[str], repeat: int, clear) -> list[float]:
    best = [float("inf")] * len(qs)
    for _ in range(repeat):
        clear()
        for i, q in enumerate(qs):
            t = time.process_time()
            search(q)
            best[i] = min(best[i], time.process_time() - t)
    return best


def summary(xs: list[float]) -> str:
    s = sorted(xs)
    return f"mean {sum(s) / len(s) * 1000:.3f} ms, p95 {s[int(0.95 * (len(s) - 1))] * 1000:.3f} ms"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("knowledge", type=Path)
    p.add_argument("questions", type=Path, nargs="+")
    p.add_argument("--baseline", type=Path)
    p.add_argument("--repeat", type=int, default=5)
    a = p.parse_args()
    qs = questions(a.questions)

    t = time.process_time()
    from agent import lexicon, query
    from agent.knowledge import KnowledgeBase

    imported = time.process_time() - t
    t = time.process_time()
    kb = KnowledgeBase.from_folder(a.knowledge)
    built = time.process_time() - t

    def clear() -> None:
        query.stem.cache_clear()
        query._literal.cache_clear()
        lexicon.translate_word.cache_clear()
        lexicon.looks_foreign.cache_clear()

    new = timed(lambda q: kb.search(q, k=1), qs, a.repeat, clear)
    print(f"{len(qs)} questions, {len(kb.chunks)} passages")
    print(f"this tree: import {imported * 1000:.0f} ms, index {built * 1000:.0f} ms CPU; "
          f"per search {summary(new)}")
    if a.baseline:
        saved = {k: v for k, v in sys.modules.items() if k == "agent" or k.startswith("agent.")}
        for k in saved:
            del sys.modules[k]
        sys.path.insert(0, str(a.baseline))
        spec = importlib.util.spec_from_file_location(
            "baseline_knowledge", a.baseline / "agent" / "knowledge.py"
        )
        assert spec and spec.loader
        t = time.process_time()
        mod = importlib.util.module_from_spec(spec)
        sys.modules["baseline_knowledge"] = mod
        spec.loader.exec_module(mod)
        b_imported = time.process_time() - t
        t = time.process_time()
        old_kb = mod.KnowledgeBase.from_folder(a.knowledge)
        b_built = time.process_time() - t
        old = timed(lambda q: old_kb.search(q, k=3), qs, a.repeat, lambda: None)
        print(f"baseline:  import {b_imported * 1000:.0f} ms, index {b_built * 1000:.0f} ms CPU; "
              f"per search {summary(old)}")
        print(f"ratio this/baseline, mean per search: {sum(new) / sum(old):.2f}")


if __name__ == "__main__":
    main()
