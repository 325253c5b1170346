"""Requests waiting for the recogniser are decoded together, in batches, on the recogniser's threads."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .longform import Decoding
from .whisper import Transcriber

__all__ = ["RecogniserBatcher"]


class RecogniserBatcher:
    """Requests waiting for the recogniser are decoded together, one 30 s window of each per step.

    ``recognise(features)`` starts a long-form decoding (:mod:`.longform`) of one
    item; a background task hands every decoding waiting at that moment (up to
    the Transcriber's batch size) to one decoder step on the pool, keeping up to
    ``workers`` steps in flight.  A step decodes the next window of each of its
    recordings, each at its own position; a recording that is not finished waits
    for the next step beside whatever has arrived since, so a short request is
    never held behind a long one.  ``recognise(features, states=True)`` also keeps
    the Whisper encoder states the transcript was decoded from (for the emotion
    model: the encoder runs once for both).  Created per application; its asyncio
    objects are made on first use, inside the server's event loop.
    """

    def __init__(self, asr: Transcriber, pool: ThreadPoolExecutor, workers: int) -> None:
        self.asr, self.pool, self.workers = asr, pool, workers
        self.decoder = asr.decoder()
        self.pending: list[tuple[Decoding, asyncio.Future[Decoding]]] = []
        self.wakeup: asyncio.Event | None = None
        self.tasks: set[asyncio.Task[None]] = set()  # the loop keeps only weak references to tasks

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def recognise(self, features: Any, *, states: bool = False) -> Decoding:
        """The finished decoding of one ``(80, T)`` feature matrix (``text``, ``segments``; with ``states``,
        the encoder states ``(ceil(T / 2), d)``), its windows decoded in batches with whatever else waits."""
        decoding = self.decoder.start(features, keep_states=states)
        if decoding.done:
            return decoding
        if self.wakeup is None:
            self.wakeup = asyncio.Event()
            self._spawn(self._run())
        future: asyncio.Future[Decoding] = asyncio.get_running_loop().create_future()
        self.pending.append((decoding, future))
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
                self._spawn(self._step(batch, slots))

    async def _step(self, batch: list[tuple[Decoding, asyncio.Future[Decoding]]], slots: asyncio.Semaphore) -> None:
        assert self.wakeup is not None
        batch = [(d, fut) for d, fut in batch if not fut.done()]  # a request that timed out is dropped
        try:
            if batch:
                await asyncio.get_running_loop().run_in_executor(self.pool, self.decoder.step, [d for d, _ in batch])
        except Exception as exc:
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
        else:
            for decoding, fut in batch:
                if fut.done():
                    continue
                if decoding.done:
                    fut.set_result(decoding)
                else:
                    self.pending.append((decoding, fut))
                    self.wakeup.set()
        finally:
            slots.release()
