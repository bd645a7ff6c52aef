"""Shared fixtures: a real service on 127.0.0.1 with a temp SQLite database and a sample shop API.

slack_sdk reads HTTP(S)_PROXY and ignores NO_PROXY, so proxy variables are removed for every test:
otherwise calls to 127.0.0.1 would go to a proxy."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from agent import rules
from bot.app import SERVICES, Services, build_app
from bot.shop_server import ShopData, start_shop
from bridges.widget.embedding import sign_email
from core.clock import SYSTEM_CLOCK
from domain.settings import Settings
from domain.storeconfig import StoreConfig, load_config
from storage.migrate import upgrade, upgrade_async
from tests.clock import FakeClock

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
EVAL_DIR = SHARED / "eval"

for _var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
    os.environ.pop(_var, None)
# Settings come from the test, never from a developer's .env or shell.
for _var in list(os.environ):
    if _var == "HANDOFF_REQUIRE_BROWSER":  # about the test run, not the service
        continue
    if _var.startswith(("SLACK_", "TELEGRAM_", "OPENAI_", "INBOX_TOKEN", "HANDOFF_", "SHOP_API")):
        os.environ.pop(_var, None)

SHOP = {
    "orders": {
        "FP-100234": {
            "number": "FP-100234",
            "email": "ann@example.com",
            "status": "shipped",
            "payment_status": "paid",
            "sale": None,
            "total": 89.0,
            "currency": "EUR",
            "placed_at": "2026-11-20T10:00:00Z",
            "items": [{"sku": "RUN-1", "name": "Runner", "qty": 1, "stock": 4}],
        },
        "FP-100311": {
            "number": "FP-100311",
            "email": "ann@example.com",
            "status": "pending",
            "payment_status": "failed",
            "sale": "black-friday",
            "total": 59.0,
            "currency": "EUR",
            "placed_at": "2026-11-21T10:00:00Z",
            "items": [{"sku": "HOOD-1", "name": "Hoodie", "qty": 1, "stock": 2}],
        },
    },
    "customers": {
        "ann@example.com": {
            "email": "ann@example.com",
            "tier": "regular",
            "lifetime_orders": 2,
            "lifetime_value": 148.0,
        },
        "vera@example.com": {
            "email": "vera@example.com",
            "tier": "vip",
            "lifetime_orders": 40,
            "lifetime_value": 5200.0,
        },
    },
}


@pytest.fixture(autouse=True)
def open_for_business(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process handoffs happen while the demo store is open (a Wednesday, noon in Amsterdam),
    so what a shopper is told does not depend on when the suite runs. Tests of out-of-hours
    messages pass their own time."""
    monkeypatch.setattr(rules, "clock", lambda: datetime(2026, 11, 25, 11, 0, tzinfo=UTC))


@pytest.fixture(scope="session")
def _shipped_store_config() -> StoreConfig:
    return load_config()


@pytest.fixture
def store_config(_shipped_store_config: StoreConfig) -> StoreConfig:
    """The shipped config as load_config() returns it: read once per run (~40 ms of YAML for
    each of the hundreds of services the suite starts), each test gets its own deep copy."""
    return copy.deepcopy(_shipped_store_config)


@pytest.fixture
async def shop() -> AsyncIterator[tuple[ShopData, str]]:
    data = ShopData()
    data.load(SHOP)
    runner, url = await start_shop(data)
    yield data, url
    await runner.cleanup()


# The store's secret for signing a logged-in shopper's email (WIDGET_IDENTITY_SECRET).
WIDGET_SECRET = "widget-identity-secret"


def signed(email: str | None, **extra: Any) -> dict[str, Any]:
    """A widget's body for a shopper the store's page vouches for: only a signed email is proof."""
    body = {k: v for k, v in extra.items() if v is not None}
    if email:
        body.update(email=email, user_hash=sign_email(WIDGET_SECRET, email))
    return body


def make_settings(tmp_path: Path, shop_url: str, **overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "database_url": f"sqlite+aiosqlite:///{tmp_path}/handoff.db",
        "shop_api_url": shop_url,
        "inbox_token": INBOX_TOKEN,
        "delivery_poll_seconds": 0.05,
        "widget_identity_secret": WIDGET_SECRET,
    }
    base.update(overrides)
    return Settings(_env_file=None, **base)


AppFactory = Callable[..., Awaitable[TestClient]]

# The bootstrap token the test services run with (at least 128 bits, or the service refuses it).
INBOX_TOKEN = "test-inbox-bootstrap-7Qk2vX9pLm4RtZ8wYc3N"
INBOX_COOKIE = "handoff_inbox"


async def inbox_login(http: Any, name: str = "Maria Lopez", base: str = "") -> dict[str, str]:
    """Sign `name` in to the web inbox as a team does: the admin (INBOX_TOKEN) adds them, they
    open their one-time link. Returns the session as a Cookie header, for clients whose cookie
    jar keeps nothing from 127.0.0.1; a TestClient's jar holds it too, as a browser would."""

    async def post(path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
        async with http.post(base + path, json=body, headers=headers or {}) as r:
            assert r.status == 200, await r.text()
            return r.cookies, await r.json()

    cookies, _ = await post("/inbox/api/login", {"token": INBOX_TOKEN})
    admin = {"Cookie": f"{INBOX_COOKIE}={cookies[INBOX_COOKIE].value}"}
    _, invite = await post("/inbox/api/staff", {"name": name}, admin)
    cookies, _ = await post("/inbox/api/login", {"token": invite["token"]})
    return {"Cookie": f"{INBOX_COOKIE}={cookies[INBOX_COOKIE].value}"}


# ------------------------------------------------------------------ databases
# Migrating a database costs ~0.2 s on SQLite and creating and migrating one ~1 s on PostgreSQL,
# for every test that starts the service. So each is migrated once per run: SQLite as a file
# copied into the test's folder, PostgreSQL as one database emptied before each test (every
# table truncated, ids restarted): what a test sees is the same empty, migrated database.
# "Once per run" is once per process: under pytest-xdist every worker has its own template
# folder and its own PostgreSQL database, so no test sees another worker's rows.

PG = os.environ.get("TEST_DATABASE_URL")
_templates: dict[str, Any] = {}


@pytest.fixture(scope="session")
def sqlite_template() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="handoff-template-"))
    path = folder / "template.db"
    upgrade(f"sqlite+aiosqlite:///{path}")  # no event loop runs yet: alembic may start its own
    yield path
    shutil.rmtree(folder, ignore_errors=True)


def migrated_sqlite(template: Path, path: Path) -> str:
    """The URL of a migrated SQLite database at `path` (copied from the template if new)."""
    if not path.exists():
        shutil.copyfile(template, path)
    return f"sqlite+aiosqlite:///{path}"


@contextlib.asynccontextmanager
async def fresh_pg_database() -> AsyncIterator[str]:
    """An empty, migrated PostgreSQL database of this run's own (TEST_DATABASE_URL)."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    assert PG, "needs TEST_DATABASE_URL"
    if "url" not in _templates:
        # Each pytest-xdist worker is a process of its own with its own database (named after
        # the worker, so a leftover one says where it came from); serially, "main".
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        name = f"handoff_run_{worker}_{uuid.uuid4().hex[:10]}"
        admin = create_async_engine(PG, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        await admin.dispose()
        url = PG.rsplit("/", 1)[0] + f"/{name}"
        await upgrade_async(url)
        _templates.update(url=url, name=name)
    url = _templates["url"]
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            # Whatever the last test left connected goes (as DROP DATABASE ... FORCE would).
            await conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
            tables = list(
                await conn.scalars(
                    text(
                        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                        "AND tablename <> 'alembic_version'"
                    )
                )
            )
            quoted = ", ".join(f'"{t}"' for t in tables)
            await conn.execute(text(f"TRUNCATE {quoted} RESTART IDENTITY CASCADE"))
    finally:
        await engine.dispose()
    yield url


@pytest.fixture(scope="session", autouse=True)
def _drop_run_database() -> Iterator[None]:
    yield
    if "name" not in _templates:
        return
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    async def drop() -> None:
        assert PG
        admin = create_async_engine(PG, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{_templates["name"]}" WITH (FORCE)'))
        await admin.dispose()

    asyncio.run(drop())


@pytest.fixture
async def make_client(
    tmp_path: Path,
    shop: tuple[ShopData, str],
    store_config: StoreConfig,
    sqlite_template: Path,
) -> AsyncIterator[AppFactory]:
    """Start the whole service on a real port; call again with the same tmp_path to 'restart'."""
    clients: list[TestClient] = []

    clocks: list[FakeClock] = []

    async def factory(
        config: StoreConfig | None = None, *, clock: FakeClock | None = None, **overrides: Any
    ) -> TestClient:
        """`clock`: the service's delivery worker and pacers run on it, time passing whenever
        the service has nothing to do but wait (a fake platform can stamp calls with it)."""
        settings = make_settings(tmp_path, shop[1], **overrides)
        if settings.database_url == f"sqlite+aiosqlite:///{tmp_path}/handoff.db":
            migrated_sqlite(sqlite_template, tmp_path / "handoff.db")
        app = build_app(settings, config or store_config, clock=clock or SYSTEM_CLOCK)
        client = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        if clock is not None:
            svc = app[SERVICES]
            clock.run_when_idle(lambda: [*svc.worker._tasks, *svc.core._tasks])
            clocks.append(clock)
        return client

    yield factory
    for c in clients:
        await c.close()
    for clock in clocks:
        await clock.stop()


def services(client: TestClient) -> Services:
    return client.server.app[SERVICES]


async def eventually(
    check: Callable[[], Awaitable[Any]], timeout: float = 10.0, interval: float = 0.02
) -> Any:
    """Poll until `check` returns something truthy (or raise with the last value)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met in {timeout}s; last value: {last!r}")
