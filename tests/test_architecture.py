"""The rules of the house, checked on every run:
- dependencies point one way, down the layers below; no two top-level packages import each other,
  directly or round a loop (imports inside functions count);
- domain/, core/, agent/ and bot/ import no platform SDK, directly or through others."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = ("slack_bolt", "slack_sdk", "telegram")
# Lower numbers are lower layers; a package may import its own layer's package and lower layers.
# agent/ and bridges/ share a layer and must not import each other.
LAYERS = {"domain": 0, "storage": 1, "core": 2, "agent": 3, "bridges": 3, "bot": 4}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _package_imports() -> dict[str, dict[str, list[str]]]:
    """package -> imported internal package -> the files that import it."""
    out: dict[str, dict[str, list[str]]] = {p: {} for p in LAYERS}
    for pkg in LAYERS:
        for path in (ROOT / pkg).rglob("*.py"):
            for name in _imports(path):
                top = name.split(".")[0]
                if top in LAYERS and top != pkg:
                    out[pkg].setdefault(top, []).append(str(path.relative_to(ROOT)))
    return out


def test_every_import_points_down_the_layers() -> None:
    wrong = [
        f"{pkg} -> {dep} ({', '.join(sorted(files)[:3])})"
        for pkg, deps in _package_imports().items()
        for dep, files in deps.items()
        if LAYERS[dep] >= LAYERS[pkg]
    ]
    assert wrong == [], "imports that point up or sideways:\n" + "\n".join(wrong)


def test_no_import_loop_between_packages() -> None:
    graph = {pkg: set(deps) for pkg, deps in _package_imports().items()}
    loops = []

    def walk(start: str, node: str, path: list[str]) -> None:
        for nxt in sorted(graph[node]):
            if nxt == start:
                loops.append(" -> ".join([*path, nxt]))
            elif nxt not in path:
                walk(start, nxt, [*path, nxt])

    for pkg in graph:
        walk(pkg, pkg, [pkg])
    assert loops == []


def test_core_and_agent_sources_import_no_platform_sdk() -> None:
    offenders = []
    for folder in ("domain", "core", "bot", "agent"):
        for path in (ROOT / folder).rglob("*.py"):
            for name in _imports(path):
                if name.split(".")[0] in FORBIDDEN:
                    offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert offenders == []


def test_loading_the_core_loads_no_platform_sdk() -> None:
    code = (
        "import sys, core.lifecycle, core.delivery, bot.app, bot.cli, bot.evaluate, agent.offline,"
        " agent.rules;"
        f"bad = [m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}];"
        "print(bad); raise SystemExit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_bridges_reach_the_database_only_through_the_core() -> None:
    """A bridge translates a platform's events into core calls and core deliveries into platform
    calls; it opens no session and writes no row of its own (the outbox stays exactly-once)."""
    deps = _package_imports()["bridges"]
    assert "storage" not in deps, deps.get("storage")
