"""`handoff eval --llm` runs the LLM agent against any OpenAI-compatible endpoint: here the fake
server, with a small deterministic "model" behind it. CI scores the built-in agent
(tests/test_eval_shared.py); this proves the LLM path of the command works end to end."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from bot.cli import main
from tests.conftest import EVAL_DIR
from tests.llm.fake_openai import API_KEY, FakeOpenAI, scripted_model

pytestmark = pytest.mark.skipif(
    not (EVAL_DIR / "scenarios.jsonl").exists(), reason="../shared/eval not present"
)


async def test_handoff_eval_runs_with_the_llm_agent(
    llm: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = (EVAL_DIR / "scenarios.jsonl").read_text().splitlines()
    scenarios = [json.loads(line) for line in lines if line.strip()]
    picked = [s for s in scenarios if s["expect"].get("kb_source")][:3]
    picked += [s for s in scenarios if s["expect"].get("escalate")][:2]
    path = tmp_path / "scenarios.jsonl"
    path.write_text("\n".join(json.dumps(s) for s in picked) + "\n")
    llm.default = scripted_model
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", llm.url)
    monkeypatch.setenv("OPENAI_MODEL", "fake-eval")
    monkeypatch.setenv("OPENAI_TIMEOUT", "2")
    out = tmp_path / "report.json"
    argv = ["eval", str(path), "--knowledge", str(EVAL_DIR / "knowledge"), "--llm", "--quiet"]
    code = await asyncio.to_thread(main, [*argv, "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    assert len(report["results"]) == len(picked)
    assert {r["model"] for r in llm.requests} == {"fake-eval"}
    assert any("tools" in r for r in llm.requests)
    # The fake model answers from the first passage it finds, with its source.
    kb = [r for r in report["results"] if r["expect"].get("kb_source")]
    assert any(r["sources"] for r in kb), report
    # The rules still hand off where the scenario says so.
    esc = [r for r in report["results"] if r["expect"].get("escalate")]
    assert all(r["escalated"] for r in esc), report
