"""Flash-sale load and fault benchmark (not part of the test suite).

Starts the service as a separate process (SQLite by default; PostgreSQL when DATABASE_URL says so,
with --instances 2 for two processes), a sample shop API, and (when the Slack bridge is installed)
a fake Slack Web API enforcing a per-channel posting rate with 429 + Retry-After. Then N shoppers
open WebSockets and chat in a realistic mix: questions the knowledge answers, order lookups, and a
share that hands off; people answer handed-off chats (signed Slack events into /slack/events, or
the web inbox API without Slack). In the same run, a bare aiohttp WebSocket echo server with the
same clients gives the baseline; the service's figures are reported as ratios of it.

    .venv/bin/python bench/flash_sale.py --shoppers 500 --messages 4
    .venv/bin/python bench/flash_sale.py --fault kill      # kill -9 mid-burst, restart
    .venv/bin/python bench/flash_sale.py --fault slack-500 # Slack answers 500 for 30 s
    .venv/bin/python bench/flash_sale.py --fault shop-timeout
    .venv/bin/python bench/flash_sale.py --fault flood     # oversized and malformed frames

Every run ends with exactly-once counts: each shopper message in its inbox thread once, each human
reply at the shopper once, each agent answer received once."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.shop_server import ShopData, free_port, start_shop  # noqa: E402
from bridges.widget.embedding import sign_email  # noqa: E402
from tests.slack.fake_slack import SIGNING_SECRET, TOKEN, FakeSlack, event_body, sign  # noqa: E402

INBOX = "C_BENCH_INBOX"
START_TIMEOUT = 90.0  # seconds for a service to answer /healthz (see Service.ready)
INBOX_TOKEN = secrets.token_urlsafe(32)  # the web inbox's bootstrap (admin) login

QUESTIONS = [
    "How long does delivery to Austria take?",
    "What payment methods do you accept?",
    "How long do I have to return shoes?",
    "When does the next drop start?",
    "My foot is 27.5 cm, which size should I take?",
]
HANDOFF = "Can I talk to a person please?"
ORDER_Q = "Where is my order {number}?"


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    data = sorted(values)
    k = (len(data) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (k - lo)


def cpu_seconds(pid: int) -> float:
    """The process's CPU time so far (user + system), from /proc: 0.0 where there is none."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


# --------------------------------------------------------------------------- baseline


async def echo_app() -> web.Application:
    async def ws(request: web.Request) -> web.WebSocketResponse:
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        async for msg in sock:
            if msg.type == aiohttp.WSMsgType.TEXT:
                data = json.loads(msg.data)
                await sock.send_json({"type": "message", "role": "shopper", "text": data["text"], "id": 0})
                await sock.send_json({"type": "message", "role": "agent", "text": data["text"], "id": 0})
        return sock

    app = web.Application()
    app.router.add_get("/ws", ws)
    return app


def run_echo_server(port: int) -> None:
    web.run_app(echo_app(), host="127.0.0.1", port=port, print=None, access_log=None)


# ---------------------------------------------------------------------------- service


@dataclass
class Service:
    port: int
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "run", "--port", str(self.port)],
            cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL,
            stderr=open(self.env.get("BENCH_LOG", os.devnull), "ab"),  # noqa: SIM115
        )

    async def ready(self, http: aiohttp.ClientSession) -> None:
        """Until /healthz answers. A start imports the service and trains its classifier: a few
        seconds, but on a loaded machine (the test suite's parallel workers beside other jobs on
        2 cores) it once took over 30 s, so it has START_TIMEOUT; a process that exited is
        reported at once, with its exit code, instead of being waited for."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"service exited with {self.proc.returncode} before it started")
            try:
                async with http.get(self.base + "/healthz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        raise RuntimeError(f"service did not start in {START_TIMEOUT:.0f} s")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@dataclass
class Shopper:
    cid: int
    token: str
    base: str
    sent: dict[str, float] = field(default_factory=dict)  # client_id -> send time
    latencies: list[float] = field(default_factory=list)
    agent_ids: list[int] = field(default_factory=list)
    human_ids: list[int] = field(default_factory=list)
    handed_off: bool = False
    handoff_at: float = 0.0
    errors: int = 0


@dataclass
class Results:
    label: str
    messages: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0


async def run_echo_clients(port: int, shoppers: int, messages: int) -> Results:
    res = Results("echo baseline")
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        socks = [await http.ws_connect(f"http://127.0.0.1:{port}/ws") for _ in range(shoppers)]

        async def one(ws: Any) -> None:
            for i in range(messages):
                t = time.perf_counter()
                await ws.send_json({"type": "message", "text": QUESTIONS[i % len(QUESTIONS)], "client_id": str(i)})
                while True:
                    frame = await ws.receive_json()
                    if frame.get("role") == "agent":
                        break
                res.latencies.append(time.perf_counter() - t)
                res.messages += 1

        t0 = time.perf_counter()
        await asyncio.gather(*[one(ws) for ws in socks])
        res.seconds = time.perf_counter() - t0
        for ws in socks:
            await ws.close()
    return res


async def shopper_session(http: aiohttp.ClientSession, sh: Shopper, plan: list[str], stop_at: float,
                          think: float = 0.0, rng: random.Random | None = None) -> None:
    """One shopper, behaving like the widget: sends each message after the previous reply, keeps a
    socket open, and when the service goes away reconnects, catches up with `after=` and resends
    with the same client_id (so a resend is never a second message).

    `think` > 0: a person reading and typing. The first message comes within `think` seconds of
    the sale opening, each next one an exponentially distributed pause (mean `think`) after the
    reply, so the service sees an open arrival stream instead of a closed loop."""
    url = f"{sh.base}/api/conversations/{sh.cid}"
    pending: dict[str, float] = {}
    seen: set[int] = set()
    replied = asyncio.Event()
    state: dict[str, Any] = {"ws": None, "last": 0}

    unconfirmed: dict[str, dict[str, Any]] = {}

    def take(frame: dict[str, Any]) -> None:
        if frame.get("role") == "shopper" and frame.get("client_id"):
            unconfirmed.pop(frame["client_id"], None)
        mid = frame.get("id") or 0
        if mid in seen:
            return
        seen.add(mid)
        state["last"] = max(state["last"], mid)
        if frame["role"] == "agent":
            sh.agent_ids.append(mid)
            if pending:
                cid, t = next(iter(pending.items()))
                sh.latencies.append(time.perf_counter() - t)
                pending.pop(cid)
            replied.set()
        elif frame["role"] == "human":
            sh.human_ids.append(mid)

    async def reader() -> None:
        backoff = 0.2
        while True:
            try:
                ws = await http.ws_connect(f"{url}/ws?token={sh.token}", heartbeat=30)
                state["ws"] = ws
                async with http.get(f"{url}/messages?token={sh.token}&after={state['last']}") as r:
                    for m in (await r.json())["messages"]:
                        take(m)
                for body in list(unconfirmed.values()):  # sent into a socket that died: again, same id
                    await ws.send_json(body)
                backoff = 0.2
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        frame = json.loads(msg.data)
                        if frame.get("type") == "message":
                            take(frame)
                        elif frame.get("type") == "state" and frame.get("state") == "queued" and not sh.handed_off:
                            sh.handed_off = True  # handed off by a rule (a failed lookup, say)
                            sh.handoff_at = time.monotonic()
            except (aiohttp.ClientError, OSError, ValueError):
                pass
            state["ws"] = None
            sh.reconnects = getattr(sh, "reconnects", 0) + 1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    async def send(text: str, client_id: str) -> bool:
        body = {"type": "message", "text": text, "client_id": client_id}
        unconfirmed[client_id] = body
        while time.perf_counter() < stop_at:
            ws = state["ws"]
            try:
                if ws is not None and not ws.closed:
                    await ws.send_json(body)
                    return True
                async with http.post(f"{url}/messages?token={sh.token}", json=body) as r:
                    if r.status == 200:
                        return True
            except (aiohttp.ClientError, OSError, ConnectionResetError):
                pass
            await asyncio.sleep(0.2)
        unconfirmed.pop(client_id, None)
        return False

    sh._reader = asyncio.create_task(reader())  # type: ignore[attr-defined]
    for _ in range(100):
        if state["ws"] is not None:
            break
        await asyncio.sleep(0.01)
    for i, text in enumerate(plan):
        client_id = f"{sh.cid}-{i}"
        wants_person = text == HANDOFF
        text = f"{text} [{client_id}]"  # a marker to find it, exactly once, in the Slack thread
        if think and rng is not None:
            pause = rng.uniform(0, think) if i == 0 else rng.expovariate(1 / think)
            await asyncio.sleep(min(pause, max(0.0, stop_at - time.perf_counter())))
        if time.perf_counter() >= stop_at:
            break
        replied.clear()
        # Kept here too: the reply can arrive (and clear `pending`) before `send` returns.
        sent_at = pending[client_id] = time.perf_counter()
        if not await send(text, client_id):
            break
        sh.sent[client_id] = sent_at
        if wants_person:
            sh.handed_off = True
            sh.handoff_at = time.monotonic()
        try:
            await asyncio.wait_for(replied.wait(), timeout=max(1.0, stop_at - time.perf_counter()))
        except TimeoutError:
            sh.errors += 1
            pending.clear()
        if sh.handed_off:
            break  # the agent is silent after a handoff; people take over


async def run_service(args: argparse.Namespace, http: aiohttp.ClientSession, services: list[Service],
                      shop: ShopData) -> Results:
    res = Results("handoff")
    rng = random.Random(args.seed)
    shoppers: list[Shopper] = []
    for i in range(args.shoppers):
        svc = services[i % len(services)]
        body = {"email": "ann@example.com", "user_hash": sign_email("bench", "ann@example.com"), "name": f"S{i}"}
        async with http.post(svc.base + "/api/conversations", json=body) as r:
            data = await r.json()
        shoppers.append(Shopper(data["conversation_id"], data["token"], svc.base))
    rss_before = sum(rss_kb(s.proc.pid) for s in services if s.proc)

    plans = []
    for _ in shoppers:
        plan = [rng.choice(QUESTIONS) if rng.random() > 0.25 else ORDER_Q.format(number="FP-100234") for _ in range(args.messages)]
        if rng.random() < args.handoff_share:
            plan[rng.randrange(len(plan))] = HANDOFF
        plans.append(plan)

    cpu_before = sum(cpu_seconds(s.proc.pid) for s in services if s.proc)
    t0 = time.perf_counter()
    stop_at = t0 + args.timeout
    sessions = [asyncio.create_task(shopper_session(http, sh, plan, stop_at, args.think, random.Random(args.seed * 100_003 + n)))
                for n, (sh, plan) in enumerate(zip(shoppers, plans, strict=True))]
    if args.fault == "kill":
        await asyncio.sleep(args.kill_after)
        services[0].kill()
        services[0].start()
        await services[0].ready(http)
    elif args.fault == "flood":
        asyncio.create_task(flood(http, shoppers[: min(20, len(shoppers))]))
    await asyncio.gather(*sessions, return_exceptions=True)
    res.seconds = time.perf_counter() - t0
    res.extra["service_cpu"] = sum(cpu_seconds(s.proc.pid) for s in services if s.proc) - cpu_before
    rss_after = sum(rss_kb(s.proc.pid) for s in services if s.proc)
    res.extra["rss_per_conversation_kb"] = (rss_after - rss_before) / max(1, len(shoppers))
    res.extra["rss_total_mb"] = rss_after / 1024
    for sh in shoppers:
        res.latencies.extend(sh.latencies)
    res.messages = sum(len(sh.latencies) for sh in shoppers)
    res.extra["shoppers"] = shoppers
    return res


async def flood(http: aiohttp.ClientSession, shoppers: list[Shopper]) -> None:
    """Bad clients: oversized and malformed frames on real conversations."""
    for sh in shoppers:
        try:
            ws = await http.ws_connect(f"{sh.base}/api/conversations/{sh.cid}/ws?token={sh.token}")
            await ws.send_str("{not json")
            await ws.send_json({"type": "message", "text": "x" * 5000, "client_id": "big"})
            await ws.send_json({"type": "bogus"})
            try:
                await ws.send_str("y" * 200_000)  # over the frame limit: the server closes this socket
            except Exception:
                pass
            await ws.close()
        except Exception:
            pass


async def answer_handoffs(http: aiohttp.ClientSession, services: list[Service], shoppers: list[Shopper],
                          slack: FakeSlack | None, timeout: float) -> dict[str, Any]:
    """People answer every handed-off chat once: in its Slack thread (a signed event), or through
    the web inbox API when Slack is off. Also measures handoff -> thread parent latency."""
    async with http.post(f"{services[0].base}/inbox/api/login", json={"token": INBOX_TOKEN}) as r:
        auth = {"Cookie": f"handoff_inbox={r.cookies['handoff_inbox'].value}"}  # signed in as admin
    answered, latencies = 0, []
    deadline = time.monotonic() + timeout
    for sh in shoppers:
        if not sh.handed_off:
            continue
        ref = None
        while time.monotonic() < deadline:
            async with http.get(f"{services[0].base}/inbox/api/conversations/{sh.cid}", headers=auth) as r:
                data = await r.json()
            ref = data["conversation"].get("inbox_ref")
            if data["conversation"]["state"] in ("queued", "claimed") and (slack is None or ref):
                break
            await asyncio.sleep(0.2)
        text = f"Hi, this is Maria about #{sh.cid}"
        if slack is not None and ref:
            parent = next((c for c in slack.calls if c.method == "chat.postMessage" and c.status == 200
                           and not c.args.get("thread_ts") and f"#{sh.cid} " in str(c.args.get("text", ""))), None)
            if parent is not None:
                latencies.append(parent.at - sh.handoff_at)
            event = {"type": "message", "channel": ref["channel"], "user": "U1", "text": text,
                     "ts": f"{1900000000 + sh.cid}.000001", "thread_ts": ref["ts"]}
            body = event_body(event, f"Ev{sh.cid}")
            async with http.post(f"{services[-1].base}/slack/events", data=body,
                                 headers={"Content-Type": "application/json", **sign(body)}) as r:
                answered += r.status == 200
        else:
            async with http.post(f"{services[0].base}/inbox/api/conversations/{sh.cid}/reply", headers=auth,
                                 json={"text": text}) as r:
                answered += r.status == 200
    return {"answered": answered, "handoff_to_thread": latencies}


async def exactly_once(http: aiohttp.ClientSession, services: list[Service], shoppers: list[Shopper]) -> dict[str, int]:
    """From the database (via the API): each sent message stored once and answered once."""
    counts = {"shopper_messages": 0, "missing": 0, "duplicated": 0, "unanswered": 0, "human_replies_seen": 0, "human_dupes": 0}
    for sh in shoppers:
        async with http.get(f"{services[0].base}/api/conversations/{sh.cid}/messages?token={sh.token}") as r:
            msgs = (await r.json())["messages"]
        texts = [m for m in msgs if m["role"] == "shopper"]
        counts["shopper_messages"] += len(texts)
        expected = len(sh.sent)
        if len(texts) < expected:
            counts["missing"] += expected - len(texts)
        if len(texts) > expected:
            counts["duplicated"] += len(texts) - expected
        answers = sum(1 for m in msgs if m["role"] == "agent")
        if not sh.handed_off and answers < len(texts):
            counts["unanswered"] += len(texts) - answers
        humans = [m["id"] for m in msgs if m["role"] == "human"]
        seen = [i for i in sh.human_ids if i in humans]  # ids the shopper's socket delivered
        counts["human_replies_seen"] += len(set(seen))
        counts["human_dupes"] += len(seen) - len(set(seen))
    return counts


async def main_async(args: argparse.Namespace) -> int:
    shop = ShopData()
    shop.load(json.loads((ROOT / "examples/flash-sale/shop.json").read_text()))
    if args.fault == "shop-timeout":
        shop.delay = 10.0
    runner, shop_url = await start_shop(shop)
    tmp = tempfile.mkdtemp(prefix="handoff-bench-")
    db = os.environ.get("DATABASE_URL") or f"sqlite+aiosqlite:///{tmp}/bench.db"
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update(DATABASE_URL=db, INBOX_TOKEN=INBOX_TOKEN, SHOP_API_URL=shop_url, LOG_LEVEL="ERROR",
               DELIVERY_POLL_SECONDS="0.05", DELIVERY_LEASE_SECONDS="10", PROCESSING_LEASE_SECONDS="10",
               # Every simulated shopper comes from 127.0.0.1: per-address limits would stop the load.
               WIDGET_CREATE_LIMIT="0/minute", WIDGET_MESSAGE_LIMIT="0/minute", WIDGET_IDENTITY_SECRET="bench")
    slack = None
    if not args.no_slack:
        slack = await FakeSlack(min_interval=1.0 / args.slack_rate, retry_after=1).start()
        env.update(SLACK_BOT_TOKEN=TOKEN, SLACK_SIGNING_SECRET=SIGNING_SECRET, SLACK_INBOX_CHANNEL=INBOX,
                   SLACK_API_URL=slack.url, SLACK_POST_RATE=str(args.slack_rate * args.slack_pace))
    if db.startswith("postgresql"):
        subprocess.run([sys.executable, "-m", "bot.cli", "migrate"], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    services = [Service(free_port(), env) for _ in range(args.instances)]
    for s in services:
        s.start()

    echo_port = free_port()
    echo = subprocess.Popen([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r}); "
                             f"from bench.flash_sale import run_echo_server; run_echo_server({echo_port})"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:
            for s in services:
                await s.ready(http)
            echo_deadline = time.monotonic() + START_TIMEOUT  # a loaded machine: see ready()
            while time.monotonic() < echo_deadline:
                try:
                    async with http.get(f"http://127.0.0.1:{echo_port}/ws"):
                        break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
            base = await run_echo_clients(echo_port, args.shoppers, args.messages)
            svc = await run_service(args, http, services, shop)
            shoppers = svc.extra.pop("shoppers")
            if args.fault == "slack-500" and slack is not None:
                slack.fail_status = 500
                await asyncio.sleep(args.outage)
                slack.fail_status = None
            handled = await answer_handoffs(http, services, shoppers, slack, args.timeout * 3)
            answered = handled["answered"]
            await drain(http, services, args.timeout * 3)
            await asyncio.sleep(1.0)
            for sh in shoppers:
                task = getattr(sh, "_reader", None)
                if task is not None:
                    task.cancel()
            counts = await exactly_once(http, services, shoppers)
            slack_counts = thread_counts(slack, shoppers) if slack is not None else {}
    finally:
        for s in services:
            s.stop()
        echo.terminate()
        await runner.cleanup()
        if slack is not None:
            await slack.close()

    print(f"\nflash-sale benchmark: {args.shoppers} shoppers x {args.messages} messages, "
          f"{args.instances} instance(s), db={db.split(':')[0]}, fault={args.fault or 'none'}"
          + (f", think {args.think:g} s (an open stream: messages/s is the offered load, not capacity)" if args.think else ""))
    print(f"{'':24}{'handoff':>12}{'echo':>12}{'ratio':>10}")
    print(f"{'messages/s':24}{svc.rate:12.1f}{base.rate:12.1f}{svc.rate / base.rate if base.rate else 0:10.2f}")
    for q in (50, 95, 99):
        a, b = pct(svc.latencies, q) * 1000, pct(base.latencies, q) * 1000
        print(f"{'latency p' + str(q) + ' (ms)':24}{a:12.1f}{b:12.1f}{a / b if b else 0:10.1f}")
    if svc.messages and args.fault != "kill":  # a restarted process's CPU is not comparable
        print(f"{'service CPU/message':24}{svc.extra['service_cpu'] / svc.messages * 1000:10.2f}ms"
              f"  ({svc.extra['service_cpu']:.2f} s over the {svc.seconds:.2f} s measured)")
    print(f"{'memory/conversation':24}{svc.extra['rss_per_conversation_kb']:10.1f}kB")
    print(f"{'service RSS':24}{svc.extra['rss_total_mb']:10.1f}MB")
    print(f"handoffs answered by people: {answered}")
    lat = handled["handoff_to_thread"]
    if lat:
        print(f"handoff -> thread parent   p50 {pct(lat, 50):.2f} s, p95 {pct(lat, 95):.2f} s, max {max(lat):.2f} s")
    if slack_counts:
        print("slack: " + ", ".join(f"{k}={v}" for k, v in slack_counts.items() if k not in ("missing", "dupes")))
        counts["thread_missing"] = slack_counts["missing"]
        counts["thread_dupes"] = slack_counts["dupes"]
    print("exactly-once: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    ok = counts["missing"] == 0 and counts["duplicated"] == 0 and counts["human_dupes"] == 0
    ok = ok and counts.get("thread_missing", 0) == 0 and counts.get("thread_dupes", 0) == 0
    ok = ok and counts["human_replies_seen"] == answered
    if args.fault != "shop-timeout":
        ok = ok and counts["unanswered"] == 0
    print("RESULT:", "ok" if ok else "FAILED")
    return 0 if ok else 1


async def drain(http: aiohttp.ClientSession, services: list[Service], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async with http.get(services[0].base + "/healthz") as r:
            if (await r.json())["outbox_pending"] == 0:
                return
        await asyncio.sleep(0.5)


def thread_counts(slack: FakeSlack, shoppers: list[Shopper]) -> dict[str, Any]:
    """Each handed-off shopper's messages in its Slack thread exactly once; Slack call figures."""
    posts = [c for c in slack.calls if c.method == "chat.postMessage"]
    ok = [c for c in posts if c.status == 200]
    limited = [c for c in posts if c.status == 429]
    missing = dupes = 0
    by_text: dict[str, int] = {}
    for c in ok:  # a thread: its parent (the conversation so far) and its replies
        blob = json.dumps(c.args.get("blocks") or c.args.get("text"))
        for sh in shoppers:
            if sh.handed_off:
                for cid in sh.sent:
                    marker = f"[{cid}]"
                    if marker in blob:
                        by_text[marker] = by_text.get(marker, 0) + blob.count(marker)
    parents: dict[str, int] = {}
    for c in ok:
        if not c.args.get("thread_ts"):
            head = str(c.args.get("text", "")).split(" ", 1)[0]  # "#<conversation id>"
            parents[head] = parents.get(head, 0) + 1
    for sh in shoppers:
        if sh.handed_off:
            for cid in sh.sent:
                n = by_text.get(f"[{cid}]", 0)
                missing += n == 0
                dupes += max(0, n - 1)
            dupes += max(0, parents.get(f"#{sh.cid}", 0) - 1)  # one ticket per handoff
    span = (ok[-1].at - ok[0].at) if len(ok) > 1 else 0.0
    return {
        "posts": len(ok), "429s": len(limited),
        "429_share": f"{len(limited) / max(1, len(posts)):.1%}",
        "post_rate_per_s": f"{(len(ok) - 1) / span:.2f}" if span else "n/a",
        "updates": len([c for c in slack.calls if c.method == "chat.update" and c.status == 200]),
        "missing": missing, "dupes": dupes,
    }


def raise_fd_limit() -> None:
    """Hundreds of sockets on each side: lift the soft limit on open files (children inherit it)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(argv: list[str] | None = None) -> int:
    raise_fd_limit()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shoppers", type=int, default=500)
    p.add_argument("--messages", type=int, default=4, help="messages per shopper")
    p.add_argument("--handoff-share", type=float, default=0.2)
    p.add_argument("--instances", type=int, default=1)
    p.add_argument("--fault", choices=["kill", "slack-500", "shop-timeout", "flood"])
    p.add_argument("--kill-after", type=float, default=1.0)
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--think", type=float, default=0.0,
                   help="mean seconds a shopper reads and types between messages (0: closed loop, the saturation test)")
    p.add_argument("--no-slack", action="store_true", help="people answer from the web inbox instead")
    p.add_argument("--slack-rate", type=float, default=1.0, help="posts per second Slack allows per channel")
    p.add_argument("--slack-pace", type=float, default=0.97, help="our posting pace as a share of Slack's limit")
    p.add_argument("--outage", type=float, default=30.0, help="seconds of Slack 500s with --fault slack-500")
    args = p.parse_args(argv)
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    raise SystemExit(main())
