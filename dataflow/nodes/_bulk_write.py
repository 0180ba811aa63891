"""Writing one chunk of bound rows, and what happens when the database refuses one.

- ``fail_fast``: the chunk is written; if the database refuses it, the error
  names the first record at fault (``records[i]: …``). The driver may say
  which row it was (a PostgreSQL COPY does); otherwise the chunk is bisected
  under savepoints, keeping the halves that go through, down to the one row
  that fails after all those before it. The workflow then rolls back.
- ``continue``: the chunk is written under a savepoint; if refused, it is
  rolled back to the savepoint and split until every row either landed or is
  reported in ``errors``: at the row the driver names (that row failed, the
  rows before it are written again, the rest is retried in halves), else into
  :data:`SPLIT` pieces. Eight pieces rather than halves: with 1% of 100,000
  records refused, MariaDB took 9 s instead of 21 s, and a lone bad record
  costs no more (docs/adr/0008-bulk.md).

``bulk_optimization_mode="speed"`` trades the per-record search for speed:
no savepoint per chunk under ``fail_fast`` (the error names the record when
the driver says which, else the chunk's range), and under ``continue`` a
refused chunk is reported whole, every record with the chunk's error.

Only one savepoint is open at a time: MySQL drops an older savepoint of the
same name when a new one is set.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..errors import DatabaseError

__all__ = ["ChunkWriter", "Counts", "named_error"]

Counts = tuple[int, ...]
_SP = "dataflow_bulk"
#: a refused part whose bad row the driver does not name is retried in this many pieces
SPLIT = 8


class ChunkWriter:
    """Writes chunks with ``write(rows) -> counts`` on ``conn``, per the error strategy."""

    __slots__ = ("conn", "dialect", "isolate", "strategy", "write", "zero")

    def __init__(self, dialect: Any, conn: Any, write: Callable[[Sequence[Any]], Counts], width: int, *,
                 strategy: str, speed: bool) -> None:
        self.dialect = dialect
        self.conn = conn
        self.write = write
        self.zero: Counts = (0,) * width
        self.strategy = strategy
        self.isolate = not speed

    def __call__(self, rows: Sequence[Any], indexes: Sequence[int]) -> tuple[Counts, list[dict[str, Any]]]:
        """Write ``rows`` (source ``indexes``); the counts, and the records that failed (``continue``)."""
        if self.strategy == "fail_fast":
            return (self._fail_fast(rows, indexes) if self.isolate else self._fail_fast_speed(rows, indexes)), []
        if self.isolate:
            return self._isolating(rows, indexes)
        return self._chunkwise(rows, indexes)

    # -- fail_fast

    def _fail_fast(self, rows: Sequence[Any], indexes: Sequence[int]) -> Counts:
        counts, failure = self._attempt(rows)
        if failure is None:
            return counts
        exc, mapped = failure
        pos = self.dialect.bulk_error_row(exc)
        if pos is None or not 0 <= pos < len(rows):
            pos, exc, mapped = self._first_bad(rows, exc, mapped)
        raise named_error(mapped, f"records[{indexes[pos]}]") from exc

    def _fail_fast_speed(self, rows: Sequence[Any], indexes: Sequence[int]) -> Counts:
        try:
            return self.write(rows)
        except Exception as exc:
            mapped = self._refused(exc)
            pos = self.dialect.bulk_error_row(exc)
            where = (f"records[{indexes[pos]}]" if pos is not None and 0 <= pos < len(rows)
                     else f"records[{indexes[0]}..{indexes[-1]}]")
            raise named_error(mapped, where) from exc

    def _first_bad(self, rows: Sequence[Any], exc: Exception,
                   mapped: DatabaseError) -> tuple[int, Exception, DatabaseError]:
        """The first row that fails after every row before it is written (and kept)."""
        lo, hi = 0, len(rows)  # rows[:lo] are written; the failure is in rows[lo:hi]
        while hi - lo > 1:
            mid = (lo + hi) // 2
            failure = self._try(rows[lo:mid])
            if failure is None:
                lo = mid
            else:
                hi = mid
                exc, mapped = failure
        failure = self._try(rows[lo:hi])
        if failure is not None:
            exc, mapped = failure
        return lo, exc, mapped

    def _try(self, rows: Sequence[Any]) -> tuple[Exception, DatabaseError] | None:
        return self._attempt(rows)[1]

    def _attempt(self, rows: Sequence[Any]) -> tuple[Any, tuple[Exception, DatabaseError] | None]:
        """Write ``rows`` under a savepoint: (counts, None), or (None, (error, mapped)) rolled back."""
        sp = self.dialect.execute
        sp(self.conn, f"SAVEPOINT {_SP}")
        try:
            counts = self.write(rows)
        except Exception as exc:  # noqa: BLE001 - _refused re-raises all but a refused row
            mapped = self._refused(exc)
            sp(self.conn, f"ROLLBACK TO SAVEPOINT {_SP}")
            sp(self.conn, f"RELEASE SAVEPOINT {_SP}")
            return None, (exc, mapped)
        sp(self.conn, f"RELEASE SAVEPOINT {_SP}")
        return counts, None

    # -- continue

    def _isolating(self, rows: Sequence[Any], indexes: Sequence[int]) -> tuple[Counts, list[dict[str, Any]]]:
        """Write ``rows``; if refused, split until each row landed or is reported."""
        counts, failure = self._attempt(rows)
        if failure is not None:
            exc, mapped = failure
            if len(rows) == 1:
                return self.zero, [{"index": indexes[0], "error": str(mapped)}]
            pos = self.dialect.bulk_error_row(exc)
            total, errors = self.zero, []
            if pos is not None and 0 <= pos < len(rows):
                # The driver says row ``pos`` broke it, after every row before it went
                # through: that row failed with this error; write the rows before it
                # again, then the rest in halves (with many bad rows, halving keeps the
                # rework near n·log n rather than n²).
                errors.append({"index": indexes[pos], "error": str(mapped)})
                mid = pos + 1 + (len(rows) - pos - 1) // 2
                parts = [(rows[:pos], indexes[:pos]), (rows[pos + 1:mid], indexes[pos + 1:mid]),
                         (rows[mid:], indexes[mid:])]
            else:
                step = -(-len(rows) // SPLIT)
                parts = [(rows[i:i + step], indexes[i:i + step]) for i in range(0, len(rows), step)]
            for part, part_indexes in parts:
                if len(part):
                    counts, bad = self._isolating(part, part_indexes)
                    total = _add(total, counts)
                    errors.extend(bad)
            return total, errors
        return counts, []

    def _chunkwise(self, rows: Sequence[Any], indexes: Sequence[int]) -> tuple[Counts, list[dict[str, Any]]]:
        """Write ``rows``; if refused, roll the chunk back and report every record of it."""
        counts, failure = self._attempt(rows)
        if failure is not None:
            message = f"chunk records[{indexes[0]}..{indexes[-1]}] refused: {failure[1]}"
            return self.zero, [{"index": i, "error": message} for i in indexes]
        return counts, []

    # -- errors

    def _refused(self, exc: Exception) -> DatabaseError:
        """``exc`` as the DataFlow error of a refused row; re-raise anything that is not one.

        A lost connection or a transient error (deadlock, serialization
        failure) is about the transaction, not a row: it fails the node as is.
        """
        dialect = self.dialect
        mapped = dialect.map_error(exc)
        if not isinstance(mapped, DatabaseError) or dialect.is_disconnect(exc) or dialect.is_transient(exc):
            raise exc
        return mapped


def named_error(mapped: DatabaseError, where: str) -> DatabaseError:
    """``mapped`` again, its message prefixed with ``where`` (``records[12]``)."""
    return type(mapped)(f"{where}: {mapped}", sqlstate=mapped.sqlstate, dialect=mapped.dialect)


def _add(a: Counts, b: Counts) -> Counts:
    return tuple(x + y for x, y in zip(a, b))
