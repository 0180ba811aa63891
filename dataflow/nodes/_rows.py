"""Records → bound insert rows, a chunk at a time, at the speed of a dict lookup.

Validating a record through pydantic costs about 1.8 µs here; at 100,000
rows that is more than the raw COPY it precedes. Almost every record of a bulk
job is a plain dict whose values already have exactly the declared Python
types, and for those pydantic's strict validation returns the values
unchanged. So each model gets a generated function that checks exactly that
(``type(v) is str``, no unknown key, no required key missing, ...) and
builds the bound row in the same pass. Any record it is not sure about goes
through pydantic, so strictness and error messages are pydantic's own: the
fast path only ever accepts records pydantic would accept unchanged.
``tests/bulk/test_rows.py`` checks both paths agree.

The types the fast path passes through unchanged (pydantic returns the very
same value): ``str``, ``int`` (not ``bool``), ``float``, ``bool``, ``bytes``
(strict), ``datetime``, ``date`` (exactly, not a ``datetime``), a finite
``Decimal``, a ``dict`` with ``str`` keys, a ``list``; ``None`` for an
``Optional`` field.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, NamedTuple

from ..errors import NodeParameterError
from ._common import validate_fields

if TYPE_CHECKING:
    from ..sql import CompiledModel
    from ._spec import NodeContext

__all__ = ["Prepared", "RowBuilder", "row_builder"]

_MISSING = object()
#: declared type → the check (on ``v``) that pydantic would return it unchanged
_EXACT = {
    str: "type({v}) is str",
    int: "type({v}) is int",
    float: "type({v}) is float",
    bool: "type({v}) is bool",
    bytes: "type({v}) is bytes",
    datetime: "type({v}) is datetime",
    date: "type({v}) is date",
    Decimal: "(type({v}) is Decimal and {v}.is_finite())",
    dict: "(type({v}) is dict and all(type(k) is str for k in {v}))",
    list: "type({v}) is list",
}


class Prepared(NamedTuple):
    """One chunk, validated: rows bound for the driver, in the records' order."""

    #: bound rows in ``insert_columns`` order, one per good record
    rows: list[tuple[Any, ...]]
    #: the source index of each row (a ``range`` when no record failed)
    indexes: Sequence[int]
    #: records that failed validation: ``{"index", "error"}`` (only with ``collect``)
    errors: list[dict[str, Any]]
    #: declared fields present in every good record of the chunk
    given: frozenset[str]


class RowBuilder:
    """Turns records into bound insert rows for one model on one dialect."""

    def __init__(self, table: CompiledModel) -> None:
        self.table = table
        self.model = table.model
        self._fast, self._optional = _compile(table)

    def prepare(self, ctx: NodeContext, records: list[Any], start: int, now: datetime, tenant: str | None,
                *, collect: bool) -> Prepared:
        """Validate ``records`` (source indexes from ``start``) and bind their rows.

        A bad record raises :class:`NodeParameterError` naming ``records[i]``
        and the field, unless ``collect``: then it is left out and reported in
        ``errors``.
        """
        table = self.table
        now_b = table.binders["created_at"](now) if "created_at" in table.binders else now
        if table.multi_tenant:
            table.managed_insert({}, tenant, now)  # raises TenantRequiredError without a tenant
        rows, slow, missing = self._fast(records, now_b, tenant)
        given = frozenset(self.model.settable) - missing
        if not slow:
            return Prepared(rows, range(start, start + len(rows)), [], given)
        errors: list[dict[str, Any]] = []
        failed: set[int] = set()
        for pos in slow:
            index = start + pos
            try:
                rows[pos] = self._slow(ctx, records[pos], index, now, tenant)
            except NodeParameterError as exc:
                if not collect:
                    raise
                errors.append({"index": index, "error": str(exc)})
                failed.add(pos)
                continue
            record = records[pos]
            given = given.intersection(record)
        if not failed:
            return Prepared(rows, range(start, start + len(rows)), errors, given)
        keep = [p for p in range(len(rows)) if p not in failed]
        return Prepared([rows[p] for p in keep], [start + p for p in keep], errors, given)

    def _slow(self, ctx: NodeContext, record: Any, index: int, now: datetime, tenant: str | None) -> tuple[Any, ...]:
        """One record through pydantic: the reference behaviour, and every error message."""
        table, model = self.table, self.model
        values = validate_fields_for(table, ctx, record, index)
        for name, spec in model.defaults:
            if name not in values:
                values[name] = spec.make_default()
        table.managed_insert(values, tenant, now)
        return tuple(table.bind_row([values[c] for c in table.insert_columns]))


def validate_fields_for(table: CompiledModel, ctx: NodeContext, record: Any, index: int) -> dict[str, Any]:
    """pydantic validation of one create record, errors prefixed ``records[index]: ``."""
    return validate_fields(_Shim(table), ctx, record, create=True, prefix=f"records[{index}]: ")  # type: ignore[arg-type]


class _Shim:
    """The two attributes :func:`validate_fields` reads from a NodeType."""

    __slots__ = ("model", "table")

    def __init__(self, table: CompiledModel) -> None:
        self.table = table
        self.model = table.model


_builders: weakref.WeakKeyDictionary[CompiledModel, RowBuilder] = weakref.WeakKeyDictionary()


def row_builder(table: CompiledModel) -> RowBuilder:
    """The (cached) builder for ``table``."""
    builder = _builders.get(table)
    if builder is None:
        builder = _builders[table] = RowBuilder(table)
    return builder


def _compile(table: CompiledModel) -> tuple[Callable[..., Any], tuple[str, ...]]:
    """Generate ``fast(records, now, tenant) -> (rows, slow positions, fields missing somewhere)``.

    Two lanes: a record that has every field (the common case) is read with
    plain subscripts and one combined type check; one that leaves defaulted
    fields out goes field by field. A record the fast path is not sure about
    gets ``None`` in ``rows`` and its position in ``slow``.
    """
    model = table.model
    env: dict[str, Any] = {"_M": _MISSING, "Decimal": Decimal, "datetime": datetime, "date": date}
    names = model.settable
    var = {name: f"v{i}" for i, name in enumerate(names)}
    optional = [n for n in names if model.fields[n].has_default]
    fail = "slow_append(pos); append(None); continue"

    def check(name: str) -> str:
        spec = model.fields[name]
        test = _EXACT[spec.type].format(v=var[name])
        return f"({var[name]} is None or {test})" if spec.nullable else test

    full = [  # lane 1: every field given
        f"        if len(r) == {len(names)}:",
        "            try:",
        *[f"                {var[n]} = r[{n!r}]" for n in names],
        "            except KeyError:",
        f"                {fail}",
        f"            if not ({' and '.join(check(n) for n in names) or 'True'}):",
        f"                {fail}",
        "        else:",
        "            get = r.get",
        "            absent = 0",
    ]
    for name in names:  # lane 2: field by field, defaults for what is left out
        spec = model.fields[name]
        v = var[name]
        full.append(f"            {v} = get({name!r}, _M)")
        if name not in optional:
            full += [f"            if not {check(name)}:", f"                {fail}"]
            continue
        full += [f"            if {v} is _M:", f"                m_{v} = True", "                absent += 1"]
        if isinstance(spec.default, (dict, list)):
            env[f"D_{v}"] = spec.make_default
            full.append(f"                {v} = D_{v}()")
        else:
            env[f"D_{v}"] = spec.default
            full.append(f"                {v} = D_{v}")
        full += [f"            elif not {check(name)}:", f"                {fail}"]
    full += [f"            if len(r) + absent != {len(names)}:  # an unknown key", f"                {fail}"]
    parts = []
    for col in table.insert_columns:
        if col in var:
            v = var[col]
            conv = table.binders.get(col)
            if conv is None:
                parts.append(v)
            else:
                env[f"B_{v}"] = conv
                parts.append(f"(B_{v}({v}) if {v} is not None else None)" if model.fields[col].nullable
                             else f"B_{v}({v})")
        elif col in ("created_at", "updated_at"):
            parts.append("now")
        elif col == "version":
            parts.append("1")
        elif col == "deleted_at":
            parts.append("None")
        elif col == "tenant_id":
            parts.append("tenant")
        else:  # pragma: no cover - a managed column this builder does not know
            raise AssertionError(f"no fast-path value for column {col!r}")
    flags = [f"m_{var[n]}" for n in optional]
    src = [
        "def fast(records, now, tenant):",
        "    rows = []",
        "    append = rows.append",
        "    slow = []",
        "    slow_append = slow.append",
        *[f"    {f} = False" for f in flags],
        "    for pos, r in enumerate(records):",
        "        if type(r) is not dict:",
        f"            {fail}",
        *full,
        f"        append(({', '.join(parts)},))",
        "    missing = set()",
        *[f"    if {f}: missing.add({n!r})" for f, n in zip(flags, optional)],
        "    return rows, slow, missing",
    ]
    exec(compile("\n".join(src), f"<dataflow rows {model.name}>", "exec"), env)  # noqa: S102 - our own generated code
    return env["fast"], tuple(optional)
