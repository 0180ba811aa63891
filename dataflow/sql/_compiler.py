"""One model on one dialect: its statements, compiled once and cached, and
the converters between Python values and what the driver binds/returns."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ._filters import FilterError, check_value, compile_filter

if TYPE_CHECKING:
    from .._models import ModelSpec
    from ..dialects.base import Converter, Dialect

__all__ = ["CompiledModel"]


class CompiledModel:
    """Statements and converters of ``model`` for ``dialect``."""

    def __init__(self, model: ModelSpec, dialect: Dialect) -> None:
        self.model = model
        self.dialect = dialect
        self.ph = dialect.placeholder
        q = self.q
        self.table = q(model.table)
        self.columns = tuple(model.fields)
        self.insert_columns = tuple(n for n, f in model.fields.items() if not f.auto)
        self.binders: dict[str, Converter] = {}
        self.readers: dict[str, Converter] = {}
        for name, spec in model.fields.items():
            bind = dialect.bind_converter(spec.type)
            if bind is not None:
                self.binders[name] = bind
            read = dialect.result_converter(spec.type)
            if read is not None:
                self.readers[name] = read
        self.insert_binders = tuple(
            (i, self.binders[c]) for i, c in enumerate(self.insert_columns) if c in self.binders
        )
        self.select_list = ", ".join(q(c) for c in self.columns)
        cols = ", ".join(q(c) for c in self.insert_columns)
        marks = ", ".join(self.ph for _ in self.insert_columns)
        self.insert_sql = f"INSERT INTO {self.table} ({cols}) VALUES ({marks})"
        #: the INSERT without RETURNING, for many rows at once
        self.plain_insert_sql = self.insert_sql
        if dialect.insert_returning:
            self.insert_sql += f" RETURNING {q('id')}"
        self.select_by_id_sql = f"SELECT {self.select_list} FROM {self.table} WHERE {q('id')} = {self.ph}"
        self._update_sql: dict[tuple[str, ...], str] = {}
        # The managed columns of the model options (docs/safety.md).
        self.versioned = model.versioned
        self.soft_delete = model.soft_delete
        self.multi_tenant = model.multi_tenant
        self._version_bump = f", {q('version')} = {q('version')} + 1" if self.versioned else ""
        self._scoped_sql: dict[Any, str] = {}
        self._converters: dict[tuple[str, ...], Callable[[Sequence[Sequence[Any]]], list[dict[str, Any]]]] = {}

    def q(self, name: str) -> str:
        return self.dialect.quote(name)

    # -- values

    def bind_row(self, values: list[Any]) -> list[Any]:
        """Convert an insert row (in ``insert_columns`` order) in place for the driver."""
        for i, conv in self.insert_binders:
            v = values[i]
            if v is not None:
                values[i] = conv(v)
        return values

    def bind_value(self, name: str, value: Any) -> Any:
        """Validate one filter value against field ``name`` and convert it for the driver."""
        value = check_value(self, name, value)
        conv = self.binders.get(name)
        return conv(value) if conv is not None and value is not None else value

    def row_to_dict(self, row: Sequence[Any]) -> dict[str, Any]:
        """A full row (``columns`` order) as a dict of declared Python types."""
        return self._converter(self.columns)((row,))[0]

    def rows_to_dicts(self, rows: Sequence[Sequence[Any]], columns: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Rows of ``columns`` (default: every column) as dicts of declared types."""
        return self._converter(self.columns if columns is None else tuple(columns))(rows)

    def _converter(self, columns: tuple[str, ...]) -> Callable[[Sequence[Sequence[Any]]], list[dict[str, Any]]]:
        """A function turning rows of ``columns`` into dicts, generated once per column set.

        One list comprehension over a dict display is about twice as fast as
        ``dict(zip(...))`` plus a loop over converters, and List pays it per row.
        Column names are model identifiers (checked at registration) and enter
        the source only through ``repr``.
        """
        fn = self._converters.get(columns)
        if fn is None:
            env: dict[str, Any] = {}
            items = []
            for i, name in enumerate(columns):
                conv = self.readers.get(name)
                if conv is None:
                    items.append(f"{name!r}: r[{i}]")
                else:
                    # Even a required field can be NULL in a row older than its column.
                    env[f"c{i}"] = conv
                    items.append(f"{name!r}: None if r[{i}] is None else c{i}(r[{i}])")
            source = f"def convert(rows):\n    return [{{{', '.join(items)}}} for r in rows]\n"
            exec(compile(source, f"<rows of {self.model.name}>", "exec"), env)  # noqa: S102
            fn = self._converters[columns] = env["convert"]
        return fn

    # -- statements

    def where(self, flt: Any) -> tuple[str, list[Any]]:
        """`` WHERE …`` (with its leading space) and params; empty for no filter."""
        sql, params = compile_filter(self, flt)
        return (f" WHERE {sql}", params) if sql else ("", params)

    def update_sql(self, names: tuple[str, ...]) -> str:
        """``UPDATE t SET a = ?, b = ?`` for ``names`` (cached per field set).

        A versioned model's ``version`` grows by one in the same statement, so
        no update path can forget it.
        """
        sql = self._update_sql.get(names)
        if sql is None:
            sets = ", ".join(f"{self.q(n)} = {self.ph}" for n in names)
            sql = self._update_sql[names] = f"UPDATE {self.table} SET {sets}{self._version_bump}"
        return sql

    def set_from(self, names: Sequence[str], source: str, target: str | None = None) -> str:
        """The SET list of an UPDATE taking ``names`` from the joined table ``source``.

        ``"a" = source."a", …`` plus the version bump of a versioned model.
        ``target`` qualifies the columns set (MySQL's multi-table UPDATE needs
        it; PostgreSQL's ``UPDATE … FROM`` forbids it).
        """
        q = self.q
        t = f"{target}." if target else ""
        sets = [f"{t}{q(n)} = {source}.{q(n)}" for n in names]
        if self.versioned:
            sets.append(f"{t}{q('version')} = {t}{q('version')} + 1")
        return ", ".join(sets)

    # -- managed columns: tenant, soft delete, version

    def scope(self, tenant: str | None, include_deleted: bool = False) -> tuple[list[str], list[Any]]:
        """The conditions every statement on this model carries, and their params.

        A multi-tenant model's rows are only ever those of ``tenant`` (no tenant →
        :class:`~dataflow.errors.TenantRequiredError`); a soft-delete model hides
        deleted rows unless ``include_deleted``.
        """
        parts: list[str] = []
        params: list[Any] = []
        if self.multi_tenant:
            if tenant is None:
                from ..errors import TenantRequiredError

                raise TenantRequiredError(f"model {self.model.name} is multi-tenant and no tenant is bound")
            parts.append(f"{self.q('tenant_id')} = {self.ph}")
            params.append(tenant)
        if self.soft_delete and not include_deleted:
            parts.append(f"{self.q('deleted_at')} IS NULL")
        return parts, params

    def scoped_where(self, flt: Any, tenant: str | None, include_deleted: bool = False) -> tuple[str, list[Any]]:
        """`` WHERE <scope> AND (<filter>)`` and its params (empty when there is neither).

        The caller's filter sits in parentheses after the scope, so no ``$or``
        inside it can reach past the tenant or the soft-delete condition.
        """
        parts, params = self.scope(tenant, include_deleted)
        sql, flt_params = compile_filter(self, flt)
        if sql:
            parts.append(f"({sql})")
            params.extend(flt_params)
        return (" WHERE " + " AND ".join(parts), params) if parts else ("", params)

    def scoped_condition(self, condition: str, tenant: str | None, include_deleted: bool = False) -> tuple[str, list[Any]]:
        """`` WHERE <scope> AND <condition>``: the scope's params come first, the condition's after."""
        parts, params = self.scope(tenant, include_deleted)
        parts.append(condition)
        return " WHERE " + " AND ".join(parts), params

    def read_statement(self, id_value: Any, tenant: str | None, include_deleted: bool = False) -> tuple[str, list[Any]]:
        """``SELECT`` of the row with ``id_value`` within the scope (text cached per ``include_deleted``)."""
        key = ("read", include_deleted)
        sql = self._scoped_sql.get(key)
        parts, params = self.scope(tenant, include_deleted)
        if sql is None:
            parts.append(f"{self.q('id')} = {self.ph}")
            sql = self._scoped_sql[key] = f"SELECT {self.select_list} FROM {self.table} WHERE {' AND '.join(parts)}"
        params.append(id_value)
        return sql, params

    def managed_insert(self, values: dict[str, Any], tenant: str | None, now: Any) -> dict[str, Any]:
        """Fill the managed columns of a new row in ``values`` (in place) and return it."""
        values["created_at"] = values["updated_at"] = now
        if self.versioned:
            values["version"] = 1
        if self.soft_delete:
            values["deleted_at"] = None
        if self.multi_tenant:
            if tenant is None:
                from ..errors import TenantRequiredError

                raise TenantRequiredError(f"model {self.model.name} is multi-tenant and no tenant is bound")
            values["tenant_id"] = tenant
        return values

    def delete_statement(self, flt: Any, tenant: str | None, now: Any) -> tuple[str, list[Any]]:
        """The statement of Delete/BulkDelete: a soft-delete model's sets ``deleted_at`` instead."""
        where, params = self.scoped_where(flt, tenant)
        if not self.soft_delete:
            return f"DELETE FROM {self.table}{where}", params
        names = ("deleted_at", "updated_at")
        return self.update_sql(names) + where, self.bind_fields(names, [now, now]) + params

    def version_lock(self, flt: Any) -> dict[str, Any] | None:
        """For a versioned model whose filter names ``version`` at its top level: the filter without it.

        Rows matching that rest but not the version are stale: an update over
        them is a :class:`~dataflow.errors.VersionConflictError`.
        """
        if not self.versioned or not isinstance(flt, dict) or "version" not in flt:
            return None
        return {k: v for k, v in flt.items() if k != "version"}

    def bind_fields(self, names: Sequence[str], values: Sequence[Any]) -> list[Any]:
        out = list(values)
        for i, name in enumerate(names):
            conv = self.binders.get(name)
            if conv is not None and out[i] is not None:
                out[i] = conv(out[i])
        return out

    def order_by(self, spec: Any) -> str:
        """`` ORDER BY …`` from ``["-price", "name"]`` (or one string); fields checked."""
        if spec is None:
            return ""
        items = [spec] if isinstance(spec, str) else spec
        if not isinstance(items, (list, tuple)):
            raise FilterError("order_by takes a field name or a list of them")
        parts = []
        for item in items:
            if not isinstance(item, str) or not item:
                raise FilterError(f"order_by entries must be field names, got {item!r}")
            desc = item.startswith("-")
            name = item[1:] if desc or item.startswith("+") else item
            if name not in self.model.fields:
                raise FilterError(f"unknown field {name!r} in order_by", field=name)
            parts.append(f"{self.q(name)} DESC" if desc else self.q(name))
        return " ORDER BY " + ", ".join(parts) if parts else ""

    def projection(self, fields: Any) -> tuple[str, tuple[str, ...]]:
        """The select list and column names for a ``fields`` projection (None: all)."""
        if fields is None:
            return self.select_list, self.columns
        if isinstance(fields, str) or not isinstance(fields, (list, tuple)) or not fields:
            raise FilterError("fields takes a non-empty list of field names")
        for name in fields:
            if not isinstance(name, str) or name not in self.model.fields:
                raise FilterError(f"unknown field {name!r} in fields", field=name if isinstance(name, str) else None)
        cols = tuple(dict.fromkeys(fields))
        return ", ".join(self.q(c) for c in cols), cols

    def select_sql(self, select_list: str, where: str, order: str, limit: int | None, offset: int | None) -> str:
        sql = f"SELECT {select_list} FROM {self.table}{where}{order}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        if offset:
            if limit is None:
                sql += self.dialect.unbounded_limit
            sql += f" OFFSET {int(offset)}"
        return sql
