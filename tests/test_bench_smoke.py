"""The flash-sale benchmark at tiny scale, so it cannot rot: it must finish and count every
message exactly once (the figures themselves are for bench runs, not for tests)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_flash_sale_benchmark_runs_at_tiny_scale() -> None:
    proc = subprocess.run(
        [sys.executable, "bench/flash_sale.py", "--shoppers", "6", "--messages", "2", "--timeout", "60",
         "--slack-rate", "20", "--handoff-share", "0.5"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "RESULT: ok" in proc.stdout and "messages/s" in proc.stdout
