"""Tag analytics and spike alerts on known, synthetic event streams."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.cli import main
from core.analytics import compute_stats, parse_duration, percentile, render_table, tag_series
from core.spikes import SpikeConfig, SpikeMonitor, binomial_tail, detect, find_spikes
from storage.db import make_engine, make_sessionmaker
from storage.migrate import upgrade_async
from storage.models import Conversation, Customer, Message, Rating, StateEvent, TagEvent
from tests.conftest import INBOX_TOKEN, eventually, inbox_login, services, signed

NOW = datetime(2026, 11, 27, 18, 0, tzinfo=UTC)
CFG = SpikeConfig(
    window=timedelta(minutes=30),
    baseline_windows=48,
    min_count=5,
    min_ratio=2.0,
    alpha=0.001,
    cooldown=timedelta(hours=2),
)


@pytest.fixture
async def db(tmp_path: Path) -> Any:
    url = f"sqlite+aiosqlite:///{tmp_path}/a.db"
    await upgrade_async(url)
    engine = make_engine(url)
    yield make_sessionmaker(engine)
    await engine.dispose()


async def _conv(s: Any, created: datetime, handed: datetime | None = None) -> Conversation:
    cust = Customer(channel="widget", external_id=f"c{random.random()}")
    s.add(cust)
    await s.flush()
    conv = Conversation(
        channel="widget",
        customer_id=cust.id,
        created_at=created,
        handed_off_at=handed,
        context={},
        memory={},
    )
    s.add(conv)
    await s.flush()
    return conv


async def _tags(s: Any, tag: str, times: list[datetime], sale: str | None = None) -> None:
    for t in times:
        conv = await _conv(s, t, t)
        s.add(
            TagEvent(conversation_id=conv.id, tag=tag, action="add", actor="agent", sale=sale, at=t)
        )


def test_poisson_rate_test_is_exact_on_known_values() -> None:
    # Binomial(10, 0.5): P(X >= 8) = (45 + 10 + 1) / 1024
    assert binomial_tail(8, 10, 0.5) == pytest.approx(56 / 1024)
    assert binomial_tail(0, 5, 0.3) == 1.0 and binomial_tail(6, 5, 0.3) == 0.0
    assert percentile([1, 2, 3, 4], 50) == 2.5 and percentile([], 50) is None
    assert parse_duration("24h") == timedelta(hours=24) and parse_duration("30m") == timedelta(
        minutes=30
    )
    with pytest.raises(ValueError):
        parse_duration("soon")


def test_detector_decisions() -> None:
    assert detect(12, 24, CFG)[0]  # usually 0.5 per window, now 12
    assert not detect(4, 0, CFG)[0]  # below the minimum count, even from nothing
    assert not detect(6, 240, CFG)[0]  # usually 5 per window: 6 is ordinary
    assert not detect(9, 300, CFG)[0]  # usually 6.25: 9 is noise, not a spike
    assert detect(30, 300, CFG)[0]


async def test_spike_found_and_steady_or_growing_traffic_not_alerted(db: Any) -> None:
    rng = random.Random(7)
    window = CFG.window
    async with db() as s, s.begin():
        base_start = NOW - window * (CFG.baseline_windows + 1)
        # steady: ~3 per window everywhere, including now
        await _tags(
            s,
            "out-of-stock",
            [
                base_start + timedelta(seconds=rng.uniform(0, (NOW - base_start).total_seconds()))
                for _ in range(147)
            ],
        )
        # slow growth: from 1 to 4 per window over the day
        growth = []
        for w in range(CFG.baseline_windows + 1):
            for _ in range(1 + (3 * w) // CFG.baseline_windows):
                growth.append(base_start + window * w + timedelta(seconds=rng.uniform(0, 1799)))
        await _tags(s, "price-override", growth)
        # spike: ~0.3 per window, then 15 in the last half hour, during a sale
        await _tags(
            s,
            "flash-cancellation",
            [base_start + timedelta(seconds=rng.uniform(0, 86000)) for _ in range(14)],
        )
        await _tags(
            s,
            "flash-cancellation",
            [NOW - timedelta(minutes=rng.uniform(0.5, 29)) for _ in range(15)],
            sale="friday-drop-48",
        )
    async with db() as s:
        spikes = await find_spikes(s, CFG, NOW)
    assert [sp.tag for sp in spikes] == ["flash-cancellation"]
    assert (
        spikes[0].count == 15
        and spikes[0].sale == "friday-drop-48"
        and len(spikes[0].conversations) == 3
    )
    assert "flash-cancellation" in spikes[0].text() and "friday-drop-48" in spikes[0].text()

    alerts: list[str] = []

    async def raise_alert(text: str) -> None:
        alerts.append(text)

    monitor = SpikeMonitor(db, raise_alert, CFG, inbox_url="https://support.example.com/inbox")
    assert [sp.tag for sp in await monitor.check(NOW)] == ["flash-cancellation"]
    assert await monitor.check(NOW + timedelta(minutes=10)) == []  # cool-down
    assert len(alerts) == 1 and "https://support.example.com/inbox?c=" in alerts[0]


async def test_stats_on_known_data(db: Any) -> None:
    t0 = NOW - timedelta(hours=3)
    async with db() as s, s.begin():
        for i, (reply_after, resolve_after) in enumerate([(60, 600), (120, 1200), (300, None)]):
            conv = await _conv(s, t0, t0)
            s.add(
                TagEvent(
                    conversation_id=conv.id,
                    tag="payment-failure" if i < 2 else "vip",
                    action="add",
                    actor="agent",
                    sale="friday-drop-48" if i == 0 else None,
                    at=t0,
                )
            )
            s.add(
                Message(
                    conversation_id=conv.id,
                    role="human",
                    text="hi",
                    created_at=t0 + timedelta(seconds=reply_after),
                    meta={},
                )
            )
            if resolve_after:
                s.add(
                    StateEvent(
                        conversation_id=conv.id,
                        kind="state",
                        old="claimed",
                        new="resolved",
                        actor="a",
                        at=t0 + timedelta(seconds=resolve_after),
                    )
                )
                s.add(
                    Rating(
                        conversation_id=conv.id,
                        score=1 if i == 0 else -1,
                        channel="widget",
                        at=t0 + timedelta(hours=1),
                    )
                )
        for _ in range(3):  # the AI handled these alone
            conv = await _conv(s, t0)
            s.add(
                Message(
                    conversation_id=conv.id, role="agent", text="answer", created_at=t0, meta={}
                )
            )
        old = await _conv(s, NOW - timedelta(days=3), NOW - timedelta(days=3))  # outside the window
        s.add(
            TagEvent(
                conversation_id=old.id,
                tag="vip",
                action="add",
                actor="agent",
                at=NOW - timedelta(days=3),
            )
        )
    async with db() as s:
        st = await compute_stats(s, NOW - timedelta(hours=24), NOW)
        series = await tag_series(s, NOW - timedelta(hours=24), NOW, timedelta(hours=1))
    assert st.conversations == 6 and st.handed_off == 3
    assert st.handoff_rate == 0.5 and st.ai_resolved_share == 0.5
    assert st.tags == {"payment-failure": 2, "vip": 1}
    assert st.tags_by_sale == {
        "friday-drop-48": {"payment-failure": 1},
        "(no sale)": {"payment-failure": 1, "vip": 1},
    }
    assert st.first_reply_p50 == 120 and st.first_reply_p90 == pytest.approx(264)
    assert st.resolution_p50 == 900
    assert (st.csat_up, st.csat_down) == (1, 1)
    assert (
        series["series"]["payment-failure"][21] == 2
        and sum(series["series"]["payment-failure"]) == 2
    )
    table = render_table(st)
    assert "payment-failure" in table and "friday-drop-48" in table


async def test_stats_cli_table_and_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/cli.db"
    await upgrade_async(url)
    engine = make_engine(url)
    async with make_sessionmaker(engine)() as s, s.begin():
        now = datetime.now(UTC)
        await _tags(s, "out-of-stock", [now - timedelta(minutes=5)] * 2)
    await engine.dispose()
    monkeypatch.setenv("DATABASE_URL", url)
    import asyncio

    await asyncio.to_thread(main, ["stats", "--since", "1h"])
    assert "out-of-stock" in capsys.readouterr().out
    await asyncio.to_thread(main, ["stats", "--since", "1h", "--json", "--tag", "out-of-stock"])
    data = json.loads(capsys.readouterr().out)
    assert data["tags"] == {"out-of-stock": 2}


async def test_metrics_endpoint_and_alert_reaches_inbox(make_client: Any) -> None:
    client = await make_client(metrics_token="scrape-secret")
    resp = await client.post("/api/conversations", json=signed("ann@example.com"))
    data = await resp.json()
    await client.post(
        f"/api/conversations/{data['conversation_id']}/messages?token={data['token']}",
        json={"text": "I want to talk to a person", "client_id": "1"},
    )
    svc = services(client)
    await svc.core.idle()
    await svc.worker.drain()
    body = await (
        await client.get("/metrics", headers={"Authorization": "Bearer scrape-secret"})
    ).text()
    assert 'handoff_messages_in_total{channel="widget",role="shopper"} 1.0' in body
    assert 'handoff_handoffs_total{tag="human-requested"} 1.0' in body
    assert 'handoff_conversations{state="queued"} 1.0' in body
    assert "handoff_agent_latency_seconds_count 1.0" in body
    # A spike alert goes through the outbox to the inbox (the web inbox here).
    await svc.core.enqueue_alert("Spike in `vip`")
    await eventually(lambda: _has_alert(svc))
    staff = await inbox_login(client)
    stats = await (await client.get("/inbox/api/stats?since=1h&bucket=10m", headers=staff)).json()
    assert stats["stats"]["tags"] == {"human-requested": 1}
    assert (await client.get("/inbox/api/stats?since=1h&bucket=1s", headers=staff)).status == 400


async def _has_alert(svc: Any) -> bool:
    return "Spike in `vip`" in svc.bridges["web"].alerts


async def test_metrics_need_their_token_outside_demo_mode(make_client: Any) -> None:
    closed = await make_client()
    resp = await closed.get("/metrics")
    assert resp.status == 403 and "METRICS_TOKEN" in await resp.text()
    guarded = await make_client(metrics_token="scrape-secret")
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {INBOX_TOKEN}"}):
        assert (await guarded.get("/metrics", headers=headers)).status == 401
    ok = await guarded.get("/metrics", headers={"Authorization": "Bearer scrape-secret"})
    assert ok.status == 200 and "handoff_messages_in_total" in await ok.text()
