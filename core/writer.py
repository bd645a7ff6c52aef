"""One writer in front of the database: group commit.

Every write on the hot path (a shopper's message taken in, an agent's turn stored) is a job on one
asyncio queue. The writer takes whatever is waiting (up to `max_batch` jobs, or what arrives within
`linger` seconds of the first) and writes it in one transaction: jobs of one bulk operation
together (one multi-row statement for all of them), the rest one after another. Live events are
published by the session's after-commit hooks, so nothing is announced before it is durable, and a
job's caller hears its result only once its transaction has committed.

Guarantees, as the jobs' callers rely on them:
- Order: jobs are written in the order they were submitted, within an operation; a caller that
  waits for its job before submitting the next (the core's one-turn-at-a-time per conversation)
  keeps its order across batches.
- Nothing lost: if a batch's transaction fails, every job in it is tried again alone, in its own
  transaction, so one bad job fails only its own caller and the others commit. Jobs must be safe to
  run again after a rollback (the core's are: an insert keyed on the platform id, a turn keyed on
  the message being still unanswered).
- A job may answer its caller with an error of its own (an unknown conversation) without failing
  the batch: an operation returns an exception instance as that job's result.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

log = logging.getLogger("handoff.writer")
T = TypeVar("T")
P = TypeVar("P")

# A bulk operation: writes all its jobs' payloads in the batch's session, one result (or an
# exception instance, for that job alone) per payload, in order.
BulkRun = Callable[[AsyncSession, list[Any]], Awaitable[Sequence[Any]]]


@dataclass(eq=False)
class BulkOp(Generic[P]):
    name: str
    run: BulkRun


@dataclass(eq=False)
class _Job:
    op: BulkOp[Any] | None  # None: a single job (`fn`)
    payload: Any
    fn: Callable[[AsyncSession], Awaitable[Any]] | None
    future: asyncio.Future[Any]


@dataclass
class WriterStats:
    batches: int = 0
    jobs: int = 0
    retried_alone: int = 0
    largest: int = 0


class Writer:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        max_batch: int = 256,
        linger: float = 0.001,
    ) -> None:
        self.sessions = sessions
        self.max_batch = max_batch
        self.linger = linger
        self.stats = WriterStats()
        self._queue: asyncio.Queue[_Job] | None = None
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ submit

    async def run(self, fn: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """Run `fn` in the next batch's transaction; its result once that has committed."""
        return await self._submit(_Job(None, None, fn, self._future()))  # type: ignore[no-any-return]

    async def bulk(self, op: BulkOp[P], payload: P) -> Any:
        """`payload` written by `op` together with the other jobs of the batch for `op`."""
        return await self._submit(_Job(op, payload, None, self._future()))

    @staticmethod
    def _future() -> asyncio.Future[Any]:
        return asyncio.get_running_loop().create_future()

    async def _submit(self, job: _Job) -> Any:
        if self._queue is None:
            self._queue = asyncio.Queue()
        self._queue.put_nowait(job)
        if self._task is None or self._task.done():
            # The writer runs while there is work and ends when the queue is empty, so no task is
            # left behind in a loop that is closing (tests run one loop each).
            self._task = asyncio.create_task(self._loop())
        return await job.future

    async def close(self) -> None:
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # ------------------------------------------------------------------ write

    async def _loop(self) -> None:
        queue = self._queue
        assert queue is not None
        while not queue.empty():
            batch = [queue.get_nowait()]
            # What is ready now, then what arrives within `linger`, up to max_batch.
            await asyncio.sleep(0)
            self._take(queue, batch)
            if self.linger > 0 and len(batch) < self.max_batch:
                await asyncio.sleep(self.linger)
                self._take(queue, batch)
            try:
                await self._write(batch)
            except asyncio.CancelledError:
                for job in batch:
                    if not job.future.done():
                        job.future.cancel()
                raise

    def _take(self, queue: asyncio.Queue[_Job], batch: list[_Job]) -> None:
        while len(batch) < self.max_batch and not queue.empty():
            batch.append(queue.get_nowait())

    async def _write(self, batch: list[_Job]) -> None:
        self.stats.batches += 1
        self.stats.jobs += len(batch)
        self.stats.largest = max(self.stats.largest, len(batch))
        try:
            results = await self._transaction(batch)
        except Exception as exc:
            if len(batch) == 1:
                self._answer(batch[0], exc)
                return
            log.warning("a batch of %d writes failed; writing each alone", len(batch), exc_info=True)
            self.stats.retried_alone += len(batch)
            for job in batch:
                await self._alone(job)
            return
        for job, result in zip(batch, results, strict=True):
            self._answer(job, result)

    async def _alone(self, job: _Job) -> None:
        try:
            (result,) = await self._transaction([job])
        except Exception as exc:
            result = exc
        self._answer(job, result)

    @staticmethod
    def _answer(job: _Job, result: Any) -> None:
        if job.future.done():  # the caller went away (cancelled)
            return
        if isinstance(result, BaseException):
            job.future.set_exception(result)
        else:
            job.future.set_result(result)

    async def _transaction(self, batch: list[_Job]) -> list[Any]:
        """Every job of `batch` in one transaction; results in the batch's order."""
        results: list[Any] = [None] * len(batch)
        groups: dict[BulkOp[Any], list[int]] = {}
        singles: list[int] = []
        for i, job in enumerate(batch):
            if job.op is None:
                singles.append(i)
            else:
                groups.setdefault(job.op, []).append(i)
        async with self.sessions() as s, s.begin():
            for op, idx in groups.items():
                out = await op.run(s, [batch[i].payload for i in idx])
                for i, r in zip(idx, out, strict=True):
                    results[i] = r
            for i in singles:
                fn = batch[i].fn
                assert fn is not None
                results[i] = await fn(s)
        return results
