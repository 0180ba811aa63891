"""BulkChunker: a source of items pulled in chunks, with backpressure.

A bulk job hands the chunker any iterable (a list, a generator, a file
reader). The chunker pulls ``chunk_size`` items at a time, runs ``prepare``
on each chunk (pure work: validation, turning records into rows; never the
connection), and hands the chunks to one consumer in order. At most
``max_in_flight`` chunks exist at any moment: produced, waiting or being
written, and not yet acknowledged with :meth:`BulkChunker.ack`. So a
ten-million-item generator is consumed in bounded memory, whatever the
consumer's speed.

The words are anyio's (``anyio.streams.memory``): ``max_in_flight`` is the
buffer bound, :meth:`BulkChunker.statistics` returns a NamedTuple,
:class:`~actors.errors.ChunkStreamClosed` is raised when *we* closed the
stream and then used it (anyio's ``ClosedResourceError``), and
:class:`~actors.errors.ChunkConsumerGone` when the consumer died mid-stream
(anyio's ``BrokenResourceError``).

Two ways to run, chosen per job:

- **inline** (``threaded=False``): :meth:`receive` pulls and prepares the next
  chunk on the consumer's own thread. No thread, no hand-off: the right choice
  for small jobs and for backends whose work is in-process anyway.
- **threaded** (``threaded=True``): a :class:`BulkChunkerActor` pulls and
  prepares chunks on its own thread while the consumer writes, so preparing
  chunk *n + 1* overlaps the database's work on chunk *n*. Each chunk then
  crosses one thread hand-off (ADR 0001 measures ~80 µs); with chunks of
  thousands of items that is noise. ``threaded="auto"`` prepares the first
  chunk inline and starts the actor only when a second chunk exists, so a
  job that fits in one chunk never pays for a thread.
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any, Generic, Literal, NamedTuple, TypeVar

import pykka

from .errors import ActorStopped, ChunkConsumerGone, ChunkStreamClosed

__all__ = ["BulkChunker", "BulkChunkerActor", "Chunk", "ChunkerStatistics"]

T = TypeVar("T")

#: how often a blocked producer checks that its consumer thread is still alive (seconds)
LIVENESS_INTERVAL = 0.1


class Chunk(NamedTuple):
    """One chunk of the source, in source order."""

    #: the chunk's number, from 0
    seq: int
    #: position of the chunk's first item in the source, from 0
    start: int
    #: the items as pulled from the source
    items: list[Any]
    #: what ``prepare(items, start)`` returned (``None`` without a ``prepare``)
    prepared: Any


class ChunkerStatistics(NamedTuple):
    """A snapshot of one chunker, every figure read under one lock."""

    #: the bound: chunks produced and not yet acknowledged never exceed it
    max_in_flight: int
    #: chunks being prepared, waiting for the consumer, or handed out and not yet acked
    chunks_in_flight: int
    #: chunks prepared and waiting for the consumer (anyio's ``current_buffer_used``)
    chunks_ready: int
    #: the most chunks ever in flight at once
    peak_in_flight: int
    chunks_produced: int
    chunks_acked: int
    #: items pulled from the source so far
    items_pulled: int
    #: the producer is held back by backpressure (anyio's ``tasks_waiting_send``)
    producer_waiting: bool
    #: the consumer is waiting for a chunk (anyio's ``tasks_waiting_receive``)
    consumer_waiting: bool
    threaded: bool
    #: the source has no more items
    exhausted: bool
    closed: bool
    #: the consumer died before the stream ended; the producer stopped
    consumer_gone: bool


class _Failed(NamedTuple):
    """The source or ``prepare`` raised: the consumer gets ``error`` in the chunk's place."""

    error: BaseException


class _Produce(NamedTuple):
    """Tell a :class:`BulkChunkerActor` to produce the next chunk when a slot is free."""


class _State:
    """What the consumer's handle and the producer share; every field under ``cond``."""

    def __init__(self, source: Iterable[Any], chunk_size: int, max_in_flight: int,
                 prepare: Callable[[list[Any], int], Any] | None) -> None:
        self.iterator: Iterator[Any] = iter(source)
        self.source = source
        self.chunk_size = chunk_size
        self.max_in_flight = max_in_flight
        self.prepare = prepare
        self.cond = threading.Condition(threading.Lock())
        self.ready: deque[Chunk | _Failed] = deque()
        self.in_flight = 0
        self.peak = 0
        self.produced = 0
        self.acked = 0
        self.pulled = 0
        self.seq = 0
        self.exhausted = False
        self.closed = False
        self.gone = False
        self.producer_waiting = False
        self.consumer_waiting = False
        self.consumer: threading.Thread | None = None
        self.producing = False  # an actor owns the iterator

    def reserve(self) -> bool | None:
        """Take a slot for the next chunk (``cond`` held, on the producer's thread).

        True: a slot is taken. None: ``max_in_flight`` chunks are out; waited
        up to :data:`LIVENESS_INTERVAL` for an ack, ask again. False: the
        stream ended, closed, or its consumer died (nobody will ack).
        """
        if self.in_flight >= self.max_in_flight and not self.closed:
            self.producer_waiting = True
            self.cond.wait(LIVENESS_INTERVAL)
            self.producer_waiting = False
            consumer = self.consumer
            if consumer is not None and not consumer.is_alive() and not self.closed:
                self.gone = True
                self.cond.notify_all()
                return False
            if self.in_flight >= self.max_in_flight and not self.closed:
                return None
        if self.closed or self.exhausted or self.gone:
            return False
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        return True

    def pull(self) -> Chunk | _Failed | None:
        """Pull and prepare one chunk (slot already reserved); None at the end of the source.

        Runs on whichever thread produces, without ``cond`` held: the source
        and ``prepare`` may be slow.
        """
        start = self.pulled
        try:
            items = list(islice(self.iterator, self.chunk_size))
            if not items:
                return None
            prepared = self.prepare(items, start) if self.prepare is not None else None
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer in the chunk's place
            return _Failed(exc)
        return Chunk(self.seq, start, items, prepared)

    def deliver(self, chunk: Chunk | _Failed | None) -> bool:
        """Put a pulled chunk in the ready queue (``cond`` held); False when production ends."""
        if chunk is None:
            self.exhausted = True
            self.in_flight -= 1
            self.cond.notify_all()
            return False
        if self.closed or self.gone:
            self.in_flight -= 1  # nobody will take it
            return False
        if isinstance(chunk, Chunk):
            self.pulled += len(chunk.items)
            self.seq += 1
            self.produced += 1
        else:
            self.exhausted = True  # nothing after an error
        self.ready.append(chunk)
        self.cond.notify_all()
        return isinstance(chunk, Chunk)


class BulkChunkerActor(pykka.ThreadingActor):
    """The producer of a threaded :class:`BulkChunker`: pulls and prepares chunks on its own thread.

    It holds the shared state, never the consumer's handle, so a consumer
    that drops its handle without closing it is noticed (the handle's
    finalizer closes the stream).
    """

    use_daemon_thread = True

    def __init__(self, state: _State) -> None:
        # Runs in the thread that creates the chunker (the consumer's).
        super().__init__()
        self._state = state

    def on_receive(self, message: Any) -> Any:
        # Runs in the actor's own thread. One chunk per message, so a stop
        # request queued meanwhile is served between chunks; waiting for an
        # ack blocks at most LIVENESS_INTERVAL before the next message.
        if isinstance(message, _Produce):
            state = self._state
            with state.cond:
                go = state.reserve()
            if go is None:
                self.actor_ref.tell(message)
                return None
            if go:
                chunk = state.pull()
                with state.cond:
                    go = state.deliver(chunk)
            if go:
                self.actor_ref.tell(message)
            else:
                self.stop()
        return None

    def on_stop(self) -> None:
        # Runs in the actor's thread as it exits: wake a consumer still waiting.
        with self._state.cond:
            self._state.producing = False
            self._state.cond.notify_all()

    def on_failure(self, *exc_info: Any) -> None:
        self.on_stop()


class BulkChunker(Generic[T]):
    """Chunks of ``source``, at most ``max_in_flight`` of them un-acked at any time.

    Use it as a context manager and iterate, acknowledging each chunk once it
    is done with (written), which frees its place for the next one::

        with BulkChunker(records, 5000, prepare=validate, threaded="auto") as chunks:
            for chunk in chunks:
                write(chunk.prepared)
                chunks.ack(chunk)

    ``prepare(items, start)`` runs on the producer's thread and must not touch
    the consumer's connection. If the source or ``prepare`` raises, the
    consumer gets that exception from :meth:`receive` in the chunk's place,
    after every chunk before it; nothing more is pulled. A generator source
    is closed when the stream closes early.

    Args:
        source: any iterable; it is iterated once, by one thread at a time.
        chunk_size: items per chunk (the last one may be shorter).
        prepare: ``(items, start) -> prepared``; ``None`` hands out the items as they are.
        max_in_flight: the bound K on chunks produced and not yet acked (K ≥ 1).
        threaded: ``False`` inline on the consumer's thread, ``True`` on a
            :class:`BulkChunkerActor`, ``"auto"`` inline for the first chunk and
            threaded from the second.
    """

    def __init__(
        self,
        source: Iterable[T],
        chunk_size: int,
        *,
        prepare: Callable[[list[T], int], Any] | None = None,
        max_in_flight: int = 2,
        threaded: bool | Literal["auto"] = False,
    ) -> None:
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError("chunk_size must be an integer >= 1")
        if isinstance(max_in_flight, bool) or not isinstance(max_in_flight, int) or max_in_flight < 1:
            raise ValueError("max_in_flight must be an integer >= 1")
        if threaded not in (True, False, "auto"):
            raise ValueError("threaded must be True, False or 'auto'")
        self._state = _State(source, chunk_size, max_in_flight, prepare)
        self._mode = threaded
        self._actor: pykka.ActorRef[Any] | None = None
        self._handed: set[int] = set()
        self._finalizer = weakref.finalize(self, _close_state, self._state, None)

    # -- the consumer's side

    def receive(self, timeout: float | None = None) -> Chunk:
        """The next chunk, in source order.

        Raises :class:`StopIteration` at the end of the source; the source's or
        ``prepare``'s exception in place of the chunk it broke;
        :class:`ChunkStreamClosed` after :meth:`close`; :class:`TimeoutError`
        when no chunk came within ``timeout`` seconds (threaded only);
        :class:`~actors.errors.ActorStopped` if the producer actor was
        stopped from outside.
        """
        state = self._state
        with state.cond:
            if state.closed:
                raise ChunkStreamClosed("receive() on a chunk stream that was closed")
            if state.consumer is None:
                state.consumer = threading.current_thread()
            if len(self._handed) >= state.max_in_flight:
                # Waiting now would wait forever: only an ack frees a place.
                raise RuntimeError(f"receive() with {len(self._handed)} chunk(s) un-acked "
                                   f"(max_in_flight={state.max_in_flight}): ack() one first")
            if self._actor is None:
                if self._mode is not True:
                    return self._receive_inline()
                self._start_producer()
            deadline = None if timeout is None else time.monotonic() + timeout
            while not state.ready:
                if not state.producing:
                    if state.exhausted:
                        raise StopIteration
                    raise ActorStopped("the chunk producer stopped before the end of the source")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"no chunk within {timeout} s")
                state.consumer_waiting = True
                state.cond.wait(remaining)
                state.consumer_waiting = False
                if state.closed:
                    raise ChunkStreamClosed("the chunk stream was closed while waiting")
            return self._hand_out(state.ready.popleft())

    def _receive_inline(self) -> Chunk:
        # Called with ``cond`` held and no producer: pull on this thread.
        state = self._state
        if state.exhausted:
            raise StopIteration
        state.in_flight += 1
        state.peak = max(state.peak, state.in_flight)
        state.cond.release()  # the source and prepare run without the lock
        try:
            chunk = state.pull()
        finally:
            state.cond.acquire()
        state.deliver(chunk)
        if chunk is None:
            raise StopIteration
        item = state.ready.popleft()
        if isinstance(item, Chunk) and self._mode == "auto" and len(item.items) == state.chunk_size:
            self._start_producer()  # a second chunk may follow: prepare it meanwhile
        return self._hand_out(item)

    def _hand_out(self, item: Chunk | _Failed) -> Chunk:
        if isinstance(item, _Failed):
            raise item.error
        self._handed.add(item.seq)
        return item

    def _start_producer(self) -> None:
        # Called with ``cond`` held, on the consumer's thread.
        state = self._state
        state.producing = True
        self._actor = BulkChunkerActor.start(state)
        self._finalizer.detach()
        self._finalizer = weakref.finalize(self, _close_state, state, self._actor)
        self._actor.tell(_Produce())

    def ack(self, chunk: Chunk) -> None:
        """Acknowledge ``chunk`` (done with it): its place goes to the next chunk."""
        state = self._state
        with state.cond:
            if state.gone:
                raise ChunkConsumerGone("the consumer of this chunk stream is gone")
            if state.closed:
                raise ChunkStreamClosed("ack() on a chunk stream that was closed")
            if chunk.seq not in self._handed:
                raise ValueError(f"chunk {chunk.seq} was not handed out, or was acked already")
            self._handed.discard(chunk.seq)
            state.in_flight -= 1
            state.acked += 1
            state.cond.notify_all()

    def __iter__(self) -> Iterator[Chunk]:
        while True:
            try:
                chunk = self.receive()
            except StopIteration:
                return
            yield chunk

    # -- life cycle

    def start(self) -> BulkChunker[T]:
        """Start producing ahead now (threaded mode); otherwise at the first :meth:`receive`."""
        with self._state.cond:
            if self._mode is True and self._actor is None and not self._state.closed:
                self._start_producer()
        return self

    def close(self, timeout: float = 5.0) -> None:
        """Close the stream: the producer stops, a generator source is closed; idempotent.

        Waits at most ``timeout`` seconds for the producer's thread to finish
        the chunk it is preparing.
        """
        actor = self._actor
        self._finalizer.detach()
        _close_state(self._state, actor, timeout)

    def __enter__(self) -> BulkChunker[T]:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def statistics(self) -> ChunkerStatistics:
        state = self._state
        with state.cond:
            return ChunkerStatistics(
                max_in_flight=state.max_in_flight,
                chunks_in_flight=state.in_flight,
                chunks_ready=sum(1 for c in state.ready if isinstance(c, Chunk)),
                peak_in_flight=state.peak,
                chunks_produced=state.produced,
                chunks_acked=state.acked,
                items_pulled=state.pulled,
                producer_waiting=state.producer_waiting,
                consumer_waiting=state.consumer_waiting,
                threaded=self._actor is not None,
                exhausted=state.exhausted,
                closed=state.closed,
                consumer_gone=state.gone,
            )


def _close_state(state: _State, actor: pykka.ActorRef[Any] | None, timeout: float | None = None) -> None:
    """Close ``state`` and stop its producer; runs on the closer's thread.

    With ``timeout`` None (a handle collected without being closed, on
    whichever thread the collector runs) nothing waits: the producer stops
    at its next message.
    """
    with state.cond:
        already = state.closed
        state.closed = True
        state.ready.clear()
        state.cond.notify_all()
    if actor is not None:
        try:
            actor.stop(block=timeout is not None, timeout=timeout)
        except pykka.ActorDeadError:
            pass  # it had finished already
        except pykka.Timeout:
            return  # still inside the source or prepare: it stops after that chunk
        if timeout is None:
            return  # the producer may still be inside the source: leave it to finish
    if not already:
        close = getattr(state.source, "close", None)
        if callable(close) and state.source is state.iterator:  # a generator or other iterator
            with contextlib.suppress(Exception):  # a failing clean-up must not mask the job's outcome
                close()
