"""The four bulk operations.

Records come from a list or any iterable, through a
:class:`~actors.chunker.BulkChunker`: it pulls ``chunk_size`` records at a
time and validates them into bound rows (``_rows.py``), at most
``MAX_IN_FLIGHT`` chunks ahead of the writes, so any number of records is
consumed in bounded memory. Where the backend works in another process
(``dialect.bulk_overlap``), chunks after the first are validated on the
chunker's own thread while the connection writes the previous one. Each
chunk is written by the dialect's fastest path for the job (``bulk_insert``,
``bulk_insert_ignore``, ``bulk_upsert``, ``bulk_update``; COPY on
PostgreSQL), and ``_bulk_write.py`` deals with rows the database refuses.
Counts come from the database. See ``docs/bulk.md`` and ``docs/adr/0008-bulk.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Literal, NamedTuple, Self

from actors.chunker import BulkChunker

from ..errors import DatabaseError
from ..sql import FilterError
from ._bulk_write import ChunkWriter, Counts, named_error
from ._common import check_bool, check_count, check_filter, check_keys, validate_fields
from ._managed import (
    records_version_check,
    upsert_rows,
    upsert_update_columns,
    version_postcheck,
    version_precheck,
)
from ._progress import BulkProgress, Progress
from ._rows import Prepared, row_builder
from ._spec import NodeContext, NodeType, RunContext

__all__ = [
    "BULK_MODES", "BulkProgress", "prepare_bulk_create", "prepare_bulk_delete", "prepare_bulk_update",
    "prepare_bulk_upsert", "run_bulk_create", "run_bulk_delete", "run_bulk_update", "run_bulk_upsert",
]

#: ``DataFlow(bulk_optimization_mode=…)``; the first is the default
BULK_MODES = ("balanced", "speed")
#: chunks validated and not yet written, at most (the chunker's K)
MAX_IN_FLIGHT = 2
_STRATEGIES = ("fail_fast", "continue")
_CONFLICTS = ("error", "skip", "update")


def _aliases(ctx: NodeContext, params: dict[str, Any]) -> dict[str, Any]:
    """Accept the upstream spellings ``data`` and ``batch_size``."""
    for alias, name in (("data", "records"), ("batch_size", "chunk_size")):
        if alias in params:
            if name in params:
                raise ctx.error(f"give '{name}' or its alias '{alias}', not both")
            params[name] = params.pop(alias)
    return params


def _records(ctx: NodeContext, params: dict[str, Any], partial: bool) -> Any:
    records = params.get("records")
    if records is None:
        if partial:
            return None
        raise ctx.missing("records")
    if isinstance(records, (str, bytes, dict)) or not isinstance(records, Iterable):
        raise ctx.error("'records' must be a list or an iterable of dicts", field="records", name_field=False)
    return records


def _choice(ctx: NodeContext, params: dict[str, Any], key: str, allowed: tuple[str, ...]) -> str:
    value = params.get(key, allowed[0])
    if value not in allowed:
        raise ctx.error(f"'{key}' must be one of {', '.join(repr(a) for a in allowed)}, got {value!r}", field=key, name_field=False)
    return str(value)


def _on_progress(ctx: NodeContext, params: dict[str, Any]) -> Callable[[BulkProgress], Any] | None:
    callback = params.get("on_progress")
    if callback is not None and not callable(callback):
        raise ctx.error("'on_progress' must be a callable taking one BulkProgress event", field="on_progress",
                        name_field=False)
    return callback


class _Clock:
    """The ``created_at`` / ``updated_at`` of each chunk: strictly increasing within a node.

    A chunk's rows all carry the time the chunk was prepared. Strictly
    increasing matters to MySQL's upsert counts: an update that sets a fresh
    ``updated_at`` always changes its row, so it is always counted as one.
    """

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last: datetime | None = None

    def __call__(self) -> datetime:
        now = datetime.now(UTC)
        if self.last is not None and now <= self.last:
            now = self.last + timedelta(microseconds=1)
        self.last = now
        return now


class _Job:
    """What every chunked bulk run shares: chunk size, chunker mode, writer, progress."""

    def __init__(self, nt: NodeType, rc: RunContext, ctx: NodeContext, records: Any, chunk_size: int | None,
                 on_progress: Callable[[BulkProgress], Any] | None) -> None:
        table = nt.table
        assert table is not None
        self.dialect = table.dialect
        self.speed = getattr(nt.db, "bulk_optimization_mode", "balanced") == "speed"
        # Larger chunks in "speed" mode were measured not to pay (docs/adr/0008-bulk.md).
        self.chunk_size = chunk_size or self.dialect.bulk_chunk_size
        # A thread pays only where the server works while the client waits; "auto"
        # keeps a job that fits in one chunk on this thread.
        self.threaded: bool | Literal["auto"] = "auto" if self.dialect.bulk_overlap else False
        self.records = records
        self.progress = Progress(nt, ctx, on_progress, len(records) if isinstance(records, Sized) else None)
        self.conn = rc.conn

    def writer(self, write: Callable[[Sequence[Any]], Counts], width: int, strategy: str) -> ChunkWriter:
        return ChunkWriter(self.dialect, self.conn, write, width, strategy=strategy, speed=self.speed)

    def chunks(self, prepare: Callable[[list[Any], int], Any]) -> BulkChunker[Any]:
        return BulkChunker(self.records, self.chunk_size, prepare=prepare, max_in_flight=MAX_IN_FLIGHT,
                           threaded=self.threaded)


# -- BulkCreate -------------------------------------------------------------------

_CREATE_KEYS = frozenset({"records", "chunk_size", "error_strategy", "conflict_resolution", "on_progress"})


class BulkCreateArgs(NamedTuple):
    records: Any
    chunk_size: int | None
    strategy: str
    conflict: str
    context: NodeContext
    on_progress: Callable[[BulkProgress], Any] | None = None


def prepare_bulk_create(nt: NodeType, ctx: NodeContext, params: dict[str, Any], partial: bool) -> BulkCreateArgs:
    params = _aliases(ctx, params)
    check_keys(ctx, params, _CREATE_KEYS)
    conflict = _choice(ctx, params, "conflict_resolution", _CONFLICTS)
    if conflict == "update" and _conflict_key(nt.model) is None:
        raise ctx.error("conflict_resolution 'update' needs a key a record can clash on: "
                        "declare 'id' on the model or a unique index", field="conflict_resolution", name_field=False)
    return BulkCreateArgs(
        _records(ctx, params, partial),
        check_count(ctx, params, "chunk_size", 1),
        _choice(ctx, params, "error_strategy", _STRATEGIES),
        conflict,
        ctx,
        _on_progress(ctx, params),
    )


def _conflict_key(model: Any) -> tuple[str, ...] | None:
    """The unique key a record can clash on: a caller-supplied id, else the first unique index."""
    keys = [k for k in model.unique_keys() if not (k == ("id",) and model.primary_key.auto)]
    return keys[0] if keys else None


def _create_write(nt: NodeType, rc: RunContext, conflict: str) -> Callable[[Sequence[Any]], Counts]:
    """``write(rows) -> (inserted, updated, skipped)`` for BulkCreate's conflict resolution."""
    table, model = nt.table, nt.model
    assert table is not None and model is not None
    dialect, conn = table.dialect, rc.conn
    if conflict == "error":
        def write(rows: Sequence[Any]) -> Counts:
            return dialect.bulk_insert(conn, table, rows), 0, 0
    elif conflict == "skip":  # a clash on any unique key skips the record
        def write(rows: Sequence[Any]) -> Counts:
            inserted = dialect.bulk_insert_ignore(conn, table, rows)
            return inserted, 0, len(rows) - inserted
    else:
        key = _conflict_key(model)
        assert key is not None  # prepare_bulk_create checked it
        cols = [c for c in table.insert_columns if c not in key]
        if _lookup_upsert(nt):
            update = upsert_update_columns(table, cols)

            def write(rows: Sequence[Any]) -> Counts:
                inserted, updated = upsert_rows(table, conn, rc.tenant, rows, key, update)
                return inserted, updated, 0
        else:
            update = tuple(c for c in cols if c not in ("id", "created_at"))
            upsert = _rounds_upsert(dialect, conn, table, key, update)

            def write(rows: Sequence[Any]) -> Counts:
                return (*upsert(rows), 0)
    return write


def run_bulk_create(nt: NodeType, rc: RunContext, args: BulkCreateArgs) -> dict[str, Any]:
    table = nt.table
    assert table is not None
    job = _Job(nt, rc, args.context, args.records, args.chunk_size, args.on_progress)
    collect = args.strategy == "continue"
    writer = job.writer(_create_write(nt, rc, args.conflict), 3, args.strategy)
    builder, clock, ctx, tenant = row_builder(table), _Clock(), args.context, rc.tenant

    def prepare(records: list[Any], start: int) -> Prepared:
        # Runs on the chunker's thread (or this one): validation only, never the connection.
        return builder.prepare(ctx, records, start, clock(), tenant, collect=collect)

    # fail_fast on a backend with streams: once a job has more than one chunk, one
    # statement (or one staging COPY and one merge) for all of it, so the server
    # never waits between chunks.
    opener, counted = _create_stream(nt, rc, args, job)
    totals: Counts = (0, 0, 0)
    failed = 0
    errors: list[dict[str, Any]] = []
    with job.chunks(prepare) as chunks, _Streams(job.dialect) as streams:
        for chunk in chunks:
            p: Prepared = chunk.prepared
            bad = p.errors
            if opener is not None and (streams.open or len(chunk.items) == job.chunk_size):
                streams.send(None, opener, p.rows, chunk.start)
            elif p.rows:
                counts, refused = writer(p.rows, p.indexes)
                totals = (totals[0] + counts[0], totals[1] + counts[1], totals[2] + counts[2])
                bad = bad + refused
            failed += len(bad)
            errors.extend(bad)
            chunks.ack(chunk)
            job.progress.chunk(len(chunk.items), len(bad))
        n_chunks = chunks.statistics().chunks_produced
    for stream, sent in streams.closed:
        assert counted is not None
        totals = tuple(a + b for a, b in zip(totals, counted(stream, sent)))
    errors.sort(key=lambda e: e["index"])
    job.progress.finish()
    return {"inserted": totals[0], "updated": totals[1], "skipped": totals[2], "failed": failed, "errors": errors,
            "chunks": n_chunks}


def _create_stream(nt: NodeType, rc: RunContext, args: BulkCreateArgs, job: _Job) -> tuple[Any, Any]:
    """``(open, counts)`` of BulkCreate's stream on this backend, or ``(None, None)`` where it has none.

    ``open()`` enters the dialect's stream; ``counts(stream, rows sent)`` is
    ``(inserted, updated, skipped)`` once it is closed.
    """
    table, model, dialect, conn = nt.table, nt.model, job.dialect, rc.conn
    assert table is not None and model is not None
    if args.strategy != "fail_fast" or not dialect.bulk_streams:
        return None, None
    locate = not job.speed
    if args.conflict == "error":
        return (lambda: dialect.bulk_insert_stream(conn, table)), (lambda s, n: (s.count, 0, 0))
    if args.conflict == "skip":
        return ((lambda: dialect.bulk_upsert_stream(conn, table, (), (), locate=locate)),
                (lambda s, n: (s.inserted, 0, n - s.inserted)))
    if _lookup_upsert(nt):
        return None, None
    key = _conflict_key(model)
    assert key is not None
    update = tuple(c for c in table.insert_columns if c not in key and c not in ("id", "created_at"))
    return ((lambda: dialect.bulk_upsert_stream(conn, table, key, update, locate=locate)),
            (lambda s, n: (s.inserted, s.updated, 0)))


class _Streams:
    """At most one of a dialect's streams open at a time; another ``kind`` closes the open one first.

    Closing a stream ends its statement (and merges a staging table): that is
    where the database reports most errors, named here by record
    (``_stream_errors``). Leaving the context closes the last stream, or
    aborts it when an error is on its way out.
    """

    def __init__(self, dialect: Any) -> None:
        self.dialect = dialect
        self.kind: Any = None
        self.stack: ExitStack | None = None
        self.stream: Any = None
        self.sent = 0
        #: every closed stream and how many rows went into it
        self.closed: list[tuple[Any, int]] = []

    @property
    def open(self) -> bool:
        return self.stack is not None

    def send(self, kind: Any, opener: Callable[[], Any], rows: Sequence[Any], start: int) -> None:
        """Send ``rows`` (the first of which is ``records[start]``) into a stream of ``kind``."""
        if self.stack is not None and kind != self.kind:
            self.close()
        if self.stack is None:
            stack = ExitStack()
            stack.enter_context(_stream_errors(self.dialect, start))
            self.stream = stack.enter_context(opener())
            self.stack, self.kind, self.sent = stack, kind, 0
        self.stream.send(rows)
        self.sent += len(rows)

    def close(self) -> None:
        stack, self.stack = self.stack, None
        if stack is not None:
            stack.close()
            self.closed.append((self.stream, self.sent))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, etype: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if etype is None:
            self.close()
        elif self.stack is not None:
            stack, self.stack = self.stack, None
            stack.__exit__(etype, exc, tb)


@contextmanager
def _stream_errors(dialect: Any, base: int) -> Iterator[None]:
    """Name the record a refused stream broke at: under fail_fast, stream row i is records[base + i]."""
    try:
        yield
    except Exception as exc:
        mapped = dialect.map_error(exc)
        if not isinstance(mapped, DatabaseError) or dialect.is_disconnect(exc) or dialect.is_transient(exc):
            raise
        pos = dialect.bulk_error_row(exc)
        raise named_error(mapped, f"records[{base + pos}]" if pos is not None else f"records[{base}..]") from exc


def _lookup_upsert(nt: NodeType) -> bool:
    """Whether upserts of this model look their keys up first (``_managed.upsert_rows``).

    Tenant, soft delete and version need that scoped upsert; so does a model
    with several unique keys a record can give on a backend whose upsert
    cannot name the key (a clash on the other key would update the wrong row).
    Otherwise the dialect's ``bulk_upsert`` does it in one statement.
    """
    model, table = nt.model, nt.table
    assert model is not None and table is not None
    if model.managed_options:
        return True
    keys = [k for k in model.unique_keys() if not (k == ("id",) and model.primary_key.auto)]
    return len(keys) > 1 and not table.dialect.upsert_targets_key


def _rounds(rows: Sequence[Any], key_pos: Sequence[int]) -> list[list[Any]]:
    """``rows`` split so that no key repeats within a part: each repeat goes to the next part, in order.

    Applied part after part, a later record with the same key updates the row
    an earlier one wrote, as the records' order says.
    """
    if len(key_pos) == 1:
        p = key_pos[0]
        keys: list[Any] = [row[p] for row in rows]
    else:
        keys = [tuple(row[p] for p in key_pos) for row in rows]
    if len(set(keys)) == len(keys):
        return [list(rows)]
    parts: list[list[Any]] = []
    seen: dict[Any, int] = {}
    for row, k in zip(rows, keys):
        n = seen.get(k, 0)
        seen[k] = n + 1
        if n == len(parts):
            parts.append([])
        parts[n].append(row)
    return parts


def _rounds_upsert(dialect: Any, conn: Any, table: Any, key: Sequence[str],
                   update: Sequence[str]) -> Callable[[Sequence[Any]], tuple[int, int]]:
    """``upsert(rows) -> (inserted, updated)`` of a model without managed options."""
    key_pos = [table.insert_columns.index(c) for c in key]

    def upsert(rows: Sequence[Any]) -> tuple[int, int]:
        parts = _rounds(rows, key_pos)
        inserted, updated = dialect.bulk_upsert(conn, table, parts[0], key, update)
        for part in parts[1:]:  # every key here was written by an earlier part: all updates
            dialect.bulk_upsert(conn, table, part, key, update)
            updated += len(part)
        return inserted, updated

    return upsert


# -- BulkUpdate -------------------------------------------------------------------

_UPDATE_KEYS = frozenset({"filter", "fields", "records", "chunk_size", "confirmed", "on_progress"})


class BulkUpdateArgs(NamedTuple):
    filter: Any
    fields: dict[str, Any]
    records: Any
    chunk_size: int | None
    context: NodeContext
    on_progress: Callable[[BulkProgress], Any] | None = None


def prepare_bulk_update(nt: NodeType, ctx: NodeContext, params: dict[str, Any], partial: bool) -> BulkUpdateArgs:
    params = _aliases(ctx, params)
    check_keys(ctx, params, _UPDATE_KEYS)
    chunk = check_count(ctx, params, "chunk_size", 1)
    confirmed = check_bool(ctx, params, "confirmed", False)
    on_progress = _on_progress(ctx, params)
    if "records" in params:
        if "filter" in params or "fields" in params:
            raise ctx.error("give either 'records' or 'filter' + 'fields', not both")
        return BulkUpdateArgs(None, {}, _records(ctx, params, partial), chunk, ctx, on_progress)
    flt = params.get("filter", {})
    if not isinstance(flt, dict):
        raise ctx.error("'filter' must be a dict", field="filter", name_field=False)
    check_filter(nt, ctx, flt)
    fields = validate_fields(nt, ctx, params.get("fields", {}), create=False, prefix="fields: ")
    if not partial:
        if not fields:
            raise ctx.error("nothing to update: give 'fields' (or 'records')")
        if not flt and not confirmed:
            raise ctx.error("an empty filter would update every row; pass 'confirmed': True to mean it")
    return BulkUpdateArgs(flt, fields, None, chunk, ctx, on_progress)


class _UpdateChunk(NamedTuple):
    """One chunk of BulkUpdate records, validated and grouped by the fields they set."""

    #: field names → rows of (bound values…, bound id), for records without a version lock
    groups: dict[tuple[str, ...], list[list[Any]]]
    #: field names → rows of (bound values…, scope…, id, version), for records naming their version
    locked: dict[tuple[str, ...], list[list[Any]]]
    #: (id, version) of the locked records
    locks: list[tuple[Any, Any]]


def run_bulk_update(nt: NodeType, rc: RunContext, args: BulkUpdateArgs) -> dict[str, Any]:
    table = nt.table
    assert table is not None
    if args.records is None:
        return _update_by_filter(nt, rc, args)
    job = _Job(nt, rc, args.context, args.records, args.chunk_size, args.on_progress)
    dialect, conn, tenant = table.dialect, rc.conn, rc.tenant
    q, ph = table.q, table.ph
    locked_where, scope = table.scoped_condition(f"{q('id')} = {ph} AND {q('version')} = {ph}", tenant)
    clock, ctx = _Clock(), args.context

    def prepare(records: list[Any], start: int) -> _UpdateChunk:
        # Runs on the chunker's thread (or this one): validation only, never the connection.
        now = clock()
        out = _UpdateChunk({}, {}, [])
        for offset, record in enumerate(records):
            prefix = f"records[{start + offset}]: "
            if not isinstance(record, dict) or "id" not in record:
                raise ctx.error(f"{prefix}each record needs an 'id'")
            rest = dict(record)
            rec_id = rest.pop("id")
            # next to 'id', a versioned model's 'version' is the version the record expects (a lock)
            locked = table.versioned and "version" in rest
            version = rest.pop("version") if locked else None
            values = validate_fields(nt, ctx, rest, create=False, prefix=prefix)
            if not values:
                raise ctx.error(f"{prefix}nothing to update besides 'id'")
            values["updated_at"] = now
            names = tuple(values)
            try:
                key = table.bind_value("id", rec_id)
                bound = table.bind_fields(names, list(values.values()))
                if locked:
                    lock = table.bind_value("version", version)
                    out.locks.append((key, lock))
                    out.locked.setdefault(names, []).append([*bound, *scope, key, lock])
                else:
                    out.groups.setdefault(names, []).append([*bound, key])
            except FilterError as exc:
                raise ctx.error(f"{prefix}{exc}", field=exc.field, name_field=False) from None
        return out

    updated = 0
    with job.chunks(prepare) as chunks:
        for chunk in chunks:
            part: _UpdateChunk = chunk.prepared
            expected = records_version_check(table, conn, tenant, part.locks) if part.locks else None
            for names, rows in part.groups.items():
                for ids_once in _rounds(rows, [len(names)]):
                    updated += dialect.bulk_update(conn, table, names, ids_once, tenant)
            locked_updated = 0
            for names, rows in part.locked.items():
                locked_updated += dialect.executemany(conn, table.update_sql(names) + locked_where, rows)
            updated += locked_updated
            version_postcheck(table, expected, locked_updated)
            chunks.ack(chunk)
            job.progress.chunk(len(chunk.items), 0)
    job.progress.finish()
    return {"updated": updated}


def _update_by_filter(nt: NodeType, rc: RunContext, args: BulkUpdateArgs) -> dict[str, Any]:
    """One UPDATE statement (a versioned filter is checked first)."""
    table = nt.table
    assert table is not None
    progress = Progress(nt, args.context, args.on_progress, None)
    fields = {**args.fields, "updated_at": datetime.now(UTC)}
    names = tuple(fields)
    expected = version_precheck(table, rc.conn, args.filter, rc.tenant)
    where, params = table.scoped_where(args.filter, rc.tenant)
    cursor = table.dialect.execute(rc.conn, table.update_sql(names) + where,
                                   table.bind_fields(names, list(fields.values())) + params)
    version_postcheck(table, expected, cursor.rowcount)
    progress.finish(cursor.rowcount)
    return {"updated": cursor.rowcount}


# -- BulkDelete -------------------------------------------------------------------

_DELETE_KEYS = frozenset({"filter", "confirmed", "on_progress"})


class BulkDeleteArgs(NamedTuple):
    filter: dict[str, Any]
    context: NodeContext
    on_progress: Callable[[BulkProgress], Any] | None = None


def prepare_bulk_delete(nt: NodeType, ctx: NodeContext, params: dict[str, Any], partial: bool) -> BulkDeleteArgs:
    check_keys(ctx, params, _DELETE_KEYS)
    flt = params.get("filter", {})
    if not isinstance(flt, dict):
        raise ctx.error("'filter' must be a dict", field="filter", name_field=False)
    check_filter(nt, ctx, flt)
    if not partial and not flt and not check_bool(ctx, params, "confirmed", False):
        raise ctx.error("an empty filter would delete every row; pass 'confirmed': True to mean it")
    return BulkDeleteArgs(flt, ctx, _on_progress(ctx, params))


def run_bulk_delete(nt: NodeType, rc: RunContext, args: BulkDeleteArgs) -> dict[str, Any]:
    table = nt.table
    assert table is not None
    progress = Progress(nt, args.context, args.on_progress, None)
    sql, params = table.delete_statement(args.filter, rc.tenant, datetime.now(UTC))  # soft: sets deleted_at
    deleted = table.dialect.execute(rc.conn, sql, params).rowcount
    progress.finish(deleted)
    return {"deleted": deleted}


# -- BulkUpsert -------------------------------------------------------------------

_UPSERT_KEYS = frozenset({"records", "conflict_on", "update_fields", "chunk_size", "on_progress"})


class BulkUpsertArgs(NamedTuple):
    records: Any
    conflict_on: tuple[str, ...]
    update_fields: tuple[str, ...] | None
    chunk_size: int | None
    context: NodeContext
    on_progress: Callable[[BulkProgress], Any] | None = None


def prepare_bulk_upsert(nt: NodeType, ctx: NodeContext, params: dict[str, Any], partial: bool) -> BulkUpsertArgs:
    model = nt.model
    assert model is not None
    params = _aliases(ctx, params)
    check_keys(ctx, params, _UPSERT_KEYS)
    conflict = params.get("conflict_on", ["id"])
    if isinstance(conflict, str):
        conflict = [conflict]
    if not isinstance(conflict, (list, tuple)) or tuple(conflict) not in [tuple(k) for k in model.unique_keys()]:
        keys = " or ".join(repr(list(k)) for k in model.unique_keys())
        raise ctx.error(f"'conflict_on' must name a unique key of the model: {keys}", field="conflict_on", name_field=False)
    update = params.get("update_fields")
    if update is not None:
        if not isinstance(update, (list, tuple)) or not update:
            raise ctx.error("'update_fields' must be a non-empty list of field names", field="update_fields", name_field=False)
        for name in update:
            if name not in model.settable or name in conflict:
                raise ctx.error(f"'update_fields' names {name!r}, which is not an updatable field", field="update_fields", name_field=False)
        update = tuple(update)
    return BulkUpsertArgs(_records(ctx, params, partial), tuple(conflict), update,
                          check_count(ctx, params, "chunk_size", 1), ctx, _on_progress(ctx, params))


def run_bulk_upsert(nt: NodeType, rc: RunContext, args: BulkUpsertArgs) -> dict[str, Any]:
    table, model = nt.table, nt.model
    assert table is not None and model is not None
    job = _Job(nt, rc, args.context, args.records, args.chunk_size, args.on_progress)
    key = args.conflict_on
    key_given = all(c in table.insert_columns for c in key)
    builder, clock, ctx, tenant = row_builder(table), _Clock(), args.context, rc.tenant

    def prepare(records: list[Any], start: int) -> Prepared:
        # Runs on the chunker's thread (or this one): validation only, never the connection.
        return builder.prepare(ctx, records, start, clock(), tenant, collect=False)

    # Fields to update on a conflict: update_fields, else those every record of the chunk gives.
    writers: dict[tuple[str, ...], ChunkWriter] = {}
    dialect, conn = job.dialect, rc.conn
    staged = dialect.bulk_streams and not _lookup_upsert(nt)
    inserted = updated = 0
    with job.chunks(prepare) as chunks, _Streams(dialect) as streams:
        for chunk in chunks:
            if not key_given:  # the auto id cannot be a conflict key a record gives
                raise ctx.error(f"each record must give the conflict key {list(key)}")
            p: Prepared = chunk.prepared
            given = args.update_fields or tuple(c for c in model.settable if c not in key and c in p.given)
            if staged and (streams.open or len(chunk.items) == job.chunk_size):
                streams.send(given, _upsert_opener(dialect, conn, table, key, given, not job.speed), p.rows,
                             chunk.start)
            else:
                writer = writers.get(given)
                if writer is None:
                    writer = writers[given] = job.writer(_upsert_write(nt, rc, key, given), 2, "fail_fast")
                (ins, upd), _ = writer(p.rows, p.indexes)
                inserted += ins
                updated += upd
            chunks.ack(chunk)
            job.progress.chunk(len(chunk.items), 0)
    for stream, _sent in streams.closed:
        inserted += stream.inserted
        updated += stream.updated
    job.progress.finish()
    return {"inserted": inserted, "updated": updated}


def _upsert_opener(dialect: Any, conn: Any, table: Any, key: tuple[str, ...], given: tuple[str, ...],
                   locate: bool) -> Callable[[], Any]:
    """``open()`` of the upsert stream that updates ``given`` (and ``updated_at``) on a conflict."""
    update = (*given, "updated_at")
    return lambda: dialect.bulk_upsert_stream(conn, table, key, update, locate=locate)


def _upsert_write(nt: NodeType, rc: RunContext, key: tuple[str, ...],
                  given: tuple[str, ...]) -> Callable[[Sequence[Any]], Counts]:
    """``write(rows) -> (inserted, updated)`` of BulkUpsert, updating ``given`` fields on a conflict."""
    table, model = nt.table, nt.model
    assert table is not None and model is not None
    if _lookup_upsert(nt):
        update = upsert_update_columns(table, given)
        return lambda rows: upsert_rows(table, rc.conn, rc.tenant, rows, key, update)
    return _rounds_upsert(table.dialect, rc.conn, table, key, (*given, "updated_at"))
