"""Requests waiting for the recogniser are decoded together, in batches, on the recogniser's threads."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .whisper import Transcriber

__all__ = ["RecogniserBatcher"]


class RecogniserBatcher:
    """Requests waiting for the recogniser are decoded together.

    ``recognise(features)`` queues one item; a background task hands every
    item waiting at that moment (up to the Transcriber's batch size) to one
    Transcriber call on the pool, keeping up to ``workers`` calls in flight.
    ``recognise(features, states=True)`` also returns the Whisper encoder
    states the transcript was decoded from (for the emotion model: the
    encoder runs once for both).
    Created per application; its asyncio objects are made on first use, inside
    the server's event loop.
    """

    def __init__(self, asr: Transcriber, pool: ThreadPoolExecutor, workers: int) -> None:
        self.asr, self.pool, self.workers = asr, pool, workers
        self.pending: list[tuple[Any, bool, asyncio.Future[Any]]] = []
        self.wakeup: asyncio.Event | None = None
        self.tasks: set[asyncio.Task[None]] = set()  # the loop keeps only weak references to tasks

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def recognise(self, features: Any, *, states: bool = False) -> Any:
        """Transcript of one ``(80, T)`` feature matrix, decoded in a batch with whatever else waits.

        With ``states``: ``(transcript, encoder states (ceil(T / 2), d))``.
        """
        if not features.shape[1] and not states:
            return ""
        if self.wakeup is None:
            self.wakeup = asyncio.Event()
            self._spawn(self._run())
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending.append((features, states, future))
        self.wakeup.set()
        return await future

    async def _run(self) -> None:
        assert self.wakeup is not None  # set before this task starts
        slots = asyncio.Semaphore(self.workers)
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            while self.pending:
                await slots.acquire()
                batch = self.pending[: self.asr.batch_size]
                del self.pending[: len(batch)]
                self._spawn(self._decode(batch, slots))

    async def _decode(self, batch: list[tuple[Any, bool, asyncio.Future[Any]]], slots: asyncio.Semaphore) -> None:
        feats = [f for f, _, _ in batch]
        keep = any(s for _, s, _ in batch)
        run = self.asr.transcribe_with_states if keep else self.asr.transcribe
        try:
            results = await asyncio.get_running_loop().run_in_executor(self.pool, run, feats)
        except Exception as exc:
            for _, _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
        else:
            for (_, wants_states, fut), result in zip(batch, results, strict=True):
                if not fut.done():
                    fut.set_result(result if wants_states or not keep else result[0])
        finally:
            slots.release()
