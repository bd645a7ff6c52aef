"""The layers everything else stands on (domain/, core/, storage/) type-check with
`mypy --strict` (the settings are in pyproject.toml): a change that breaks a type there fails
here, not in production."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_domain_core_and_storage_pass_mypy_strict() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
