"""Production checks that a stray environment variable must not switch off."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bot.shop_server import free_port

ROOT = Path(__file__).resolve().parent.parent


def test_handoff_run_ignores_demo(tmp_path: Path) -> None:
    """DEMO=true used to turn `handoff run` into demo mode: no INBOX_TOKEN needed (an open
    inbox), /metrics open, any origin. Only `handoff demo` is demo mode."""
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    for var in ("INBOX_TOKEN", "SLACK_BOT_TOKEN", "TELEGRAM_BOT_TOKEN", "WIDGET_ORIGINS"):
        env.pop(var, None)
    env.update(DEMO="true", DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/run.db")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "run", "--port", str(free_port())],
        cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError("`handoff run` started without INBOX_TOKEN because DEMO=true") from None
    assert proc.returncode == 2
    assert "refusing to start" in err and "INBOX_TOKEN" in err


def test_handoff_check_reports_what_run_would_refuse(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.pop("INBOX_TOKEN", None)
    env.update(DEMO="true", INBOX_TOKEN="t" * 32, WIDGET_ORIGINS="*", WIDGET_CREATE_LIMIT="lots")
    proc = subprocess.run(
        [sys.executable, "-m", "bot.cli", "check"], cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1
    assert "WIDGET_ORIGINS=*" in proc.stderr and "WIDGET_CREATE_LIMIT" in proc.stderr
