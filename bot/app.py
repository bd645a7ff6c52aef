"""The aiohttp app factory: every resource opened in `cleanup_ctx` and closed on the way out,
typed `web.AppKey`s instead of globals, nothing read from the environment at import time.

Bridges for Slack and Telegram are imported only when configured, so the core runs (and its
tests run) without touching a platform SDK."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from aiohttp import web

from agent.actions import ActionRunner
from agent.knowledge import KnowledgeBase
from agent.offline import OfflineAgent
from core.delivery import DeliveryWorker
from core.lifecycle import Core, CoreMessages
from core.live import LiveHub
from core.metrics import Metrics
from core.pacing import Pacer
from core.queue import QueueReader
from core.services import (
    BRIDGE_SETUP,
    BRIDGE_TEARDOWN,
    SERVICES,
    ConfigurationError,
    Services,
    display_name_factory,
)
from core.staff import StaffAccounts, weak_secret_problem
from domain.ports import Agent, Inbox, ShopperChannel
from domain.settings import Settings
from domain.storeconfig import StoreConfig
from storage.db import is_sqlite, make_engine, make_sessionmaker
from storage.migrate import upgrade_async

log = logging.getLogger("handoff.app")


def check_production(settings: Settings) -> list[str]:
    """What is missing to run outside demo mode; fail closed rather than run unprotected."""
    from bridges.widget.embedding import widget_problems

    problems = widget_problems(settings)
    if settings.inbox_token:
        # A guessable bootstrap token would sign a stranger in as the inbox's admin.
        weak = weak_secret_problem("INBOX_TOKEN", settings.inbox_token.get_secret_value())
        if weak:
            problems.append(weak)
    if not settings.demo:
        if settings.slack_enabled and not settings.slack_signing_secret:
            problems.append("SLACK_SIGNING_SECRET is not set: Slack requests could not be verified")
        if (
            settings.telegram_enabled
            and settings.telegram_mode == "webhook"
            and not settings.telegram_webhook_secret
        ):
            problems.append(
                "TELEGRAM_WEBHOOK_SECRET is not set: Telegram webhooks could not be verified"
            )
    return problems


def build_app(
    settings: Settings, config: StoreConfig, *, auto_migrate: bool | None = None
) -> web.Application:
    problems = check_production(settings)
    if problems:
        raise ConfigurationError("; ".join(problems))
    app = web.Application(client_max_size=256 * 1024)
    if auto_migrate is None:
        auto_migrate = settings.demo or settings.database_url.startswith("sqlite")

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        engine = make_engine(settings.database_url)
        if auto_migrate:
            await upgrade_async(settings.database_url)
        sessions = make_sessionmaker(engine)
        live = LiveHub()
        knowledge_dir = settings.knowledge_dir or config.knowledge_path
        knowledge = KnowledgeBase.from_folder(knowledge_dir)
        actions = ActionRunner(config, settings.shop_api_url)
        agent: Agent = OfflineAgent(config, knowledge, actions)
        if settings.llm_enabled:
            from agent.llm import build_llm_agent

            agent = build_llm_agent(settings, config, knowledge, actions, fallback=agent)

        metrics = Metrics()
        pacer = Pacer()
        channels: dict[str, ShopperChannel] = {}
        inboxes: dict[str, Inbox] = {}
        from bridges.widget.routes import WidgetChannel

        channels["widget"] = WidgetChannel(live)
        from bridges.webinbox.routes import WebInbox

        web_inbox = WebInbox(live)
        inboxes["web"] = web_inbox
        inbox_name = "web"
        m = config.messages
        core = Core(
            sessions=sessions,
            agent=agent,
            live=live,
            inbox_name=inbox_name,
            messages=CoreMessages(
                claimed=m.claimed,
                resolved=m.resolved,
                handback=m.handback,
                ai_unavailable=m.ai_unavailable,
            ),
            mask_patterns=list(config.mask_patterns),
            max_text=settings.max_message_chars,
            display_name=display_name_factory(config),
            metrics=metrics,
            lease_seconds=settings.processing_lease_seconds,
        )
        worker = DeliveryWorker(
            sessions,
            channels=channels,
            inboxes=inboxes,
            pacer=pacer,
            live=live,
            poll_seconds=settings.delivery_poll_seconds,
            lease_seconds=settings.delivery_lease_seconds,
            give_up_seconds=settings.delivery_give_up_seconds,
        )
        core.on_outbox = worker.kick
        core.live_channels = {n for n, c in channels.items() if getattr(c, "live_delivery", False)}
        core.typing_hooks["widget"] = channels["widget"].typing  # type: ignore[attr-defined]
        token = settings.inbox_token.get_secret_value() if settings.inbox_token else ""
        if not token and settings.demo:
            token = secrets.token_urlsafe(32)
        services = Services(
            settings, config, core, worker, live, agent, channels, inboxes, token
        )
        services.extras["metrics"] = metrics
        services.extras["staff"] = StaffAccounts(
            sessions,
            bootstrap_token=token,
            session_lifetime=timedelta(days=settings.inbox_session_days),
            link_lifetime=timedelta(hours=settings.staff_link_hours),
        )
        services.extras["queue"] = QueueReader(sessions)
        app[SERVICES] = services
        monitor = None
        if config.alerts.enabled:
            from core.spikes import SpikeConfig, SpikeMonitor

            a = config.alerts
            monitor = SpikeMonitor(
                sessions,
                core.enqueue_alert,
                SpikeConfig(
                    timedelta(minutes=a.window_minutes),
                    a.baseline_windows,
                    a.min_count,
                    a.min_ratio,
                    a.alpha,
                    timedelta(minutes=a.cooldown_minutes),
                ),
                interval=a.check_seconds,
                inbox_url=f"{settings.public_url.rstrip('/')}/inbox" if settings.public_url else "",
            )
            services.extras["spikes"] = monitor

        for hook in app.get(BRIDGE_SETUP, []):
            await hook(app, services)

        fanout = None
        sweeper = None
        if is_sqlite(engine):
            await worker.recover_all()  # one process owns a SQLite file: every claim is orphaned
        else:
            core.multi_instance = True
            await worker.recover()
            from core.shared_pacing import SharedPacer

            # Destinations whose limit is per platform, not per process, are paced across instances.
            worker.shared_pacer = SharedPacer(
                sessions, {"slack-channel": settings.slack_post_rate, "slack-update": settings.slack_update_rate}
            )
            from core.fanout import PgFanout, asyncpg_dsn

            fanout = PgFanout(asyncpg_dsn(settings.database_url), live)
            await fanout.start()
        worker.start()
        resumed = await core.resume()
        sweeper = asyncio.create_task(core.sweep_forever(settings.sweep_seconds))
        if monitor is not None:
            monitor.start()
        log.info(
            "started",
            extra={"resumed": resumed, "inbox": core.inbox_name, "channels": sorted(channels)},
        )
        try:
            yield
        finally:
            if monitor is not None:
                await monitor.stop()
            for hook in app.get(BRIDGE_TEARDOWN, []):
                await hook(app, services)
            sweeper.cancel()
            await worker.stop()
            await core.close()
            if fanout is not None:
                await fanout.stop()
            await actions.close()
            if hasattr(agent, "aclose"):
                await agent.aclose()
            await engine.dispose()

    app.cleanup_ctx.append(lifecycle)
    app[BRIDGE_SETUP] = []
    app[BRIDGE_TEARDOWN] = []
    _register_routes(app, settings, config)
    return app


def _register_routes(app: web.Application, settings: Settings, config: StoreConfig) -> None:
    """Routes are registered up front (aiohttp freezes the router); handlers reach services lazily."""
    from bridges.webinbox.routes import WebInboxRoutes
    from bridges.widget.embedding import WidgetPolicy
    from bridges.widget.routes import WidgetRoutes

    async def healthz(request: web.Request) -> web.Response:
        services = request.app[SERVICES]
        pending = await services.worker.pending()
        return web.json_response(
            {"ok": True, "outbox_pending": pending, "inbox": services.core.inbox_name}
        )

    async def metrics(request: web.Request) -> web.Response:
        services = request.app[SERVICES]
        token = settings.metrics_token.get_secret_value() if settings.metrics_token else ""
        if token:
            given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            if not secrets.compare_digest(given.encode(), token.encode()):
                return web.Response(status=401, text="/metrics needs Authorization: Bearer <METRICS_TOKEN>\n")
        elif not settings.demo:
            return web.Response(status=403, text="/metrics is off: set METRICS_TOKEN to scrape it\n")
        body = await services.extras["metrics"].render(services.core.sessions)
        return web.Response(
            body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}
        )

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    tags = [
        {"name": n, "description": t.description, "emoji": t.emoji, "color": t.color}
        for n, t in config.tags.items()
    ]
    lazy = _Lazy(app)
    WidgetRoutes(  # type: ignore[arg-type]
        lazy, lazy.live, max_text=settings.max_message_chars, policy=WidgetPolicy.from_settings(settings)
    ).register(app)
    inbox_routes = WebInboxRoutes(
        lazy,  # type: ignore[arg-type]
        lazy.live,  # type: ignore[arg-type]
        tags,
        trusted_proxies=settings.trusted_proxies,
        login_limit=settings.inbox_login_limit,
        session_seconds=settings.inbox_session_days * 86400,
    )
    inbox_routes.register(app)

    async def bind(app: web.Application, services: Services) -> None:
        inbox_routes.staff = services.extras["staff"]
        inbox_routes.reader = services.extras["queue"]
        services.extras["inbox_routes"] = inbox_routes

    app[BRIDGE_SETUP].append(bind)
    if settings.slack_enabled:
        from bridges.slack.setup import setup_slack

        setup_slack(app, settings, config)
    if settings.telegram_enabled:
        from bridges.telegram.setup import setup_telegram

        setup_telegram(app, settings, config)


class _Lazy:
    """Stands in for the core and the live hub until `cleanup_ctx` has built them."""

    def __init__(self, app: web.Application) -> None:
        self._app = app
        self.live = _LazyLive(app)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._app[SERVICES].core, name)


class _LazyLive:
    def __init__(self, app: web.Application) -> None:
        self._app = app

    def __getattr__(self, name: str) -> Any:
        return getattr(self._app[SERVICES].live, name)
