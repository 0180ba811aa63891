"""Progress of a bulk node: the ``on_progress`` callback and the ``bulk_progress`` log events."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from ._spec import NodeContext, NodeType

__all__ = ["BulkProgress", "Progress"]


class BulkProgress(NamedTuple):
    """One progress event of a bulk node, after each chunk and once at the end.

    ``on_progress(event)`` runs on the thread that writes (the workflow's), between
    chunks: keep it quick. An exception it raises fails the node, and with it the
    workflow.
    """

    node_id: str
    #: ``"ProductBulkCreateNode"``
    node_type: str
    model: str
    #: ``"BulkCreate"``, ``"BulkUpdate"``, ``"BulkUpsert"`` or ``"BulkDelete"``
    operation: str
    #: records taken from the input and dealt with so far: written, skipped or failed
    done: int
    #: how many records the input holds, when it has a length (a list); else None
    total: int | None
    #: chunks written so far
    chunks: int
    #: records that failed so far (``error_strategy="continue"``)
    failed: int
    #: seconds since the node started
    elapsed: float
    #: records per second so far
    rate: float
    #: True for the last event of the node, which it sends when it has written everything
    finished: bool


class Progress:
    """Counts one bulk node's progress and reports it to ``callback`` and the event log."""

    __slots__ = ("callback", "chunks", "ctx", "done", "failed", "log", "operation", "start", "total")

    def __init__(self, nt: NodeType, ctx: NodeContext, callback: Callable[[BulkProgress], Any] | None,
                 total: int | None) -> None:
        assert nt.op is not None
        self.ctx = ctx
        self.operation = nt.op.suffix
        self.callback = callback
        self.total = total
        telemetry = getattr(nt.db, "telemetry", None)
        self.log = telemetry.log if telemetry is not None else None
        self.start = time.perf_counter()
        self.done = self.chunks = self.failed = 0

    def chunk(self, records: int, failed: int) -> None:
        """A chunk of ``records`` input records is dealt with, ``failed`` of them failed."""
        self.done += records
        self.failed += failed
        self.chunks += 1
        self._report(False)

    def finish(self, done: int | None = None) -> None:
        """The node is done (``done`` overrides the count, for nodes without chunks)."""
        if done is not None:
            self.done = done
        self._report(True)

    def _report(self, finished: bool) -> None:
        log = self.log
        wanted = log is not None and log.enabled(logging.INFO if finished else logging.DEBUG)
        if self.callback is None and not wanted:
            return
        elapsed = time.perf_counter() - self.start
        ctx = self.ctx
        event = BulkProgress(ctx.node_id, ctx.node_type, ctx.model or "", self.operation, self.done, self.total,
                             self.chunks, self.failed, elapsed, self.done / elapsed if elapsed > 0 else 0.0,
                             finished)
        if wanted:
            assert log is not None
            fields = {"node_id": ctx.node_id, "node_type": ctx.node_type, "model": ctx.model,
                      "operation": self.operation, "done": self.done, "total": self.total,
                      "chunks": self.chunks, "failed": self.failed, "duration_ms": round(elapsed * 1000, 3),
                      "rate": round(event.rate, 1)}
            if finished:
                log.info("bulk_completed", **fields)
            else:
                log.debug("bulk_progress", **fields)
        if self.callback is not None:
            self.callback(event)
