"""`handoff`: run, demo, migrate, check, eval (and the platform helpers)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from core.logs import setup_logging
from domain.settings import Settings
from domain.storeconfig import ConfigError, StoreConfig, load_config

ROOT = Path(__file__).resolve().parent.parent
DEMO_SHOP = ROOT / "examples" / "flash-sale" / "shop.json"


def _config(args: argparse.Namespace, settings: Settings) -> StoreConfig:
    path = getattr(args, "config", None) or settings.handoff_config
    return load_config(path)


def cmd_check(args: argparse.Namespace) -> int:
    settings = Settings(demo=False)  # checks what `handoff run` would refuse
    try:
        config = _config(args, settings)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    from agent.knowledge import KnowledgeBase
    from bot.app import check_production

    kdir = settings.knowledge_dir or config.knowledge_path
    try:
        kb = KnowledgeBase.from_folder(kdir)
        knowledge = f"{len(kb.sources)} files, {len(kb.chunks)} passages in {kdir}"
    except FileNotFoundError as exc:
        print(f"knowledge: {exc}", file=sys.stderr)
        return 2
    rules = sum(len(rs.rules) for rs in config.rule_sets)
    print(f"config:     {config.path}")
    print(f"store:      {config.store.name}")
    print(f"knowledge:  {knowledge}")
    print(f"actions:    {', '.join(config.actions) or 'none'}")
    print(f"rules:      {rules} in {len(config.rule_sets)} rule sets")
    print(f"tags:       {', '.join(config.tags)}")
    print(
        f"agent:      {'LLM ' + settings.openai_model if settings.llm_enabled else 'built-in (offline)'}"
    )
    print(
        f"inbox:      {'Slack ' + str(settings.slack_inbox_channel) if settings.slack_enabled else 'web inbox at /inbox'}"
        f" (staff: `handoff staff add NAME`{'; INBOX_TOKEN signs in as admin' if settings.inbox_token else ''})"
    )
    print(
        f"channels:   widget{', telegram (' + settings.telegram_mode + ')' if settings.telegram_enabled else ''}"
    )
    print(f"database:   {settings.database_url.split('@')[-1]}")
    problems = check_production(settings)
    for p in problems:
        print(f"problem:    {p}", file=sys.stderr)
    return 1 if problems else 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from storage.migrate import upgrade

    settings = Settings()
    upgrade(settings.database_url)
    print("database is up to date")
    return 0


# Young objects a collection of the first generation waits for (CPython's default is 700). A
# message's way through allocates thousands of short-lived objects; at 700 a collection ran every
# few messages, each also walking the survivors of the last.
GC_GEN0_THRESHOLD = 20_000


async def _settle_gc(_app: web.Application) -> None:
    """Once started: what start-up built (the store config, the classifier, the knowledge index,
    the imported modules: over 200,000 objects that live as long as the process) is moved out of
    the garbage collector's sight with `gc.freeze()`. Otherwise every full collection walks all of
    it again: under a flash sale four full collections took 0.55 s of the service's CPU, one of
    them 0.24 s in a single pause. Nothing is lost: frozen objects are only never collected, and
    they were never going to be."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


def _serve(
    settings: Settings, config: StoreConfig, *, banner: Any = None, extra_startup: Any = None
) -> int:
    from bot.app import ConfigurationError, build_app

    try:
        app = build_app(settings, config)
    except ConfigurationError as exc:
        print(f"refusing to start: {exc}", file=sys.stderr)
        return 2
    if extra_startup is not None:
        app.on_startup.append(extra_startup)
    if banner is not None:
        app.on_startup.append(banner)
    app.on_startup.append(_settle_gc)  # last: after everything start-up builds
    web.run_app(app, host=settings.host, port=settings.port, print=None, access_log=None)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {}
    if args.port:
        overrides["port"] = args.port
    if args.host:
        overrides["host"] = args.host
    # `handoff run` is production: a DEMO=true left in the environment must not switch off its
    # checks (unverified Slack or Telegram requests, open /metrics, any origin, the demo page);
    # only `handoff demo` is demo mode.
    settings = Settings(**overrides, demo=False)
    try:
        config = _config(args, settings)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    setup_logging(settings.log_level)
    if os.environ.get("DEMO", "").strip().lower() in ("1", "true", "yes", "on"):
        logging.getLogger("handoff.cli").warning("DEMO is ignored by `handoff run`: use `handoff demo`")
    return _serve(settings, config)


def cmd_demo(args: argparse.Namespace) -> int:
    from bot.shop_server import ShopData, free_port, start_shop

    port = args.port or 8080
    shop_port = args.shop_port or free_port()
    os.environ.setdefault("DATABASE_URL", "sqlite+aiosqlite:///./handoff-demo.db")
    settings = Settings(
        demo=True,
        port=port,
        host=args.host or "127.0.0.1",
        shop_api_url=f"http://127.0.0.1:{shop_port}",
    )
    try:
        config = _config(args, settings)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    setup_logging(settings.log_level)
    shop = ShopData()
    shop.load(json.loads(DEMO_SHOP.read_text()))
    holder: dict[str, Any] = {}

    async def start_shop_api(app: web.Application) -> None:
        holder["runner"], _ = await start_shop(shop, shop_port)

        async def stop(app: web.Application) -> None:
            await holder["runner"].cleanup()

        app.on_cleanup.append(stop)

    async def banner(app: web.Application) -> None:
        from bot.app import SERVICES

        token = app[SERVICES].inbox_token
        base = f"http://{settings.host}:{settings.port}"
        print(
            "\nhandoff demo is running (Ctrl-C to stop)\n"
            f"  shop page with the chat widget:  {base}/\n"
            f"  team inbox (as admin):           {base}/inbox#login={token}\n"
            f"  sample shop API:                 {settings.shop_api_url}/orders/FP-100234\n"
            "  try: 'where is my order FP-100234?', 'my payment for FP-100311 failed',\n"
            "       'how long does shipping to Germany take?', 'can I talk to a person?'\n",
            flush=True,
        )

    return _serve(settings, config, banner=banner, extra_startup=start_shop_api)


def _labelled_examples(args: argparse.Namespace, settings: Settings) -> dict[str, list[str]]:
    """The database's labelled examples that `--examples` asks for (see `handoff eval -h`)."""
    from bot.examples import count, read_examples

    if args.examples == "none":
        return {}
    examples = asyncio.run(
        read_examples(settings.database_url, pending=args.examples == "pending")
    )
    if examples:
        which = "accepted and pending" if args.examples == "pending" else "accepted"
        print(f"with {count(examples)} {which} labelled examples from the database", file=sys.stderr)
    return examples


def cmd_eval(args: argparse.Namespace) -> int:
    from bot.evaluate import load_scenarios, run_eval

    settings = Settings()
    try:
        config = _config(args, settings)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING)
    if args.replay:
        return _replay(args, settings, config)
    if not args.scenarios or not args.knowledge:
        print("handoff eval: give SCENARIOS and --knowledge DIR, or --replay SINCE", file=sys.stderr)
        return 2
    scenarios = load_scenarios(args.scenarios)
    factory = None
    if args.llm:
        from agent.llm import llm_agent_factory

        factory = llm_agent_factory(settings)
    examples = _labelled_examples(args, settings)
    report = asyncio.run(
        run_eval(scenarios, args.knowledge, config, agent_factory=factory, examples=examples)
    )
    print(report.render(show_transcripts=not args.quiet))
    if args.json:
        Path(args.json).write_text(json.dumps(report.as_json(), indent=2, default=str))
    return 0


def _replay(args: argparse.Namespace, settings: Settings, config: StoreConfig) -> int:
    from bot.replay import run_replay
    from core.analytics import parse_duration
    from storage.db import make_engine, make_sessionmaker
    from storage.models import utcnow

    try:
        since = utcnow() - parse_duration(args.replay)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    examples = _labelled_examples(args, settings)
    knowledge = args.knowledge or settings.knowledge_dir or config.knowledge_path

    async def go() -> Any:
        engine = make_engine(settings.database_url)
        try:
            return await run_replay(
                make_sessionmaker(engine), since, config, knowledge, examples=examples
            )
        finally:
            await engine.dispose()

    report = asyncio.run(go())
    print(report.render())
    if args.json:
        Path(args.json).write_text(json.dumps(report.as_json(), indent=2, default=str))
    return 0


def cmd_examples(args: argparse.Namespace) -> int:
    """Labelled examples from the team's corrections: list, accept (optionally as another
    intent), reject. Accepted ones train the classifier at the next start."""
    import getpass

    from bot.examples import store_specs
    from core.corrections import example_json, list_examples, review
    from storage.db import make_engine, make_sessionmaker
    from storage.migrate import upgrade

    settings = Settings()
    if settings.database_url.startswith("sqlite"):
        upgrade(settings.database_url)  # as `handoff run` does for SQLite
    label = getattr(args, "as_intent", None)
    if label is not None:
        try:
            known = store_specs(_config(args, settings))
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return 2
        if label not in known:
            print(f"no intent {label!r}; the store's intents: {', '.join(sorted(known))}", file=sys.stderr)
            return 2

    async def go() -> int:
        engine = make_engine(settings.database_url)
        sessions = make_sessionmaker(engine)
        try:
            if args.examples_command == "list":
                status = None if args.status == "all" else args.status
                rows = await list_examples(sessions, status)
                if args.json:
                    print(json.dumps([example_json(r) for r in rows], indent=2))
                    return 0
                if not rows:
                    print("no labelled examples" + (f" {status}" if status else "") + " yet")
                for r in rows:
                    also = f" (or {', '.join(r.alternatives)})" if r.alternatives else ""
                    print(f"#{r.id}\t{r.status}\t{r.label}{also}\t{json.dumps(r.text, ensure_ascii=False)}")
                    how = "wrong handoff" if r.cause == "wrong" else "retag " + " ".join(r.change)
                    note = f" · note: {r.note}" if r.note else ""
                    reviewed = f" · reviewed by {r.reviewed_by}" if r.reviewed_by else ""
                    print(
                        f"\tconversation #{r.conversation_id} · {how} by {r.actor} · "
                        f"{r.created_at:%Y-%m-%d %H:%M} UTC{note}{reviewed}"
                    )
                return 0
            status = "accepted" if args.examples_command == "accept" else "rejected"
            by = args.by or getpass.getuser()
            changed, missing = await review(sessions, args.ids, status, by, label)
            for example_id in missing:
                print(f"no labelled example #{example_id}", file=sys.stderr)
            if changed:
                print(f"{status}: {', '.join(f'#{i}' for i in changed)}")
                if status == "accepted":
                    print(
                        "They train the classifier at the next start (`handoff run`); "
                        "`handoff eval` and `handoff eval --replay` use them now."
                    )
            return 1 if missing else 0
        finally:
            await engine.dispose()

    return asyncio.run(go())


def cmd_stats(args: argparse.Namespace) -> int:
    from core.analytics import compute_stats, parse_duration, render_table
    from storage.db import make_engine, make_sessionmaker
    from storage.models import utcnow

    settings = Settings()
    try:
        since = parse_duration(args.since)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2

    async def go() -> Any:
        engine = make_engine(settings.database_url)
        try:
            async with make_sessionmaker(engine)() as s:
                return await compute_stats(s, utcnow() - since, tag=args.tag)
        finally:
            await engine.dispose()

    st = asyncio.run(go())
    print(json.dumps(st.as_json(), indent=2) if args.json else render_table(st))
    return 0


def cmd_staff(args: argparse.Namespace) -> int:
    """People who work in the web inbox: add (prints a one-time login link), list, remove."""
    from datetime import timedelta

    from core.staff import StaffAccounts, StaffError
    from storage.db import make_engine, make_sessionmaker
    from storage.migrate import upgrade

    settings = Settings()
    if settings.database_url.startswith("sqlite"):
        upgrade(settings.database_url)  # as `handoff run` does for SQLite

    async def go() -> int:
        engine = make_engine(settings.database_url)
        accounts = StaffAccounts(
            make_sessionmaker(engine),
            session_lifetime=timedelta(days=settings.inbox_session_days),
            link_lifetime=timedelta(hours=settings.staff_link_hours),
        )
        try:
            if args.staff_command == "add":
                try:
                    invite = await accounts.add(args.name)
                except StaffError as exc:
                    print(exc, file=sys.stderr)
                    return 2
                base = settings.public_url.rstrip("/") or "<your service URL>"
                hours = f"{settings.staff_link_hours:g}"
                what = "added" if invite.created else "already has an account: new login link (the previous one no longer works)"
                print(
                    f"{invite.name} {what}.\n"
                    f"Send them this one-time sign-in link (good for {hours} hours, once):\n"
                    f"  {invite.link(base)}\n"
                    "or the token alone, to paste on the inbox's sign-in page:\n"
                    f"  {invite.token}"
                )
                if not settings.public_url:
                    print("(set PUBLIC_URL to get a complete link)", file=sys.stderr)
                return 0
            if args.staff_command == "list":
                people = await accounts.list()
                if not people:
                    print("no staff accounts yet: handoff staff add NAME")
                for p in people:
                    notes = [f"{p.sessions} signed-in session{'s' if p.sessions != 1 else ''}"]
                    if p.is_admin:
                        notes.append("admin (INBOX_TOKEN)")
                    if p.login_pending:
                        notes.append("login link not used yet")
                    print(f"{p.name}\t{', '.join(notes)}\tsince {p.created_at:%Y-%m-%d}")
                return 0
            removed = await accounts.remove(args.name)
            if removed:
                print(f"removed {removed}: their sessions have ended")
                return 0
            print(f"no staff account named {args.name!r}", file=sys.stderr)
            return 1
        finally:
            await engine.dispose()

    return asyncio.run(go())


def cmd_telegram(args: argparse.Namespace) -> int:
    from bridges.telegram.cli import run

    return run(args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="handoff", description="AI shopper support that hands hard chats to people."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument(
            "--config", help="store config YAML (default: HANDOFF_CONFIG or the flash-sale pack)"
        )
        return p

    p = with_config(sub.add_parser("run", help="run the service from env and config"))
    p.add_argument("--port", type=int)
    p.add_argument("--host")
    p.set_defaults(func=cmd_run)
    p = with_config(
        sub.add_parser(
            "demo", help="the sample store: SQLite, built-in agent, web inbox, sample shop API"
        )
    )
    p.add_argument("--port", type=int)
    p.add_argument("--host")
    p.add_argument("--shop-port", type=int)
    p.set_defaults(func=cmd_demo)
    sub.add_parser("migrate", help="upgrade the database to the latest schema").set_defaults(
        func=cmd_migrate
    )
    with_config(
        sub.add_parser("check", help="validate the config and print what is enabled")
    ).set_defaults(func=cmd_check)
    p = with_config(
        sub.add_parser(
            "eval",
            help="score the agent's handoff judgment on scenarios, or replay stored conversations",
        )
    )
    p.add_argument("scenarios", nargs="?", help="scenarios (JSON lines); not with --replay")
    p.add_argument("--knowledge", help="the store's pages (with --replay: the config's by default)")
    p.add_argument(
        "--replay",
        metavar="SINCE",
        help="replay the conversations started in this window (e.g. 24h, 7d) through the current "
        "YAML and examples and print those whose handoff or tags would change",
    )
    p.add_argument(
        "--examples",
        choices=["accepted", "pending", "none"],
        default="accepted",
        help="labelled examples from the database (DATABASE_URL) that train the classifier: "
        "accepted (as the next start would; the default), pending too (a dry run before "
        "accepting), none",
    )
    p.add_argument("--json", help="write the full report as JSON here")
    p.add_argument("--llm", action="store_true", help="evaluate the LLM agent (OPENAI_* settings)")
    p.add_argument("--quiet", action="store_true", help="no transcripts")
    p.set_defaults(func=cmd_eval)
    p = sub.add_parser(
        "examples",
        help="labelled examples from the team's corrections: list, accept ID..., reject ID...",
    )
    esub = p.add_subparsers(dest="examples_command", required=True)
    q = esub.add_parser("list", help="the examples, oldest first")
    q.add_argument(
        "--status",
        choices=["pending", "accepted", "rejected", "superseded", "all"],
        default="all",
    )
    q.add_argument("--json", action="store_true")
    q = with_config(esub.add_parser("accept", help="use these examples from the next start on"))
    q.add_argument("ids", type=int, nargs="+", metavar="ID")
    q.add_argument("--as", dest="as_intent", metavar="INTENT", help="accept as this intent instead")
    q.add_argument("--by", help="the reviewer's name (default: your login name)")
    q = esub.add_parser("reject", help="never use these examples")
    q.add_argument("ids", type=int, nargs="+", metavar="ID")
    q.add_argument("--by", help="the reviewer's name (default: your login name)")
    p.set_defaults(func=cmd_examples)
    p = sub.add_parser("stats", help="tag counts, handoff rate, reply and resolution times")
    p.add_argument("--since", default="24h", help="window, e.g. 30m, 24h, 7d (default 24h)")
    p.add_argument("--tag", help="only this tag")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_stats)
    p = sub.add_parser("staff", help="web inbox accounts: add NAME (prints a login link), list, remove NAME")
    ssub = p.add_subparsers(dest="staff_command", required=True)
    ssub.add_parser("add", help="add a person (or give them a new login link)").add_argument("name")
    ssub.add_parser("list", help="everyone, with their signed-in sessions")
    ssub.add_parser("remove", help="remove a person and end their sessions").add_argument("name")
    p.set_defaults(func=cmd_staff)
    p = sub.add_parser("telegram", help="Telegram helpers: set-webhook URL, delete-webhook, info")
    tsub = p.add_subparsers(dest="telegram_command", required=True)
    tsub.add_parser("set-webhook", help="register URL/telegram/webhook with the secret token").add_argument("url")
    tsub.add_parser("delete-webhook", help="remove the webhook (to use polling)")
    tsub.add_parser("info", help="which bot the token belongs to")
    p.set_defaults(func=cmd_telegram)
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
