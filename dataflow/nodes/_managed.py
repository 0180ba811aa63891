"""What the model options need at run time, shared by every node and bulk path.

- ``versioned``: optimistic locks (:func:`version_precheck`, :func:`version_postcheck`,
  :func:`records_version_check`);
- every option: the upsert that never crosses a tenant, revives a soft-deleted
  row and bumps the version (:func:`upsert_rows`), and the tenant-scoped lookup
  of which keys already exist (:func:`own_keys`).

The SQL text itself (the scope every statement carries, the version bump in
every UPDATE, the managed values of a new row) comes from
:class:`~dataflow.sql.CompiledModel`, so a new write path gets it by using the
compiler's statements. See ``docs/safety.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import VersionConflictError
from ..sql import compile_filter

if TYPE_CHECKING:
    from ..sql import CompiledModel

__all__ = ["own_keys", "records_version_check", "upsert_rows", "upsert_update_columns", "version_postcheck",
           "version_precheck"]


def _conflict(table: CompiledModel, stale: int) -> VersionConflictError:
    return VersionConflictError(
        f"model {table.model.name}: the version named in the filter is no longer current for {stale} row(s) "
        "(another update got there first); nothing was updated",
        model=table.model.name, stale=stale,
    )


def version_precheck(table: CompiledModel, conn: Any, flt: Any, tenant: str | None) -> int | None:
    """For an update whose filter names ``version``: how many rows it should update.

    Rows that match everything in the filter but the version are stale: raise
    :class:`VersionConflictError` before anything is written. None when the
    filter names no version (or the model is not versioned).
    """
    rest = table.version_lock(flt)
    if rest is None:
        return None
    version_sql, version_params = compile_filter(table, {"version": flt["version"]})
    where, params = table.scoped_where(rest, tenant)
    sql = f"SELECT COUNT(*), SUM(CASE WHEN {version_sql} THEN 1 ELSE 0 END) FROM {table.table}{where}"
    total, current = table.dialect.execute(conn, sql, version_params + params).fetchone()
    total, current = int(total or 0), int(current or 0)
    if total > current:
        raise _conflict(table, total - current)
    return current


def version_postcheck(table: CompiledModel, expected: int | None, updated: int) -> None:
    """An update that matched fewer rows than :func:`version_precheck` counted lost a race: conflict.

    (Its transaction rolls back, so what it did write is undone.)
    """
    if expected is not None and updated < expected:
        raise _conflict(table, expected - updated)


def records_version_check(
    table: CompiledModel, conn: Any, tenant: str | None, locks: Sequence[tuple[Any, Any]]
) -> int:
    """BulkUpdate records that carry ``version``: raise if any names a stale one.

    ``locks`` are ``(id, version)`` pairs; returns how many of them name an
    existing row (each of those must then be updated, see :func:`version_postcheck`).
    """
    ids = list(dict.fromkeys(i for i, _ in locks))
    current: dict[Any, Any] = {}
    q, ph = table.q, table.ph
    for start in range(0, len(ids), 500):
        part = ids[start:start + 500]
        where, params = table.scoped_condition(f"{q('id')} IN ({', '.join(ph for _ in part)})", tenant)
        sql = f"SELECT {q('id')}, {q('version')} FROM {table.table}{where}"
        current.update((r[0], r[1]) for r in table.dialect.execute(conn, sql, params + part).fetchall())
    stale = sum(1 for i, v in locks if i in current and current[i] != v)
    if stale:
        raise _conflict(table, stale)
    return sum(1 for i, _ in locks if i in current)


def own_keys(
    table: CompiledModel, conn: Any, cols: Sequence[str], keys: Sequence[tuple[Any, ...]], tenant: str | None
) -> set[tuple[Any, ...]]:
    """Which of ``keys`` (bound values of ``cols``) name a row of this tenant (soft-deleted ones included)."""
    found: set[tuple[Any, ...]] = set()
    if not keys:
        return found
    q, ph = table.q, table.ph
    select = ", ".join(q(c) for c in cols)
    for start in range(0, len(keys), 500):
        part = keys[start:start + 500]
        if len(cols) == 1:
            cond = f"{q(cols[0])} IN ({', '.join(ph for _ in part)})"
            key_params = [k[0] for k in part]
        else:
            one = "(" + " AND ".join(f"{q(c)} = {ph}" for c in cols) + ")"
            cond = "(" + " OR ".join(one for _ in part) + ")"
            key_params = [v for k in part for v in k]
        where, params = table.scoped_condition(cond, tenant, include_deleted=True)
        rows = table.dialect.execute(conn, f"SELECT {select} FROM {table.table}{where}", params + key_params).fetchall()
        found.update(tuple(r) for r in rows)
    return found


def upsert_update_columns(table: CompiledModel, given: Sequence[str]) -> tuple[str, ...]:
    """The columns an upsert-update sets: ``given`` fields, ``updated_at``, and ``deleted_at`` (revive).

    ``version`` grows in the UPDATE itself; ``tenant_id``, ``id`` and
    ``created_at`` never change.
    """
    settable = set(table.model.settable)
    cols = [c for c in given if c in settable and c != "id"]
    cols.append("updated_at")
    if table.soft_delete:
        cols.append("deleted_at")
    return tuple(dict.fromkeys(cols))


def upsert_rows(
    table: CompiledModel, conn: Any, tenant: str | None, rows: Sequence[Sequence[Any]],
    key: Sequence[str], update: Sequence[str],
) -> tuple[int, int]:
    """Insert ``rows`` (bound, in ``insert_columns`` order), updating those whose ``key`` this tenant has.

    The upsert of a model with managed columns, on every backend: one scoped
    lookup of the keys, one UPDATE that carries the tenant (so a row of
    another tenant is never touched or re-parented; a soft-deleted row of this
    tenant is revived, a versioned one gets ``version + 1``), one plain INSERT
    for the rest. A key that belongs to another tenant reaches the INSERT and
    fails on the database's unique constraint. Returns ``(inserted, updated)``
    as counted by the database.
    """
    cols = table.insert_columns
    key_pos = [cols.index(c) for c in key]
    upd_pos = [cols.index(c) for c in update]
    keys = [tuple(row[p] for p in key_pos) for row in rows]
    existing = own_keys(table, conn, key, list(dict.fromkeys(keys)), tenant)
    q, ph = table.q, table.ph
    where, scope_params = table.scoped_condition(
        " AND ".join(f"{q(c)} = {ph}" for c in key), tenant, include_deleted=True
    )
    inserts: list[Sequence[Any]] = []
    updates: list[list[Any]] = []
    for row, k in zip(rows, keys):
        if k in existing:
            updates.append([row[p] for p in upd_pos] + scope_params + list(k))
        else:
            inserts.append(row)
            existing.add(k)  # a later record with the same key updates this one
    dialect = table.dialect
    inserted = dialect.executemany(conn, table.insert_sql.split(" RETURNING ")[0], inserts) if inserts else 0
    updated = dialect.executemany(conn, table.update_sql(tuple(update)) + where, updates) if updates else 0
    return inserted, updated
