"""Node types: what a node accepts, how it checks its parameters, how it runs.

Each model's nine node types are rows of :data:`OPERATIONS` bound to the
model; user nodes are functions wrapped by ``_user.py``. Both are
:class:`NodeType` instances kept in their DataFlow instance's registry.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ..errors import NodeParameterError
from ..sql import FilterError

if TYPE_CHECKING:
    from .._engine import DataFlow
    from .._models import ModelSpec
    from ..sql import CompiledModel

__all__ = ["NodeContext", "NodeType", "Operation", "RunContext"]


@dataclass(frozen=True, slots=True)
class NodeContext:
    """Where a parameter came from, for error messages."""

    node_id: str
    node_type: str
    model: str | None

    def error(
        self, message: str, field: str | None = None, errors: list[Any] | None = None, *, name_field: bool = True
    ) -> NodeParameterError:
        where = f"{self.node_type} '{self.node_id}'"
        if self.model:
            where += f" (model {self.model})"
        if field and name_field:
            message = f"field '{field}': {message}"
        return NodeParameterError(
            f"{where}: {message}", node=self.node_id, node_type=self.node_type,
            model=self.model, field=field, errors=errors,
        )

    def missing(self, name: str) -> NodeParameterError:
        """A required parameter is absent (runtime parameters may still supply it)."""
        return self.error(f"required parameter '{name}' is missing", field=name, name_field=False,
                          errors=[{"type": "missing", "loc": (name,), "msg": "Field required"}])

    def unknown(self, key: str, known: list[str], what: str = "parameter") -> NodeParameterError:
        close = difflib.get_close_matches(key, known, n=3)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        return self.error(
            f"unknown {what} '{key}'{hint} (known: {', '.join(sorted(known))})", field=key, name_field=False
        )

    def from_validation(self, exc: ValidationError, prefix: str = "") -> NodeParameterError:
        errs = exc.errors(include_input=False, include_url=False)
        first = errs[0]
        loc = [str(p) for p in first["loc"]]
        field = loc[0] if loc else None
        if first["type"] == "extra_forbidden" and field is not None:
            return self.error(f"{prefix}unknown field '{field}'", field=field, errors=errs, name_field=False)
        if first["type"] == "missing" and field is not None:
            return self.error(f"{prefix}required field '{field}' is missing", field=field, errors=errs, name_field=False)
        detail = ".".join(loc[1:])
        msg = first["msg"] + (f" (at {detail})" if detail else "")
        return self.error(f"{prefix}{msg}", field=field, errors=errs)

    def from_filter(self, exc: FilterError) -> NodeParameterError:
        return self.error(str(exc), field=exc.field, name_field=False)


@dataclass(slots=True)
class RunContext:
    """What a node's run function may use: the leased connection, the run, and its tenant.

    ``tenant`` is resolved once per execute (``execute(tenant_id=…)`` or the bound
    ``db.tenant_context``) and travels only here, never on the connection.
    """

    conn: Any
    run_id: str
    results: dict[str, Any]
    tenant: str | None = None


@dataclass(frozen=True, slots=True)
class Operation:
    """One row of the operations table: a kind of database node."""

    suffix: str  # "Create" → "<Model>CreateNode"
    inputs: Callable[[ModelSpec], frozenset[str]]  # accepted top-level parameter names
    prepare: Callable[[NodeType, NodeContext, dict[str, Any], bool], Any]
    run: Callable[[NodeType, RunContext, Any], dict[str, Any]]
    writes: bool
    statements: int  # 1 if the node always runs exactly one statement
    outputs: Callable[[ModelSpec], frozenset[str] | None]  # known top-level output keys (None: any)


class NodeType:
    """A registered kind of node: a model operation or a user function."""

    __slots__ = ("compensation", "critical", "db", "func", "is_async", "model", "name", "op", "table")

    def __init__(
        self,
        name: str,
        db: DataFlow,
        *,
        op: Operation | None = None,
        model: ModelSpec | None = None,
        table: CompiledModel | None = None,
        func: Callable[..., Any] | None = None,
        compensation: Callable[..., Any] | None = None,
        critical: bool = True,
        is_async: bool = False,
    ) -> None:
        self.name = name
        self.db = db
        self.op = op
        self.model = model
        self.table = table
        self.func = func
        self.compensation = compensation
        self.critical = critical
        self.is_async = is_async

    @property
    def is_database(self) -> bool:
        return self.op is not None

    @property
    def statements(self) -> int:
        return self.op.statements if self.op is not None else 0

    def context(self, node_id: str) -> NodeContext:
        return NodeContext(node_id, self.name, self.model.name if self.model else None)

    def prepare(self, node_id: str, params: Mapping[str, Any], partial: bool) -> Any:
        """Check ``params``; ``partial`` skips the check for required fields."""
        if self.op is None:
            return dict(params)
        return self.op.prepare(self, self.context(node_id), dict(params), partial)

    def inputs(self) -> frozenset[str] | None:
        if self.op is None or self.model is None:
            return None
        return self.op.inputs(self.model)

    def outputs(self) -> frozenset[str] | None:
        if self.op is None or self.model is None:
            return None
        return self.op.outputs(self.model)

    def __repr__(self) -> str:
        return f"<NodeType {self.name}>"
