"""The filter language → a parameterised WHERE clause.

``{"price": {"$gte": 10}, "$or": [{"stock": 0}, {"name": {"$like": "A%"}}]}``
Implicit equality and implicit AND; ``None`` means IS NULL. ``$ne``, ``$nin``
and ``$not`` match the rows the positive condition does not, NULLs included
(a NULL is "not equal" to any value). Field names are
checked against the model and values against the field's type; nothing from
a filter is ever spliced into SQL text except quoted model identifiers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

if TYPE_CHECKING:
    from ._compiler import CompiledModel

__all__ = ["OPERATORS", "FilterError", "compile_filter"]

OPERATORS = frozenset(
    {"$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$like", "$ilike",
     "$regex", "$exists", "$not", "$and", "$or"}
)
_COMPARE = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_TEXT_OPS = {"$like", "$ilike", "$regex"}


class FilterError(Exception):
    """A filter names an unknown field or operator, or a value of the wrong type.

    ``field`` is the field at fault (or None); the node wraps this into a
    :class:`~dataflow.errors.NodeParameterError`.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def compile_filter(table: CompiledModel, flt: Any) -> tuple[str, list[Any]]:
    """Return ``(sql, params)`` for ``flt``; ``sql`` is ``""`` for an empty filter."""
    if flt is None:
        return "", []
    if not isinstance(flt, dict):
        raise FilterError(f"a filter must be a dict, got {type(flt).__name__}")
    params: list[Any] = []
    sql = _conjunction(table, flt, params)
    return sql, params


def _conjunction(table: CompiledModel, flt: dict[str, Any], params: list[Any]) -> str:
    parts: list[str] = []
    for key, value in flt.items():
        if not isinstance(key, str):
            raise FilterError(f"filter keys must be strings, got {key!r}")
        if key.startswith("$"):
            parts.append(_logical(table, key, value, params))
        else:
            parts.append(_field(table, key, value, params))
    return " AND ".join(parts)


def _logical(table: CompiledModel, op: str, value: Any, params: list[Any]) -> str:
    if op in ("$and", "$or"):
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, dict) for v in value):
            raise FilterError(f"{op} takes a list of filters")
        if not value:
            return "1=1" if op == "$and" else "1=0"
        joiner = " AND " if op == "$and" else " OR "
        subs = [_conjunction(table, v, params) or "1=1" for v in value]
        return "(" + joiner.join(f"({s})" for s in subs) + ")"
    if op == "$not":
        if not isinstance(value, dict):
            raise FilterError("$not at the top of a filter takes a filter")
        # "not true" rather than SQL's NOT: a row whose condition is unknown (NULL) matches
        return f"(({_conjunction(table, value, params) or '1=1'}) IS NOT TRUE)"
    raise FilterError(f"unknown filter operator {op!r}; known: {', '.join(sorted(OPERATORS))}")


def _field(table: CompiledModel, name: str, value: Any, params: list[Any]) -> str:
    if name not in table.model.fields:
        raise FilterError(f"unknown field {name!r} in filter", field=name)
    if name == "tenant_id" and table.model.multi_tenant:
        raise FilterError("'tenant_id' is set by the tenant context (db.tenant_context.switch or "
                          "execute(tenant_id=...)) and may not appear in a filter", field=name)
    column = table.q(name)
    if isinstance(value, dict) and value and all(isinstance(k, str) and k.startswith("$") for k in value):
        return " AND ".join(_operator(table, name, column, op, arg, params) for op, arg in value.items())
    return _equals(table, name, column, value, params)


def _equals(table: CompiledModel, name: str, column: str, value: Any, params: list[Any]) -> str:
    if value is None:
        return f"{column} IS NULL"
    params.append(table.bind_value(name, value))
    return f"{column} = {table.ph}"


def _operator(table: CompiledModel, name: str, column: str, op: str, arg: Any, params: list[Any]) -> str:
    ph = table.ph
    if op == "$eq":
        return _equals(table, name, column, arg, params)
    if op == "$ne":
        if arg is None:
            return f"{column} IS NOT NULL"
        params.append(table.bind_value(name, arg))
        if table.model.fields[name].nullable:
            return f"({column} <> {ph} OR {column} IS NULL)"
        return f"{column} <> {ph}"
    if op in _COMPARE:
        if arg is None:
            raise FilterError(f"{op} on {name!r} needs a value, not None", field=name)
        params.append(table.bind_value(name, arg))
        return f"{column} {_COMPARE[op]} {ph}"
    if op in ("$in", "$nin"):
        if not isinstance(arg, (list, tuple, set, frozenset)):
            raise FilterError(f"{op} on {name!r} takes a list", field=name)
        values = [table.bind_value(name, v) for v in arg]
        if not values:
            return "1=0" if op == "$in" else "1=1"
        params.extend(values)
        marks = ", ".join(ph for _ in values)
        if op == "$in":
            return f"{column} IN ({marks})"
        if table.model.fields[name].nullable:
            return f"({column} NOT IN ({marks}) OR {column} IS NULL)"
        return f"{column} NOT IN ({marks})"
    if op in _TEXT_OPS:
        if not isinstance(arg, str):
            raise FilterError(f"{op} on {name!r} takes a string pattern", field=name)
        if table.model.fields[name].type is not str:
            raise FilterError(f"{op} applies to text fields; {name!r} is not one", field=name)
        params.append(arg)
        build: Callable[[str], str] = {
            "$like": table.dialect.like, "$ilike": table.dialect.ilike, "$regex": table.dialect.regex,
        }[op]
        return build(column)
    if op == "$exists":
        if not isinstance(arg, bool):
            raise FilterError(f"$exists on {name!r} takes True or False", field=name)
        return f"{column} IS NOT NULL" if arg else f"{column} IS NULL"
    if op == "$not":
        if isinstance(arg, dict) and arg and all(isinstance(k, str) and k.startswith("$") for k in arg):
            inner = " AND ".join(_operator(table, name, column, o, a, params) for o, a in arg.items())
        else:
            inner = _equals(table, name, column, arg, params)
        return f"(({inner}) IS NOT TRUE)"
    raise FilterError(f"unknown filter operator {op!r} on {name!r}; known: {', '.join(sorted(OPERATORS))}", field=name)


def check_value(table: CompiledModel, name: str, value: Any) -> Any:
    """Validate one filter value against its field's type (used by ``bind_value``)."""
    try:
        return table.model.value_adapters[name].validate_python(value)
    except ValidationError as exc:
        msg = exc.errors()[0]["msg"]
        raise FilterError(f"filter value for {name!r} ({type(value).__name__}): {msg}", field=name) from None
