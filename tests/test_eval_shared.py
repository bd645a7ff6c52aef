"""The offline agent on the shared evaluation set (../shared/eval), through `handoff eval`'s
harness: the quality bar of issue 3, checked on every run. The data is used by path, never copied."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.evaluate import load_scenarios, run_eval
from domain.storeconfig import load_config

EVAL = Path(__file__).resolve().parent.parent.parent / "shared" / "eval"
pytestmark = pytest.mark.skipif(not (EVAL / "scenarios.jsonl").exists(), reason="../shared/eval not present")


async def test_scores_meet_the_bar() -> None:
    report = await run_eval(load_scenarios(EVAL / "scenarios.jsonl"), EVAL / "knowledge", load_config())
    s = report.scores()
    assert s["escalation_precision"] >= 0.95 and s["escalation_recall"] >= 0.95, report.render()
    assert s["tag_f1"] >= 0.9 and s["timeliness"] >= 0.95, report.render()
    assert s["knowledge_hit_rate"] >= 0.9, report.render()
