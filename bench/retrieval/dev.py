"""Retrieval on its own, for development: top-1 file, confidence, per-query CPU.

    .venv/bin/python bench/retrieval/dev.py QUERIES.jsonl KNOWLEDGE_DIR [--bar 0.4] [--words] [-v]

QUERIES.jsonl: {"q": text, "source": file or null}; a null source is a question the pages do
not answer (it should fall below the bar). Scenario files in the eval format are read too (the
first turn of each conversation with expect.kb_source)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from agent.knowledge import KnowledgeBase  # noqa: E402
from agent.text import content_words  # noqa: E402


def load(path: Path) -> list[dict]:
    out = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        d = json.loads(line)
        if "q" in d:
            out.append(d)
        elif d.get("expect", {}).get("kb_source"):
            out.append({"q": d["turns"][0], "source": d["expect"]["kb_source"], "id": d["id"]})
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("queries", type=Path)
    p.add_argument("knowledge", type=Path)
    p.add_argument("--bar", type=float, default=None)
    p.add_argument("--words", action="store_true")
    p.add_argument("-v", action="store_true")
    a = p.parse_args()
    t0 = time.process_time()
    extra = None
    if a.words:
        from bench.retrieval.wordvectors import WordVectors

        extra = WordVectors
    kb = KnowledgeBase.from_folder(a.knowledge, extra=extra)
    start = time.process_time() - t0
    qs = load(a.queries)
    bar = a.bar if a.bar is not None else 0.0
    pos = [q for q in qs if q["source"]]
    neg = [q for q in qs if not q["source"]]
    top1 = answered_right = answered_wrong = neg_answered = 0
    cpu = 0.0
    for q in qs:
        t = time.process_time()
        # The agent does not search a message with fewer than two content words.
        hits = kb.search(q["q"], k=3) if len(content_words(q["q"])) >= 2 else []
        cpu += time.process_time() - t
        best = hits[0] if hits else None
        ok = best is not None and best.source == q["source"]
        conf = best.confidence if best else 0.0
        if q["source"]:
            top1 += ok
            if conf >= bar:
                answered_right += ok
                answered_wrong += not ok
        elif conf >= bar:
            neg_answered += 1
        if a.v:
            mark = "OK " if ok else ("NEG" if not q["source"] else "BAD")
            feats = " ".join(f"{k}={v:.2f}" for k, v in (best.features if best else {}).items())
            print(
                f"{mark} conf={conf:.2f} {feats} {best.source if best else None} <- {q['q'][:90]!r}"
            )
            if a.v and best and q["source"]:
                print("     " + best.text.replace("\n", "\n     ")[:400])
    pos = pos or [{}]
    print(
        f"{a.queries.name}: positives {len(pos)} top1 {top1 / len(pos):.2f} | at bar {bar}: answered right "
        f"{answered_right / len(pos):.2f}, wrong {answered_wrong / len(pos):.2f}; negatives {len(neg)} answered "
        f"{neg_answered}/{len(neg)} | start {start * 1000:.0f} ms CPU, {cpu / len(qs) * 1000:.3f} ms CPU/query"
    )


if __name__ == "__main__":
    main()
