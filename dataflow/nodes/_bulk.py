"""The four bulk operations.

Records are validated and written chunk by chunk, so an iterable of any
length is consumed in bounded memory. Counts come from the database.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timezone
from itertools import islice
from typing import Any, NamedTuple

from ..errors import NodeParameterError
from ..sql import FilterError
from ._common import check_bool, check_count, check_filter, check_keys, validate_fields
from ._managed import (
    own_keys,
    records_version_check,
    upsert_rows,
    upsert_update_columns,
    version_postcheck,
    version_precheck,
)
from ._spec import NodeContext, NodeType, RunContext

__all__ = [
    "prepare_bulk_create", "prepare_bulk_delete", "prepare_bulk_update", "prepare_bulk_upsert",
    "run_bulk_create", "run_bulk_delete", "run_bulk_update", "run_bulk_upsert",
]

DEFAULT_CHUNK = 1000
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


def _chunks(records: Iterable[Any], size: int) -> Iterator[list[Any]]:
    it = iter(records)
    while chunk := list(islice(it, size)):
        yield chunk


def _choice(ctx: NodeContext, params: dict[str, Any], key: str, allowed: tuple[str, ...]) -> str:
    value = params.get(key, allowed[0])
    if value not in allowed:
        raise ctx.error(f"'{key}' must be one of {', '.join(repr(a) for a in allowed)}, got {value!r}", field=key, name_field=False)
    return str(value)


# -- BulkCreate -------------------------------------------------------------------

_CREATE_KEYS = frozenset({"records", "chunk_size", "error_strategy", "conflict_resolution"})


class BulkCreateArgs(NamedTuple):
    records: Any
    chunk_size: int
    strategy: str
    conflict: str
    context: NodeContext


def prepare_bulk_create(nt: NodeType, ctx: NodeContext, params: dict[str, Any], partial: bool) -> BulkCreateArgs:
    params = _aliases(ctx, params)
    check_keys(ctx, params, _CREATE_KEYS)
    conflict = _choice(ctx, params, "conflict_resolution", _CONFLICTS)
    if conflict == "update" and _conflict_key(nt.model) is None:
        raise ctx.error("conflict_resolution 'update' needs a key a record can clash on: "
                        "declare 'id' on the model or a unique index", field="conflict_resolution", name_field=False)
    return BulkCreateArgs(
        _records(ctx, params, partial),
        check_count(ctx, params, "chunk_size", 1) or DEFAULT_CHUNK,
        _choice(ctx, params, "error_strategy", _STRATEGIES),
        conflict,
        ctx,
    )


def _validated_row(nt: NodeType, ctx: NodeContext, record: Any, index: int, now: datetime,
                   tenant: str | None) -> list[Any]:
    model, table = nt.model, nt.table
    assert model is not None and table is not None
    values = validate_fields(nt, ctx, record, create=True, prefix=f"records[{index}]: ")
    for name, spec in model.defaults:
        if name not in values:
            values[name] = spec.make_default()
    table.managed_insert(values, tenant, now)  # timestamps, version 1, the tenant
    return table.bind_row([values[c] for c in table.insert_columns])


def _conflict_key(model: Any) -> tuple[str, ...] | None:
    """The unique key a record can clash on: a caller-supplied id, else the first unique index."""
    keys = [k for k in model.unique_keys() if not (k == ("id",) and model.primary_key.auto)]
    return keys[0] if keys else None


def _insert_sql(nt: NodeType, conflict: str) -> str:
    table, model = nt.table, nt.model
    assert table is not None and model is not None
    if conflict == "error":
        return table.insert_sql.split(" RETURNING ")[0]
    cols = table.insert_columns
    if conflict == "skip":  # a clash on any unique key skips the record
        return table.dialect.upsert_sql(model, cols, [], [])
    key = _conflict_key(model)
    assert key is not None  # prepare_bulk_create checked it
    update = [c for c in cols if c not in ("id", "created_at") and c not in key]
    return table.dialect.upsert_sql(model, cols, list(key), update)


def run_bulk_create(nt: NodeType, rc: RunContext, args: BulkCreateArgs) -> dict[str, Any]:
    table, model = nt.table, nt.model
    assert table is not None and model is not None
    conn = rc.conn
    sql = _insert_sql(nt, args.conflict)
    key = _conflict_key(model) if args.conflict == "update" else None
    if key and model.managed_options:
        # tenant, soft delete and version need the scoped upsert (nodes/_managed.py)
        update = upsert_update_columns(table, [c for c in table.insert_columns if c not in key])

        def write(rows: list[list[Any]]) -> int:
            return sum(upsert_rows(table, conn, rc.tenant, rows, key, update))
    else:

        def write(rows: list[list[Any]]) -> int:
            return table.dialect.executemany(conn, sql, rows)
    key_pos = [table.insert_columns.index(c) for c in key] if key else []
    seen: set[tuple[Any, ...]] = set()
    inserted = updated = skipped = failed = chunks = 0
    errors: list[dict[str, Any]] = []
    base = 0
    now = datetime.now(timezone.utc)
    for chunk in _chunks(args.records, args.chunk_size):
        chunks += 1
        rows: list[list[Any]] = []
        indexes: list[int] = []
        for offset, record in enumerate(chunk):
            try:
                rows.append(_validated_row(nt, args.context, record, base + offset, now, rc.tenant))
                indexes.append(base + offset)
            except NodeParameterError as exc:
                if args.strategy == "fail_fast":
                    raise
                failed += 1
                errors.append({"index": base + offset, "error": str(exc)})
        base += len(chunk)
        if not rows:
            continue
        if key:  # which records will update a stored row: asked of the database before writing
            keys = [tuple(row[p] for p in key_pos) for row in rows]
            fresh = [k for k in dict.fromkeys(keys) if k not in seen]
            existing = (own_keys(table, conn, key, fresh, rc.tenant) if model.managed_options
                        else _existing_keys(table, conn, key, fresh))
        if args.strategy == "fail_fast":
            n, bad = _write_rows(nt, conn, write, rows, indexes), []
        else:
            n, bad = _write_isolating(nt, conn, write, rows, indexes)
            failed += len(bad)
            errors.extend(bad)
        if key:
            bad_indexes = {e["index"] for e in bad}
            for index, k in zip(indexes, keys):
                if index in bad_indexes:
                    continue
                if k in seen or k in existing:
                    updated += 1
                else:
                    inserted += 1
                seen.add(k)
            continue
        inserted += n
        skipped += len(rows) - len(bad) - n
    errors.sort(key=lambda e: e["index"])
    return {"inserted": inserted, "updated": updated, "skipped": skipped, "failed": failed, "errors": errors,
            "chunks": chunks}


def _write_rows(nt: NodeType, conn: Any, write: Callable[[list[list[Any]]], int], rows: list[list[Any]],
                indexes: list[int]) -> int:
    """Write ``rows``; on a database error, raise it naming the first record at fault."""
    table = nt.table
    assert table is not None
    dialect = table.dialect
    dialect.execute(conn, "SAVEPOINT dataflow_chunk")
    try:
        n = write(rows)
    except Exception as exc:
        mapped = dialect.map_error(exc)
        if mapped is None or dialect.is_disconnect(exc):
            raise
        # The workflow fails either way: replay the chunk row by row to name the record.
        dialect.execute(conn, "ROLLBACK TO SAVEPOINT dataflow_chunk")
        for row, index in zip(rows, indexes):
            try:
                write([row])
            except Exception as one:
                mapped_one = dialect.map_error(one)
                if mapped_one is None:
                    raise
                raise type(mapped_one)(f"records[{index}]: {mapped_one}", dialect=dialect.name) from one
        raise type(mapped)(f"records[{indexes[0]}..{indexes[-1]}]: {mapped}", dialect=dialect.name) from exc
    dialect.execute(conn, "RELEASE SAVEPOINT dataflow_chunk")
    return n


def _write_isolating(
    nt: NodeType, conn: Any, write: Callable[[list[list[Any]]], int], rows: list[list[Any]], indexes: list[int]
) -> tuple[int, list[dict[str, Any]]]:
    """Write ``rows`` under a savepoint; on failure bisect to isolate the bad ones."""
    table = nt.table
    assert table is not None
    dialect = table.dialect
    dialect.execute(conn, "SAVEPOINT dataflow_chunk")
    try:
        n = write(rows)
    except Exception as exc:
        if dialect.map_error(exc) is None or dialect.is_disconnect(exc):
            raise
        dialect.execute(conn, "ROLLBACK TO SAVEPOINT dataflow_chunk")
        dialect.execute(conn, "RELEASE SAVEPOINT dataflow_chunk")
        if len(rows) == 1:
            return 0, [{"index": indexes[0], "error": str(dialect.map_error(exc))}]
        mid = len(rows) // 2
        n1, e1 = _write_isolating(nt, conn, write, rows[:mid], indexes[:mid])
        n2, e2 = _write_isolating(nt, conn, write, rows[mid:], indexes[mid:])
        return n1 + n2, e1 + e2
    dialect.execute(conn, "RELEASE SAVEPOINT dataflow_chunk")
    return n, []


# -- BulkUpdate -------------------------------------------------------------------

_UPDATE_KEYS = frozenset({"filter", "fields", "records", "chunk_size", "confirmed"})


class BulkUpdateArgs(NamedTuple):
    filter: Any
    fields: dict[str, Any]
    records: Any
    chunk_size: int
    context: NodeContext


def prepare_bulk_update(nt: NodeType, ctx: NodeContext, params: dict[str, Any], partial: bool) -> BulkUpdateArgs:
    params = _aliases(ctx, params)
    check_keys(ctx, params, _UPDATE_KEYS)
    chunk = check_count(ctx, params, "chunk_size", 1) or DEFAULT_CHUNK
    confirmed = check_bool(ctx, params, "confirmed", False)
    if "records" in params:
        if "filter" in params or "fields" in params:
            raise ctx.error("give either 'records' or 'filter' + 'fields', not both")
        return BulkUpdateArgs(None, {}, _records(ctx, params, partial), chunk, ctx)
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
    return BulkUpdateArgs(flt, fields, None, chunk, ctx)


def run_bulk_update(nt: NodeType, rc: RunContext, args: BulkUpdateArgs) -> dict[str, Any]:
    table = nt.table
    assert table is not None
    now = datetime.now(timezone.utc)
    if args.records is None:
        fields = {**args.fields, "updated_at": now}
        names = tuple(fields)
        expected = version_precheck(table, rc.conn, args.filter, rc.tenant)
        where, params = table.scoped_where(args.filter, rc.tenant)
        cursor = table.dialect.execute(rc.conn, table.update_sql(names) + where, table.bind_fields(names, list(fields.values())) + params)
        version_postcheck(table, expected, cursor.rowcount)
        return {"updated": cursor.rowcount}
    updated = 0
    base = 0
    q, ph = table.q, table.ph
    id_where, scope = table.scoped_condition(f"{q('id')} = {ph}", rc.tenant)
    locked_where, _ = table.scoped_condition(f"{q('id')} = {ph} AND {q('version')} = {ph}", rc.tenant)
    for chunk in _chunks(args.records, args.chunk_size):
        groups: dict[tuple[tuple[str, ...], bool], list[list[Any]]] = {}
        locks: list[tuple[Any, Any]] = []
        for offset, record in enumerate(chunk):
            prefix = f"records[{base + offset}]: "
            if not isinstance(record, dict) or "id" not in record:
                raise args.context.error(f"{prefix}each record needs an 'id'")
            rest = dict(record)
            rec_id = rest.pop("id")
            # next to 'id', a versioned model's 'version' is the version the record expects (a lock)
            locked = table.versioned and "version" in rest
            version = rest.pop("version") if locked else None
            values = validate_fields(nt, args.context, rest, create=False, prefix=prefix)
            if not values:
                raise args.context.error(f"{prefix}nothing to update besides 'id'")
            values["updated_at"] = now
            names = tuple(values)
            try:
                key = [table.bind_value("id", rec_id)]
                if locked:
                    key.append(table.bind_value("version", version))
                    locks.append((key[0], key[1]))
            except FilterError as exc:
                raise args.context.error(f"{prefix}{exc}", field=exc.field, name_field=False) from None
            groups.setdefault((names, locked), []).append(table.bind_fields(names, list(values.values())) + scope + key)
        base += len(chunk)
        expected = records_version_check(table, rc.conn, rc.tenant, locks) if locks else None
        locked_updated = 0
        for (names, locked), rows in groups.items():
            n = table.dialect.executemany(rc.conn, table.update_sql(names) + (locked_where if locked else id_where), rows)
            updated += n
            locked_updated += n if locked else 0
        version_postcheck(table, expected, locked_updated)
    return {"updated": updated}


# -- BulkDelete -------------------------------------------------------------------

_DELETE_KEYS = frozenset({"filter", "confirmed"})


def prepare_bulk_delete(nt: NodeType, ctx: NodeContext, params: dict[str, Any], partial: bool) -> dict[str, Any]:
    check_keys(ctx, params, _DELETE_KEYS)
    flt = params.get("filter", {})
    if not isinstance(flt, dict):
        raise ctx.error("'filter' must be a dict", field="filter", name_field=False)
    check_filter(nt, ctx, flt)
    if not partial and not flt and not check_bool(ctx, params, "confirmed", False):
        raise ctx.error("an empty filter would delete every row; pass 'confirmed': True to mean it")
    return flt


def run_bulk_delete(nt: NodeType, rc: RunContext, flt: dict[str, Any]) -> dict[str, Any]:
    table = nt.table
    assert table is not None
    sql, params = table.delete_statement(flt, rc.tenant, datetime.now(timezone.utc))  # soft: sets deleted_at
    return {"deleted": table.dialect.execute(rc.conn, sql, params).rowcount}


# -- BulkUpsert -------------------------------------------------------------------

_UPSERT_KEYS = frozenset({"records", "conflict_on", "update_fields", "chunk_size"})


class BulkUpsertArgs(NamedTuple):
    records: Any
    conflict_on: tuple[str, ...]
    update_fields: tuple[str, ...] | None
    chunk_size: int
    context: NodeContext


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
                          check_count(ctx, params, "chunk_size", 1) or DEFAULT_CHUNK, ctx)


def run_bulk_upsert(nt: NodeType, rc: RunContext, args: BulkUpsertArgs) -> dict[str, Any]:
    table, model = nt.table, nt.model
    assert table is not None and model is not None
    dialect, conn = table.dialect, rc.conn
    key_pos = [table.insert_columns.index(c) for c in args.conflict_on if c in table.insert_columns]
    inserted = updated = 0
    seen: set[tuple[Any, ...]] = set()
    base = 0
    now = datetime.now(timezone.utc)
    for chunk in _chunks(args.records, args.chunk_size):
        rows = [_validated_row(nt, args.context, r, base + i, now, rc.tenant) for i, r in enumerate(chunk)]
        given = [set(r) for r in chunk]
        base += len(chunk)
        if len(key_pos) != len(args.conflict_on):  # auto id not supplied: plain inserts
            raise args.context.error(f"each record must give the conflict key {list(args.conflict_on)}")
        update = args.update_fields
        if update is None:
            update = tuple(c for c in model.settable if c not in args.conflict_on and all(c in g for g in given))
        if model.managed_options:
            # tenant, soft delete and version need the scoped upsert (nodes/_managed.py)
            ins, upd = upsert_rows(table, conn, rc.tenant, rows, args.conflict_on, upsert_update_columns(table, update))
            inserted += ins
            updated += upd
            continue
        keys = [tuple(row[p] for p in key_pos) for row in rows]
        existing = _existing_keys(table, conn, args.conflict_on, [k for k in keys if k not in seen])
        for key in keys:
            if key in seen or key in existing:
                updated += 1
            else:
                inserted += 1
            seen.add(key)
        update = update + ("updated_at",)
        sql = dialect.upsert_sql(model, table.insert_columns, args.conflict_on, update)
        dialect.executemany(conn, sql, rows)
    return {"inserted": inserted, "updated": updated}


def _existing_keys(table: Any, conn: Any, cols: tuple[str, ...], keys: list[tuple[Any, ...]]) -> set[tuple[Any, ...]]:
    if not keys:
        return set()
    found: set[tuple[Any, ...]] = set()
    select = ", ".join(table.q(c) for c in cols)
    for start in range(0, len(keys), 500):
        part = keys[start:start + 500]
        if len(cols) == 1:
            cond = f"{table.q(cols[0])} IN ({', '.join(table.ph for _ in part)})"
            params = [k[0] for k in part]
        else:
            one = "(" + " AND ".join(f"{table.q(c)} = {table.ph}" for c in cols) + ")"
            cond = " OR ".join(one for _ in part)
            params = [v for k in part for v in k]
        rows = table.dialect.execute(conn, f"SELECT {select} FROM {table.table} WHERE {cond}", params).fetchall()
        found.update(tuple(r) for r in rows)
    return found

