"""Parameter checks shared by the node operations."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from ..sql import FilterError
from ._spec import NodeContext, NodeType

__all__ = ["check_bool", "check_count", "check_filter", "check_keys", "validate_fields"]


def check_keys(ctx: NodeContext, params: dict[str, Any], allowed: frozenset[str]) -> None:
    for key in params:
        if key not in allowed:
            raise ctx.unknown(key, sorted(allowed))


def check_bool(ctx: NodeContext, params: dict[str, Any], key: str, default: bool) -> bool:
    value = params.get(key, default)
    if not isinstance(value, bool):
        raise ctx.error(f"'{key}' must be True or False, got {type(value).__name__}", field=key, name_field=False)
    return value


def check_count(ctx: NodeContext, params: dict[str, Any], key: str, minimum: int = 0) -> int | None:
    value = params.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ctx.error(f"'{key}' must be an integer >= {minimum}", field=key, name_field=False)
    return value


def check_filter(nt: NodeType, ctx: NodeContext, flt: Any) -> tuple[str, list[Any]]:
    assert nt.table is not None
    try:
        return nt.table.where(flt)
    except FilterError as exc:
        raise ctx.from_filter(exc) from None


def validate_fields(nt: NodeType, ctx: NodeContext, values: Any, *, create: bool, prefix: str = "") -> dict[str, Any]:
    """Validate field values against the model (all required ones when ``create``)."""
    model = nt.model
    assert model is not None
    if not isinstance(values, dict):
        raise ctx.error(f"{prefix}field values must be a dict, got {type(values).__name__}")
    adapter = model.create_adapter if create else model.update_adapter
    try:
        return dict(adapter.validate_python(values))
    except ValidationError as exc:
        err = ctx.from_validation(exc, prefix)
        spec = model.fields.get(err.field or "")
        if spec is not None and (spec.managed or spec.auto):
            raise ctx.error(f"{prefix}field '{err.field}' is set by DataFlow and may not be given",
                            field=err.field, name_field=False) from None
        raise err from None
