"""The aiohttp app factory, the composition root: it builds every bridge, then the core, the
live hub and the delivery worker from them, once; mounts the bridges' routes; opens and closes
what needs the event loop in `cleanup_ctx`. Typed `web.AppKey`s instead of globals, nothing read
from the environment at import time.

A bridge is one entry in BRIDGES. Slack's and Telegram's load their SDKs only when configured,
so the core runs (and its tests run) without touching a platform SDK."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import timedelta

from aiohttp import web
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import bridges.slack
import bridges.telegram
import bridges.webinbox
import bridges.widget
from agent.actions import ActionRunner
from agent.knowledge import KnowledgeBase
from agent.offline import OfflineAgent
from core.approvals import Approvals
from core.bridge import Bridge, BridgeFactory, BridgeSetup, ConfigurationError, check_bridges
from core.clock import SYSTEM_CLOCK, Clock
from core.corrections import Corrections, training_examples
from core.delivery import DeliveryWorker
from core.lifecycle import Core, CoreMessages
from core.live import LiveHub
from core.metrics import Metrics
from core.pacing import Pacer
from core.periodic import Periodic
from core.queue import QueueReader
from core.shared_pacing import SharedPacer
from core.spikes import SpikeConfig, SpikeMonitor
from core.staff import StaffAccounts, weak_secret_problem
from core.waiting import Waiting
from domain.outbox import Kind, Lane
from domain.ports import Agent
from domain.settings import Settings
from domain.storeconfig import StoreConfig
from storage.db import is_sqlite, make_engine, make_sessionmaker
from storage.migrate import upgrade_async

log = logging.getLogger("handoff.app")

__all__ = ["BRIDGES", "SERVICES", "ConfigurationError", "Services", "build_app"]

# Every bridge the service can run; each answers None when it is not configured. A new channel
# or inbox is a folder under bridges/ and one line here.
BRIDGES: tuple[BridgeFactory, ...] = (
    bridges.widget.build,
    bridges.webinbox.build,
    bridges.slack.build,
    bridges.telegram.build,
)


@dataclass
class Services:
    """What the app factory built, for the routes of its own, the CLI and tests."""

    settings: Settings
    config: StoreConfig
    core: Core
    worker: DeliveryWorker
    live: LiveHub
    agent: Agent
    metrics: Metrics
    staff: StaffAccounts
    queue: QueueReader
    bridges: dict[str, Bridge]
    inbox_token: str
    monitor: SpikeMonitor | None = None


SERVICES = web.AppKey("services", Services)


def check_production(settings: Settings) -> list[str]:
    """What is missing to run outside demo mode; fail closed rather than run unprotected."""
    from bridges.widget.embedding import widget_problems

    problems = widget_problems(settings)
    if settings.inbox_token:
        # A guessable bootstrap token would sign a stranger in as the inbox's admin.
        weak = weak_secret_problem("INBOX_TOKEN", settings.inbox_token.get_secret_value())
        if weak:
            problems.append(weak)
    if settings.slack_app_token and not settings.slack_app_token.get_secret_value().startswith(
        "xapp-"
    ):
        problems.append("SLACK_APP_TOKEN must be an app-level token (xapp-…), not a bot token")
    if not settings.demo:
        if settings.slack_enabled and not (
            settings.slack_signing_secret or settings.slack_app_token
        ):
            # Socket Mode alone (SLACK_APP_TOKEN) needs no secret: the app-level token
            # authenticates the socket, and /slack/events refuses every request without one.
            problems.append(
                "SLACK_SIGNING_SECRET is not set: Slack requests could not be verified "
                "(or set SLACK_APP_TOKEN for Socket Mode only)"
            )
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
    settings: Settings,
    config: StoreConfig,
    *,
    auto_migrate: bool | None = None,
    bridges: Sequence[BridgeFactory] = BRIDGES,
    clock: Clock = SYSTEM_CLOCK,
) -> web.Application:
    problems = check_production(settings)
    if problems:
        raise ConfigurationError("; ".join(problems))
    app = web.Application(client_max_size=256 * 1024)
    if auto_migrate is None:
        auto_migrate = settings.demo or settings.database_url.startswith("sqlite")
    engine = make_engine(settings.database_url)
    sessions = make_sessionmaker(engine)
    several = not is_sqlite(engine)  # one process owns a SQLite file; PostgreSQL may have more
    live = LiveHub()
    metrics = Metrics()
    pacer = Pacer(clock)
    knowledge = KnowledgeBase.from_folder(settings.knowledge_dir or config.knowledge_path)
    actions = ActionRunner(config, settings.shop_api_url)
    offline = OfflineAgent(config, knowledge, actions)
    agent: Agent = offline
    if settings.llm_enabled:
        from agent.llm import build_llm_agent

        agent = build_llm_agent(settings, config, knowledge, actions, fallback=agent)
    token = settings.inbox_token.get_secret_value() if settings.inbox_token else ""
    if not token and settings.demo:
        token = secrets.token_urlsafe(32)
    staff = StaffAccounts(
        sessions,
        bootstrap_token=token,
        session_lifetime=timedelta(days=settings.inbox_session_days),
        link_lifetime=timedelta(hours=settings.staff_link_hours),
    )
    queue = QueueReader(sessions)

    setup = BridgeSetup(settings, config, live, pacer, clock, staff, queue)
    built = [b for factory in bridges if (b := factory(setup)) is not None]
    check_bridges(built)
    worker = DeliveryWorker(
        sessions,
        bridges=built,
        pacer=pacer,
        # Destinations whose limit is the platform's, not a process's, are paced across instances.
        shared_pacer=SharedPacer(sessions, pacer.shared_rates(), clock) if several else None,
        live=live,
        metrics=metrics,
        poll_seconds=settings.delivery_poll_seconds,
        lease_seconds=settings.delivery_lease_seconds,
        give_up_seconds=settings.delivery_give_up_seconds,
        clock=clock,
    )
    m = config.messages
    core = Core(
        sessions=sessions,
        agent=agent,
        live=live,
        messages=CoreMessages(
            claimed=m.claimed,
            resolved=m.resolved,
            handback=m.handback,
            ai_unavailable=m.ai_unavailable,
        ),
        mask_patterns=list(config.mask_patterns),
        max_text=settings.max_message_chars,
        display_name=config.staff_name,
        on_outbox=worker.kick,
        metrics=metrics,
        multi_instance=several,
        lease_seconds=settings.processing_lease_seconds,
        bridges=built,
        clock=clock,
        corrections=Corrections.from_config(config, offline.classifier.names),
    )
    # Prepared writes (cancel, refund): stored with the handoff, run once when approved.
    core.approvals = Approvals(core, config, actions)
    # The wait told at a handoff (the live queue), and one follow-up when it slips.
    core.waiting = Waiting(core, config)
    wait_checks = Periodic(core.waiting.check, settings.wait_check_seconds, "wait follow-up check")
    worker.handle(Lane.ACTION, Kind.RUN_ACTION, core.approvals.deliver)
    monitor = _spike_monitor(settings, config, core) if config.alerts.enabled else None
    services = Services(
        settings,
        config,
        core,
        worker,
        live,
        agent,
        metrics,
        staff,
        queue,
        {b.name: b for b in built},
        token,
        monitor,
    )
    app[SERVICES] = services
    _own_routes(app, services)
    for bridge in built:
        bridge.mount(app, core)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        if auto_migrate:
            await upgrade_async(settings.database_url)
        await _learn(offline, config, sessions)
        started: list[Bridge] = []
        fanout = None
        sweeper = None
        try:
            for bridge in built:
                await bridge.start()
                started.append(bridge)
            if several:
                await worker.recover()
                from core.fanout import PgFanout, asyncpg_dsn

                fanout = PgFanout(asyncpg_dsn(settings.database_url), live)
                await fanout.start()
            else:
                await worker.recover_all()  # one process owns a SQLite file: claims are orphans
            worker.start()
            resumed = await core.resume()
            sweeper = asyncio.create_task(core.sweep_forever(settings.sweep_seconds))
            if monitor is not None:
                monitor.start()
            wait_checks.start()
            log.info(
                "started",
                extra={"resumed": resumed, "bridges": sorted(services.bridges)},
            )
            yield
        finally:
            await wait_checks.stop()
            if monitor is not None:
                await monitor.stop()
            # Sends in flight finish before any bridge closes its client (a send cut off after
            # the platform took it would be retried after the restart, and shown twice).
            await worker.stop()
            for bridge in reversed(started):
                await bridge.stop()
            if sweeper is not None:
                sweeper.cancel()
            await core.close()
            if fanout is not None:
                await fanout.stop()
            await actions.close()
            if hasattr(agent, "aclose"):
                await agent.aclose()
            await engine.dispose()

    app.cleanup_ctx.append(lifecycle)
    return app


async def _learn(
    offline: OfflineAgent, config: StoreConfig, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """The examples the team's corrections taught and a reviewer accepted join the classifier
    now, once per start (training takes a second or two, off the event loop)."""
    from bot.examples import classifier_with, count

    try:
        examples = await training_examples(sessions)
    except DBAPIError as exc:  # not migrated this far: the service runs, untaught
        log.warning("labelled examples not read: %s", type(exc).__name__)
        return
    if examples:
        offline.classifier = await asyncio.to_thread(classifier_with, config, examples)
        log.info("classifier trained with accepted examples", extra={"examples": count(examples)})


def _spike_monitor(settings: Settings, config: StoreConfig, core: Core) -> SpikeMonitor:
    a = config.alerts
    return SpikeMonitor(
        core.sessions,
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


def _own_routes(app: web.Application, services: Services) -> None:
    settings = services.settings

    async def healthz(request: web.Request) -> web.Response:
        pending = await services.worker.pending()
        inboxes = services.core.inbox_names
        return web.json_response(
            {
                "ok": True,
                "outbox_pending": pending,
                "inbox": inboxes[0] if inboxes else None,
                "inboxes": inboxes,
            }
        )

    async def metrics(request: web.Request) -> web.Response:
        token = settings.metrics_token.get_secret_value() if settings.metrics_token else ""
        if token:
            given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            if not secrets.compare_digest(given.encode(), token.encode()):
                return web.Response(status=401, text="/metrics needs Authorization: Bearer <METRICS_TOKEN>\n")
        elif not settings.demo:
            return web.Response(status=403, text="/metrics is off: set METRICS_TOKEN to scrape it\n")
        body = await services.metrics.render(services.core.sessions)
        return web.Response(
            body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}
        )

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
