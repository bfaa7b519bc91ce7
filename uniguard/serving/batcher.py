"""Server-side micro-batching: pairs from concurrent requests are scored together by one worker.

Each batch takes what queued while the previous one ran (at most `max_batch` pairs), optionally
waiting up to `max_wait_ms` for more, so many small requests cost a few batched forward passes
instead of one each, and a lone request waits for nothing. The forward pass runs in a single worker
thread, which keeps the event loop free and the model single-threaded from Python's side.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import time
from dataclasses import dataclass, field

import numpy as np

from trainers.guard import Guard

log = logging.getLogger("uniguard.serve")


@dataclass
class _Job:
    features: dict[str, list[list[int]]]
    future: asyncio.Future
    size: int = field(init=False)

    def __post_init__(self) -> None:
        self.size = len(self.features["input_ids"])


class MicroBatcher:
    """Collects tokenised pairs from concurrent requests and scores them in shared batches."""

    def __init__(self, guard: Guard, max_batch: int, max_wait_ms: float, max_pending: int):
        self.guard, self.max_batch, self.max_wait, self.max_pending = guard, max_batch, max_wait_ms / 1000, max_pending
        self._queue: asyncio.Queue[_Job] | None = None
        self._worker: asyncio.Task | None = None
        self._pending = 0
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="guard-forward")
        self.batches_run = 0  # exposed for tests and /healthz: proof that requests were actually batched
        self.pairs_scored = 0

    def _ensure_started(self) -> asyncio.Queue:
        # started lazily in the serving loop, so the same app works under uvicorn and Ray Serve
        if self._worker is None or self._worker.done():
            self._queue = asyncio.Queue()
            self._worker = asyncio.get_running_loop().create_task(self._run())
        return self._queue

    async def score(self, features: dict[str, list[list[int]]]) -> np.ndarray:
        job = _Job(features, asyncio.get_running_loop().create_future())
        # a request alone over max_pending (long texts: a row per window) runs when nothing else waits;
        # refusing it would answer "retry" to a request that can never fit
        if self._pending and self._pending + job.size > self.max_pending:
            raise ServerBusy(f"{self._pending} pairs are queued (max_pending {self.max_pending}); retry shortly")
        self._pending += job.size
        self._ensure_started().put_nowait(job)
        return await job.future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = await self._collect()
            merged = {k: [row for job in jobs for row in job.features[k]] for k in jobs[0].features}
            try:
                scores = await loop.run_in_executor(self._executor, self.guard.score_features, merged, self.max_batch)
            except Exception as exc:  # a forward failure fails these requests, never the server
                log.exception("scoring failed")
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(exc)
            else:
                self.batches_run += 1
                self.pairs_scored += len(scores)
                offset = 0
                for job in jobs:
                    if not job.future.done():  # the client may have gone away
                        job.future.set_result(scores[offset : offset + job.size])
                    offset += job.size
            finally:
                self._pending -= sum(job.size for job in jobs)

    async def _collect(self) -> list[_Job]:
        """One job, then what is queued, waiting up to `max_wait` seconds for more, until `max_batch` pairs."""
        jobs = [await self._queue.get()]
        size = jobs[0].size
        deadline = asyncio.get_running_loop().time() + self.max_wait
        while size < self.max_batch:
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                job = self._queue.get_nowait() if remaining <= 0 else await asyncio.wait_for(self._queue.get(), remaining)
            except (asyncio.QueueEmpty, asyncio.TimeoutError):
                break
            jobs.append(job)
            size += job.size
        return jobs

    async def close(self) -> None:
        """Let queued work finish, then stop the worker and its thread."""
        deadline = time.monotonic() + 30
        while self._pending and self._worker is not None and not self._worker.done() and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        self._executor.shutdown(wait=True)


class ServerBusy(Exception):
    pass
