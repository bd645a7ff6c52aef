"""Spike alerts per tag: is the current window's count unusual against the tag's own recent past?

The test is the exact conditional test for two Poisson rates (Przyborowski & Wilenski 1940): with
x events now (exposure 1 window) and y in the baseline (exposure n windows), under "same rate"
x given x + y is Binomial(x + y, 1 / (n + 1)). Its tail probability is exact for small counts,
needs no normal approximation, and handles a baseline of zero. A minimum count, a minimum ratio to
the usual rate and a cool-down keep it from paging people about two cancellations or twice in a row.
Slow growth raises the baseline with it, so it is not a spike."""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.periodic import Periodic
from storage.models import AlertLog, TagEvent, utcnow

log = logging.getLogger("handoff.spikes")


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), summed in log space (exact, stable for small n)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    total = 0.0
    for i in range(k, n + 1):
        log_pmf = (
            math.lgamma(n + 1)
            - math.lgamma(i + 1)
            - math.lgamma(n - i + 1)
            + i * math.log(p)
            + (n - i) * math.log1p(-p)
        )
        total += math.exp(log_pmf)
    return min(1.0, total)


@dataclass(frozen=True)
class SpikeConfig:
    window: timedelta = timedelta(minutes=30)
    baseline_windows: int = 48
    min_count: int = 5
    min_ratio: float = 2.0
    alpha: float = 0.001
    cooldown: timedelta = timedelta(hours=2)


@dataclass(frozen=True)
class Spike:
    tag: str
    count: int
    usual: float  # mean per window over the baseline
    p_value: float
    sale: str | None
    conversations: tuple[int, ...]

    def text(self, inbox_url: str = "") -> str:
        usual = f"{self.usual:.1f}"
        links = ", ".join(
            f"<{inbox_url}?c={c}|#{c}>" if inbox_url else f"#{c}" for c in self.conversations
        )
        sale = f" during {self.sale}" if self.sale else ""
        return (
            f":rotating_light: Spike in `{self.tag}`{sale}: {self.count} in the last window, "
            f"usually {usual} (p = {self.p_value:.2g}). Examples: {links}"
        )


def detect(count: int, baseline_total: int, cfg: SpikeConfig) -> tuple[bool, float]:
    n = cfg.baseline_windows
    usual = baseline_total / n
    p = binomial_tail(count, count + baseline_total, 1.0 / (n + 1))
    ratio_ok = count >= cfg.min_ratio * max(usual, 1.0 / n)
    return (count >= cfg.min_count and ratio_ok and p < cfg.alpha), p


async def find_spikes(
    session: AsyncSession, cfg: SpikeConfig, now: datetime | None = None
) -> list[Spike]:
    now = now or utcnow()
    start = now - cfg.window
    base_start = start - cfg.window * cfg.baseline_windows
    rows = (
        await session.execute(
            select(TagEvent.tag, TagEvent.at, TagEvent.sale, TagEvent.conversation_id).where(
                TagEvent.action == "add", TagEvent.at >= base_start, TagEvent.at < now
            )
        )
    ).all()
    current: Counter[str] = Counter()
    baseline: Counter[str] = Counter()
    sales: dict[str, Counter[str]] = {}
    samples: dict[str, list[int]] = {}
    for tag, at, sale, cid in rows:
        if at >= start:
            current[tag] += 1
            if sale:
                sales.setdefault(tag, Counter())[sale] += 1
            samples.setdefault(tag, [])
            if cid not in samples[tag]:
                samples[tag].append(cid)
        else:
            baseline[tag] += 1
    out = []
    for tag, count in current.items():
        hit, p = detect(count, baseline[tag], cfg)
        if hit:
            sale = sales[tag].most_common(1)[0][0] if tag in sales else None
            out.append(
                Spike(
                    tag,
                    count,
                    baseline[tag] / cfg.baseline_windows,
                    p,
                    sale,
                    tuple(samples[tag][-3:]),
                )
            )
    return out


class SpikeMonitor:
    """Checks every `interval` seconds; an alert goes through the outbox like everything else."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        raise_alert: object,
        cfg: SpikeConfig,
        interval: float = 60.0,
        inbox_url: str = "",
    ) -> None:
        self.sessions = sessions
        self.raise_alert = raise_alert
        self.cfg = cfg
        self.interval = interval
        self.inbox_url = inbox_url

    async def check(self, now: datetime | None = None) -> list[Spike]:
        now = now or utcnow()
        raised: list[tuple[Spike, str]] = []
        async with self.sessions() as s, s.begin():
            for spike in await find_spikes(s, self.cfg, now):
                key = f"spike:{spike.tag}"
                last = await s.scalar(
                    select(AlertLog.at)
                    .where(AlertLog.key == key)
                    .order_by(AlertLog.at.desc())
                    .limit(1)
                )
                if last is not None and now - last < self.cfg.cooldown:
                    continue
                text = spike.text(self.inbox_url)
                s.add(AlertLog(key=key, text=text, at=now))
                raised.append((spike, text))
        for _, text in raised:
            await self.raise_alert(text)  # type: ignore[operator]
        return [spike for spike, _ in raised]

    def start(self) -> None:
        self._runner = Periodic(self.check, self.interval, "spike check")
        self._runner.start()

    async def stop(self) -> None:
        if getattr(self, "_runner", None) is not None:
            await self._runner.stop()
