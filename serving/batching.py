"""Adaptive batching inside one server process, for endpoints whose request is a single item.

BentoML's `@bentoml.api(batchable=True)` needs the request body itself to be a list; /generate
takes one `{"features": {...}}` object, so it batches here instead: concurrent requests are
queued, and a worker runs the model once per batch as soon as either `max_size` items are
waiting or `max_latency_ms` has passed since the first one arrived. Under no load a request
waits for nothing but the model call; under load batches grow to use the model's batch
dimension.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)


@dataclass
class BatchStats:
    """Running counts: batches run and items served (mean batch size = items / batches)."""

    batches: int = 0
    items: int = 0
    sizes: dict[int, int] = field(default_factory=dict)


class AdaptiveBatcher:
    """Collects single items into batches for `run_batch(items) -> results` (same order).

    `run_batch` runs in a worker thread; an exception it raises for the batch is retried item
    by item, so one bad item fails only its own request.
    """

    def __init__(
        self,
        run_batch: Callable[[Sequence[Any]], Sequence[Any]],
        max_size: int = 32,
        max_latency_ms: float = 10.0,
    ) -> None:
        self.run_batch = run_batch
        self.max_size = max(1, int(max_size))
        self.max_latency_s = max(0.0, max_latency_ms) / 1000.0
        self.stats = BatchStats()
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None

    async def submit(self, item: Any) -> Any:
        """Queue one item and wait for its result (or its exception)."""
        if self._worker is None or self._worker.done():
            self._queue = asyncio.Queue()
            self._worker = asyncio.get_running_loop().create_task(self._loop())
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((item, future))
        return await future

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = await self._queue.get()
            batch = [first]
            deadline = loop.time() + self.max_latency_s
            while len(batch) < self.max_size:
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), timeout))
                except TimeoutError:
                    break
            await self._run(batch)

    async def _run(self, batch: list[tuple[Any, asyncio.Future]]) -> None:
        items = [item for item, _ in batch]
        self.stats.batches += 1
        self.stats.items += len(items)
        self.stats.sizes[len(items)] = self.stats.sizes.get(len(items), 0) + 1
        try:
            results = await asyncio.to_thread(self.run_batch, items)
            outcomes: list[tuple[Any, BaseException | None]] = [(r, None) for r in results]
        except Exception:  # retry one by one so that a bad item fails only its own request
            outcomes = []
            for item in items:
                try:
                    outcomes.append(((await asyncio.to_thread(self.run_batch, [item]))[0], None))
                except Exception as exc:
                    outcomes.append((None, exc))
        for (_, future), (result, exc) in zip(batch, outcomes, strict=True):
            if future.done():
                continue
            if exc is not None:
                future.set_exception(exc)
            else:
                future.set_result(result)
