"""The five single-record operations: prepare (check parameters) and run."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, NamedTuple

from pydantic import ValidationError

from ..errors import NotFoundError
from ..sql import FilterError
from ._common import check_bool, check_count, check_filter, check_keys, validate_fields
from ._managed import version_postcheck, version_precheck
from ._spec import NodeContext, NodeType, RunContext

__all__ = [
    "prepare_create", "prepare_delete", "prepare_list", "prepare_read", "prepare_update",
    "run_create", "run_delete", "run_list", "run_read", "run_update",
]

_utc = timezone.utc


def _now() -> datetime:
    return datetime.now(_utc)


# -- Create ---------------------------------------------------------------------


def prepare_create(nt: NodeType, ctx: NodeContext, params: dict[str, Any], partial: bool) -> dict[str, Any]:
    return validate_fields(nt, ctx, params, create=not partial)


def run_create(nt: NodeType, rc: RunContext, values: dict[str, Any]) -> dict[str, Any]:
    model, table = nt.model, nt.table
    assert model is not None and table is not None
    values = dict(values)  # the prepared dict may be reused by the next run
    for name, spec in model.defaults:
        if name not in values:
            values[name] = spec.make_default()
    table.managed_insert(values, rc.tenant, _now())
    row = table.bind_row([values[c] for c in table.insert_columns])
    cursor = table.dialect.execute(rc.conn, table.insert_sql, row)
    if model.primary_key.auto:
        new_id = cursor.fetchone()[0] if table.dialect.insert_returning else cursor.lastrowid
        return {"id": new_id, **values}
    return {"id": values.pop("id"), **values}


# -- Read -----------------------------------------------------------------------

_READ_KEYS = frozenset({"id", "raise_on_not_found", "include_deleted"})


class ReadArgs(NamedTuple):
    id: Any
    raise_on_not_found: bool
    include_deleted: bool = False


def prepare_read(nt: NodeType, ctx: NodeContext, params: dict[str, Any], partial: bool) -> ReadArgs:
    check_keys(ctx, params, _READ_KEYS)
    include_deleted = check_bool(ctx, params, "include_deleted", False)
    raising = check_bool(ctx, params, "raise_on_not_found", True)
    return ReadArgs(_check_id(nt, ctx, params, partial), raising, include_deleted)


def _check_id(nt: NodeType, ctx: NodeContext, params: dict[str, Any], partial: bool) -> Any:
    assert nt.model is not None
    if "id" not in params:
        if partial:
            return None
        raise ctx.missing("id")
    try:
        return nt.model.value_adapters["id"].validate_python(params["id"])
    except ValidationError as exc:
        raise ctx.error(exc.errors()[0]["msg"], field="id") from None


def run_read(nt: NodeType, rc: RunContext, args: ReadArgs) -> dict[str, Any]:
    table = nt.table
    assert table is not None
    sql, params = table.read_statement(args.id, rc.tenant, args.include_deleted)
    row = table.dialect.execute(rc.conn, sql, params).fetchone()
    if row is None:
        if args.raise_on_not_found:
            raise NotFoundError(f"{nt.name}: no {table.model.name} with id {args.id!r}")
        return {"found": False}
    return table.row_to_dict(row)


# -- Update ---------------------------------------------------------------------

_UPDATE_KEYS = frozenset({"filter", "fields"})


class UpdateArgs(NamedTuple):
    filter: dict[str, Any]
    fields: dict[str, Any]


def prepare_update(nt: NodeType, ctx: NodeContext, params: dict[str, Any], partial: bool) -> UpdateArgs:
    if "filter" in params or "fields" in params:
        check_keys(ctx, params, _UPDATE_KEYS)
        flt = params.get("filter", {})
        fields = validate_fields(nt, ctx, params.get("fields", {}), create=False, prefix="fields: ")
    else:  # the flat form: id plus field values
        rest = dict(params)
        flt = {"id": rest.pop("id")} if "id" in rest else {}
        fields = validate_fields(nt, ctx, rest, create=False)
    if not isinstance(flt, dict):
        raise ctx.error("'filter' must be a dict", field="filter", name_field=False)
    check_filter(nt, ctx, flt)
    if not partial:
        if not flt:
            raise ctx.error("an update needs a filter (or 'id'); to change every row use the BulkUpdateNode with 'confirmed': True")
        if not fields:
            raise ctx.error("nothing to update: give 'fields' (or field values with 'id')")
    return UpdateArgs(flt, fields)


def run_update(nt: NodeType, rc: RunContext, args: UpdateArgs) -> dict[str, Any]:
    table = nt.table
    assert table is not None
    dialect = table.dialect
    fields = dict(args.fields)
    fields["updated_at"] = _now()
    names = tuple(fields)
    expected = version_precheck(table, rc.conn, args.filter, rc.tenant)
    where, params = table.scoped_where(args.filter, rc.tenant)
    values = table.bind_fields(names, list(fields.values())) + params
    sql = table.update_sql(names) + where
    if dialect.update_returning:
        rows = dialect.execute(rc.conn, sql + f" RETURNING {table.select_list}", values).fetchall()
        n = len(rows)
        record = table.row_to_dict(rows[0]) if n == 1 else None
    elif _by_id(args.filter):
        # At most one row, whose id is known: no need to look the ids up first.
        # The count is of rows matched (MySQL runs with FOUND_ROWS), changed or not.
        n = dialect.execute(rc.conn, sql, values).rowcount
        record = None
        if n == 1:
            pk = table.bind_value("id", args.filter["id"])
            row = dialect.execute(rc.conn, *table.read_statement(pk, rc.tenant)).fetchone()
            record = table.row_to_dict(row) if row is not None else None
    else:
        ids = [r[0] for r in dialect.execute(rc.conn, f"SELECT {table.q('id')} FROM {table.table}{where}{dialect.for_update}", params).fetchall()]
        n = 0
        if ids:
            marks = ", ".join(table.ph for _ in ids)
            id_where, scope = table.scoped_condition(f"{table.q('id')} IN ({marks})", rc.tenant)
            dialect.execute(rc.conn, table.update_sql(names) + id_where,
                            table.bind_fields(names, list(fields.values())) + scope + ids)
            n = len(ids)  # the rows were locked by the SELECT; each one is updated
        record = None
        if len(ids) == 1:
            row = dialect.execute(rc.conn, *table.read_statement(ids[0], rc.tenant)).fetchone()
            record = table.row_to_dict(row) if row is not None else None
    version_postcheck(table, expected, n)
    return {"rows_affected": n, "updated": n > 0, "record": record}


def _by_id(flt: dict[str, Any]) -> bool:
    """The filter is ``{"id": <one value>}``: it matches at most one row."""
    return len(flt) == 1 and "id" in flt and not isinstance(flt["id"], (dict, list, tuple, set))


# -- Delete ---------------------------------------------------------------------

_DELETE_KEYS = frozenset({"id", "filter"})


def prepare_delete(nt: NodeType, ctx: NodeContext, params: dict[str, Any], partial: bool) -> dict[str, Any]:
    check_keys(ctx, params, _DELETE_KEYS)
    if "id" in params and "filter" in params:
        raise ctx.error("give either 'id' or 'filter', not both")
    if "id" in params:
        flt = {"id": _check_id(nt, ctx, params, partial)}
    else:
        flt = params.get("filter", {})
        if not isinstance(flt, dict):
            raise ctx.error("'filter' must be a dict", field="filter", name_field=False)
    check_filter(nt, ctx, flt)
    if not partial and not flt:
        raise ctx.error("a delete needs 'id' or a filter; to delete every row use the BulkDeleteNode with 'confirmed': True")
    return flt


def run_delete(nt: NodeType, rc: RunContext, flt: dict[str, Any]) -> dict[str, Any]:
    table = nt.table
    assert table is not None
    sql, params = table.delete_statement(flt, rc.tenant, _now())  # soft: sets deleted_at
    n = table.dialect.execute(rc.conn, sql, params).rowcount
    return {"deleted": n > 0, "rows_affected": n}


# -- List -----------------------------------------------------------------------

_LIST_KEYS = frozenset({"filter", "order_by", "limit", "offset", "fields", "include_deleted", "count_only"})


class ListArgs(NamedTuple):
    filter: Any
    order_by: Any
    limit: int | None
    offset: int | None
    fields: Any
    count_only: bool
    include_deleted: bool = False


def prepare_list(nt: NodeType, ctx: NodeContext, params: dict[str, Any], partial: bool) -> ListArgs:
    check_keys(ctx, params, _LIST_KEYS)
    table = nt.table
    assert table is not None
    flt = params.get("filter") or {}
    if not isinstance(flt, dict):
        raise ctx.error("'filter' must be a dict", field="filter", name_field=False)
    check_filter(nt, ctx, flt)
    try:
        table.order_by(params.get("order_by"))
        table.projection(params.get("fields"))
    except FilterError as exc:
        raise ctx.from_filter(exc) from None
    return ListArgs(
        flt, params.get("order_by"), check_count(ctx, params, "limit"), check_count(ctx, params, "offset"),
        params.get("fields"), check_bool(ctx, params, "count_only", False),
        check_bool(ctx, params, "include_deleted", False),
    )


def run_list(nt: NodeType, rc: RunContext, args: ListArgs) -> dict[str, Any]:
    table = nt.table
    assert table is not None
    where, params = table.scoped_where(args.filter, rc.tenant, args.include_deleted)
    if args.count_only:
        sql = f"SELECT COUNT(*) FROM {table.table}{where}"
        return {"count": table.dialect.execute(rc.conn, sql, params).fetchone()[0]}
    select_list, columns = table.projection(args.fields)
    sql = table.select_sql(select_list, where, table.order_by(args.order_by), args.limit, args.offset)
    rows = table.dialect.execute(rc.conn, sql, params).fetchall()
    records = table.rows_to_dicts(rows, columns)
    return {"records": records, "count": len(records)}
