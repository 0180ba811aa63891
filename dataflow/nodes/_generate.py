"""The operations table, and the nine node types it makes for each model."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import _bulk, _crud
from ._spec import NodeType, Operation

if TYPE_CHECKING:
    from .._engine import DataFlow
    from .._models import ModelSpec
    from ..sql import CompiledModel

__all__ = ["OPERATIONS", "model_node_types"]


def _record_outputs(model: ModelSpec) -> frozenset[str]:
    return frozenset(model.fields)


def _fixed(*keys: str):  # type: ignore[no-untyped-def]
    out = frozenset(keys)
    return lambda model: out


def _read_outputs(model: ModelSpec) -> frozenset[str]:
    return frozenset(model.fields) | {"found"}


def _settable(*extra: str):  # type: ignore[no-untyped-def]
    return lambda model: frozenset(model.settable) | frozenset(extra)


_BULK_IN = ("records", "data", "chunk_size", "batch_size", "on_progress")

OPERATIONS: tuple[Operation, ...] = (
    Operation("Create", _settable(), _crud.prepare_create, _crud.run_create, True, 1, _record_outputs),
    Operation("Read", _fixed("id", "raise_on_not_found", "include_deleted"), _crud.prepare_read, _crud.run_read,
              False, 1, _read_outputs),
    Operation("Update", _settable("id", "filter", "fields"), _crud.prepare_update, _crud.run_update, True, 0,
              _fixed("rows_affected", "updated", "record")),
    Operation("Delete", _fixed("id", "filter"), _crud.prepare_delete, _crud.run_delete, True, 1,
              _fixed("deleted", "rows_affected")),
    Operation("List", _fixed("filter", "order_by", "limit", "offset", "fields", "include_deleted", "count_only"),
              _crud.prepare_list, _crud.run_list, False, 1, _fixed("records", "count")),
    Operation("BulkCreate", _fixed(*_BULK_IN, "error_strategy", "conflict_resolution"),
              _bulk.prepare_bulk_create, _bulk.run_bulk_create, True, 0,
              _fixed("inserted", "updated", "skipped", "failed", "errors", "chunks")),
    Operation("BulkUpdate", _fixed(*_BULK_IN, "filter", "fields", "confirmed"), _bulk.prepare_bulk_update,
              _bulk.run_bulk_update, True, 0, _fixed("updated")),
    Operation("BulkDelete", _fixed("filter", "confirmed", "on_progress"), _bulk.prepare_bulk_delete, _bulk.run_bulk_delete,
              True, 1, _fixed("deleted")),
    Operation("BulkUpsert", _fixed(*_BULK_IN, "conflict_on", "update_fields"), _bulk.prepare_bulk_upsert,
              _bulk.run_bulk_upsert, True, 0, _fixed("inserted", "updated")),
)


def model_node_types(db: DataFlow, model: ModelSpec, table: CompiledModel) -> dict[str, NodeType]:
    """``{"<Model><Op>Node": NodeType}`` for the nine operations."""
    out = {}
    for op in OPERATIONS:
        name = f"{model.name}{op.suffix}Node"
        out[name] = NodeType(name, db, op=op, model=model, table=table)
    return out
