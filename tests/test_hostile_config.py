"""Production checks that a stray environment variable must not switch off."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bot.shop_server import free_port

ROOT = Path(__file__).resolve().parent.parent


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    for var in list(env):
        if var.startswith(("INBOX_", "SLACK_", "TELEGRAM_", "WIDGET_", "METRICS_")):
            env.pop(var)
    env.update(DEMO="true", DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/run.db", PYTHONPATH=str(ROOT))
    env.update(extra)
    return env


def test_handoff_run_ignores_demo(tmp_path: Path) -> None:
    """DEMO=true used to turn `handoff run` into demo mode: the sample shop page served, /metrics
    open to anyone. Only `handoff demo` is demo mode."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "run", "--port", str(port)],
        cwd=tmp_path, env=_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                with urllib.request.urlopen(base + "/healthz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                assert time.monotonic() < deadline, "the service did not start"
                time.sleep(0.2)
        for path, refused in (("/", 404), ("/metrics", 403)):
            with pytest.raises(urllib.error.HTTPError) as answer:
                urllib.request.urlopen(base + path, timeout=5)
            assert answer.value.code == refused, path
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "DEMO is ignored" in err


def test_handoff_run_with_demo_still_refuses_unverified_slack(tmp_path: Path) -> None:
    env = _env(tmp_path, SLACK_BOT_TOKEN="xoxb-1", SLACK_INBOX_CHANNEL="C1", SLACK_API_URL="http://127.0.0.1:9/api/")
    proc = subprocess.run(
        [sys.executable, "-m", "bot.cli", "run", "--port", str(free_port())],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    assert "refusing to start" in proc.stderr and "SLACK_SIGNING_SECRET" in proc.stderr


def test_handoff_check_reports_what_run_would_refuse(tmp_path: Path) -> None:
    env = _env(tmp_path, WIDGET_ORIGINS="*", WIDGET_CREATE_LIMIT="lots")
    proc = subprocess.run(
        [sys.executable, "-m", "bot.cli", "check"], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1
    assert "WIDGET_ORIGINS=*" in proc.stderr and "WIDGET_CREATE_LIMIT" in proc.stderr
