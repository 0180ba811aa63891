"""BulkChunker: chunks in order, backpressure (never more than K in flight), closing, dead consumers."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pykka
import pytest

from actors import ActorStopped, ChunkConsumerGone, ChunkStreamClosed
from actors.chunker import BulkChunker, Chunk

MODES = [False, True, "auto"]


class Source:
    """A generator source that records how far it has been pulled and whether it was closed."""

    def __init__(self, n: int, fail_at: int | None = None) -> None:
        self.n = n
        self.fail_at = fail_at
        self.pulled = 0
        self.closed = False
        self.threads: set[str] = set()

    def __iter__(self) -> Iterator[int]:
        return self.gen()

    def gen(self) -> Iterator[int]:
        try:
            for i in range(self.n):
                if i == self.fail_at:
                    raise RuntimeError(f"source broke at {i}")
                self.threads.add(threading.current_thread().name)
                self.pulled = i + 1
                yield i
        finally:
            self.closed = True


def drain(chunker: BulkChunker[Any]) -> list[Chunk]:
    out = []
    for chunk in chunker:
        out.append(chunk)
        chunker.ack(chunk)
    return out


@pytest.mark.parametrize("threaded", MODES)
def test_chunks_in_order_with_start_indexes(threaded: Any) -> None:
    """Every item arrives once, in order, in chunks of chunk_size; prepare gets (items, start)."""
    with BulkChunker(range(23), 5, prepare=lambda items, start: (start, sum(items)), threaded=threaded) as c:
        chunks = drain(c)
    assert [ch.items for ch in chunks] == [list(range(s, min(s + 5, 23))) for s in range(0, 23, 5)]
    assert [ch.start for ch in chunks] == [0, 5, 10, 15, 20]
    assert [ch.seq for ch in chunks] == [0, 1, 2, 3, 4]
    assert all(ch.prepared == (ch.start, sum(ch.items)) for ch in chunks)
    stats = c.statistics()
    assert (stats.chunks_produced, stats.chunks_acked, stats.items_pulled) == (5, 5, 23)
    assert stats.exhausted and stats.closed and stats.chunks_in_flight == 0


@pytest.mark.parametrize("threaded", MODES)
def test_empty_source(threaded: Any) -> None:
    """An empty source gives no chunk at all."""
    with BulkChunker([], 10, threaded=threaded) as c:
        assert drain(c) == []


def test_auto_stays_inline_for_one_chunk() -> None:
    """threaded="auto" starts no actor when the whole source fits in one chunk."""
    with BulkChunker(range(7), 10, threaded="auto") as c:
        assert len(drain(c)) == 1
        assert not c.statistics().threaded
    with BulkChunker(range(10), 10, threaded="auto") as c:
        chunks = drain(c)
    assert len(chunks) == 1  # a full first chunk starts the producer, which finds nothing more
    with BulkChunker(range(11), 10, threaded="auto") as c:
        assert len(drain(c)) == 2
        assert c.statistics().threaded


@pytest.mark.parametrize("k", [1, 2, 3])
def test_slow_consumer_never_lets_more_than_k_chunks_accumulate(k: int) -> None:
    """A consumer slower than the producer holds the producer back: at most K chunks are ever in flight."""
    chunk_size = 10
    source = Source(400)
    seen_in_flight = []
    pulled_ahead = []
    with BulkChunker(source, chunk_size, max_in_flight=k, threaded=True) as c:
        for chunk in c:
            time.sleep(0.005)  # the slow write
            stats = c.statistics()
            seen_in_flight.append(stats.chunks_in_flight)
            # items taken from the source but not yet acked: at most K chunks' worth
            pulled_ahead.append(source.pulled - stats.chunks_acked * chunk_size)
            c.ack(chunk)
    stats = c.statistics()
    assert stats.peak_in_flight <= k
    assert max(seen_in_flight) <= k
    assert max(pulled_ahead) <= k * chunk_size
    assert stats.chunks_acked == 40
    if k > 1:
        assert stats.peak_in_flight == k  # the producer did run ahead as far as allowed


def test_producer_waits_on_backpressure_and_resumes_on_ack() -> None:
    """With K chunks un-acked the producer waits (statistics say so); one ack lets exactly one more through."""
    source = Source(100)
    with BulkChunker(source, 10, max_in_flight=2, threaded=True) as c:
        first = c.receive(timeout=2)
        second = c.receive(timeout=2)
        deadline = time.monotonic() + 2
        while not c.statistics().producer_waiting and time.monotonic() < deadline:
            time.sleep(0.005)
        stats = c.statistics()
        assert stats.producer_waiting and stats.chunks_in_flight == 2 and source.pulled == 20
        time.sleep(0.05)
        assert source.pulled == 20  # still held back
        c.ack(first)
        third = c.receive(timeout=2)
        assert third.start == 20 and c.statistics().chunks_in_flight == 2
        c.ack(second)
        c.ack(third)


def test_work_runs_on_the_producer_thread_when_threaded() -> None:
    """Threaded: the source and prepare run on the chunker actor's thread; inline: on the consumer's."""
    threads: set[str] = set()

    def prepare(items: list[int], start: int) -> None:
        threads.add(threading.current_thread().name)

    with BulkChunker(range(50), 10, prepare=prepare, threaded=True) as c:
        drain(c)
    assert threading.current_thread().name not in threads
    threads.clear()
    with BulkChunker(range(50), 10, prepare=prepare, threaded=False) as c:
        drain(c)
    assert threads == {threading.current_thread().name}


@pytest.mark.parametrize("threaded", MODES)
def test_source_error_arrives_in_order_and_stops_pulling(threaded: Any) -> None:
    """An error from the source reaches the consumer after the chunks before it; nothing more is pulled."""
    source = Source(100, fail_at=35)
    got = []
    with BulkChunker(source, 10, threaded=threaded) as c, pytest.raises(RuntimeError, match="broke at 35"):
        for chunk in c:
            got.append(chunk.start)
            c.ack(chunk)
    assert got == [0, 10, 20]
    assert source.pulled == 35


@pytest.mark.parametrize("threaded", MODES)
def test_prepare_error_names_its_chunk(threaded: Any) -> None:
    """An error from prepare takes its chunk's place in the stream."""

    def prepare(items: list[int], start: int) -> int:
        if start == 20:
            raise ValueError(f"bad chunk at {start}")
        return start

    with BulkChunker(range(50), 10, prepare=prepare, threaded=threaded) as c:
        got = []
        with pytest.raises(ValueError, match="bad chunk at 20"):
            for chunk in c:
                got.append(chunk.prepared)
                c.ack(chunk)
        assert got == [0, 10]


@pytest.mark.parametrize("threaded", MODES)
def test_close_mid_stream_closes_the_generator(threaded: Any) -> None:
    """Closing early stops the producer and closes a generator source; using the stream after raises ChunkStreamClosed."""
    source = Source(10_000)
    c = BulkChunker(iter(source), 10, threaded=threaded).start()
    chunk = c.receive(timeout=2)
    c.close()
    assert source.closed
    assert source.pulled < 100
    with pytest.raises(ChunkStreamClosed):
        c.receive()
    with pytest.raises(ChunkStreamClosed):
        c.ack(chunk)
    c.close()  # idempotent
    assert pykka.ActorRegistry.get_all() == []


def test_consumer_thread_dying_stops_the_producer() -> None:
    """A consumer thread that dies without closing is noticed: the producer stops, and the stream is ChunkConsumerGone."""
    source = Source(10_000)
    c = BulkChunker(iter(source), 10, max_in_flight=2, threaded=True)
    held: list[Chunk] = []

    def consumer() -> None:
        held.append(c.receive(timeout=2))  # takes one chunk and dies without ack or close

    t = threading.Thread(target=consumer)
    t.start()
    t.join(2)
    deadline = time.monotonic() + 3
    while not c.statistics().consumer_gone and time.monotonic() < deadline:
        time.sleep(0.01)
    stats = c.statistics()
    assert stats.consumer_gone
    assert source.pulled <= 20
    with pytest.raises(ChunkConsumerGone):
        c.ack(held[0])
    c.close()
    assert pykka.ActorRegistry.get_all() == []


def test_producer_stopped_from_outside_is_actor_stopped() -> None:
    """If the producer actor is stopped from outside mid-stream, receive raises ActorStopped instead of hanging."""
    c = BulkChunker(iter(Source(10_000)), 10, max_in_flight=2, threaded=True).start()
    first = c.receive(timeout=2)
    pykka.ActorRegistry.stop_all(timeout=2)
    c.ack(first)
    with pytest.raises(ActorStopped):
        for _ in range(5):
            c.ack(c.receive(timeout=2))
    c.close()


@pytest.mark.parametrize("threaded", MODES)
def test_receive_beyond_k_is_a_misuse(threaded: Any) -> None:
    """Asking for more than K un-acked chunks is a programming error (it would wait forever), not a pile-up."""
    with BulkChunker(range(100), 10, max_in_flight=2, threaded=threaded) as c:
        c.receive()
        c.receive()
        with pytest.raises(RuntimeError, match="ack"):
            c.receive()


def test_receive_timeout() -> None:
    """receive(timeout) gives up with TimeoutError when the source is slower than the bound."""

    def slow() -> Iterator[int]:
        yield 1
        time.sleep(0.5)
        yield 2

    with BulkChunker(slow(), 1, threaded=True) as c:
        c.ack(c.receive(timeout=2))
        with pytest.raises(TimeoutError):
            c.receive(timeout=0.05)


def test_ack_of_a_chunk_not_handed_out() -> None:
    """ack() of a chunk twice (or one never handed out) is a ValueError."""
    with BulkChunker(range(5), 2) as c:
        chunk = c.receive()
        c.ack(chunk)
        with pytest.raises(ValueError):
            c.ack(chunk)


@pytest.mark.parametrize("kwargs", [{"chunk_size": 0}, {"chunk_size": 2, "max_in_flight": 0},
                                    {"chunk_size": 2, "threaded": "yes"}])
def test_bad_arguments(kwargs: dict[str, Any]) -> None:
    """Bad sizes or modes are ValueErrors at construction."""
    with pytest.raises(ValueError):
        BulkChunker(range(3), **kwargs)
