"""Micro-batching: concurrent requests share one model call.

A CLIP forward over 16 posts costs far less than 16 forwards over one post, so under load the
server groups what is waiting into one call. One worker thread owns the model (torch runs there,
never on the event loop); callers hand it items and await a future each.

How a batch is formed: the worker takes the oldest waiting item, then everything else already
queued, and keeps collecting until `max_batch_size` items or until the oldest item has waited
`max_wait_ms`. The wait is measured from when the item was *queued*, not from when the worker
got to it, so under load (items queue up while the previous batch runs) batches leave at once,
and only a request arriving at an idle server pays up to `max_wait_ms` for company.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger(__name__)


@dataclass
class _Pending(Generic[T]):
    item: T
    future: concurrent.futures.Future
    queued_at: float = field(default_factory=time.monotonic)


_STOP = object()


class MicroBatcher(Generic[T, R]):
    """Runs `run_batch(items) -> results` (one result per item, in order) on a worker thread.

    A result that is an exception instance is raised to that item's caller alone; an exception
    raised by `run_batch` itself goes to every caller of that batch. Either way the worker keeps
    serving.
    """

    def __init__(
        self,
        run_batch: Callable[[list[T]], Sequence[R | BaseException]],
        *,
        max_batch_size: int,
        max_wait_ms: float,
        name: str = "semloc-inference",
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        self.run_batch = run_batch
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000.0
        self.name = name
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        # how many model calls had each batch size; read by /health and the tests
        self.batch_sizes: Counter[int] = Counter()

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("the batcher is closed")
            if self._thread is None:
                # a daemon: a server killed mid-batch must not hang on this thread at exit
                self._thread = threading.Thread(target=self._work, name=self.name, daemon=True)
                self._thread.start()

    def close(self, timeout: float | None = 10.0) -> None:
        """Finish what is queued, then stop the worker."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        self._queue.put(_STOP)
        if thread is not None:
            thread.join(timeout)

    # -- submitting ----------------------------------------------------------------------------

    def submit_future(self, item: T) -> concurrent.futures.Future:
        """Queue one item; the future resolves to its result (or raises its error)."""
        if self._thread is None:
            self.start()
        if self._closed:
            raise RuntimeError("the batcher is closed")
        fut: concurrent.futures.Future = concurrent.futures.Future()
        self._queue.put(_Pending(item, fut))
        return fut

    async def submit(self, item: T) -> R:
        """Await the result of one item without blocking the event loop."""
        return await asyncio.wrap_future(self.submit_future(item))

    async def submit_many(self, items: Sequence[T]) -> list[R]:
        """Queue several items at once (so they can share batches); results in input order."""
        futures = [self.submit_future(it) for it in items]
        try:
            return list(await asyncio.gather(*(asyncio.wrap_future(f) for f in futures)))
        finally:
            for f in futures:  # a failed sibling or a gone client: drop what has not run yet
                f.cancel()

    # -- the worker ----------------------------------------------------------------------------

    def _collect(self, first: _Pending) -> tuple[list[_Pending], bool]:
        """The batch that starts with `first`, and whether a stop request was seen."""
        batch = [first]
        deadline = first.queued_at + self.max_wait
        while len(batch) < self.max_batch_size:
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    nxt = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
            if nxt is _STOP:
                return batch, True
            batch.append(nxt)
        return batch, False

    def _work(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                break
            batch, stopping = self._collect(first)
            # a caller that went away (client disconnect, cancelled gather) is not computed
            live = [p for p in batch if p.future.set_running_or_notify_cancel()]
            if not live:
                continue
            self.batch_sizes[len(live)] += 1
            try:
                results = self.run_batch([p.item for p in live])
                if len(results) != len(live):
                    raise RuntimeError(
                        f"run_batch returned {len(results)} results for {len(live)} items"
                    )
            except BaseException as e:  # every caller of this batch learns of it
                log.exception("inference failed for a batch of %d", len(live))
                for p in live:
                    p.future.set_exception(e)
                continue
            for p, r in zip(live, results, strict=True):
                if isinstance(r, BaseException):
                    p.future.set_exception(r)
                else:
                    p.future.set_result(r)
        # anything queued after the stop request gets an answer, not a hang
        while True:
            try:
                rest = self._queue.get_nowait()
            except queue.Empty:
                break
            if rest is not _STOP and rest.future.set_running_or_notify_cancel():
                rest.future.set_exception(RuntimeError("the server is shutting down"))

    # -- statistics ----------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        sizes = dict(self.batch_sizes)
        calls = sum(sizes.values())
        posts = sum(k * v for k, v in sizes.items())
        return {
            "max_batch_size": self.max_batch_size,
            "max_wait_ms": self.max_wait * 1000.0,
            "model_calls": calls,
            "posts": posts,
            "mean_batch_size": round(posts / calls, 3) if calls else None,
            # model calls per batch size (JSON keys are strings): the sizes batching formed
            "batch_sizes": {str(k): v for k, v in sorted(sizes.items())},
        }
