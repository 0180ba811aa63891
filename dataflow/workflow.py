"""``WorkflowBuilder`` → a checked, immutable :class:`Workflow`."""

from __future__ import annotations

import difflib
import heapq
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._engine import find_node_type, known_node_names
from .errors import NodeParameterError, UnknownNodeError, WorkflowConnectionError, WorkflowError

if TYPE_CHECKING:
    from ._engine import DataFlow
    from .nodes import NodeType

__all__ = ["Connection", "Step", "Workflow", "WorkflowBuilder"]


@dataclass(frozen=True, slots=True)
class Connection:
    """``source``'s output at ``source_path`` becomes ``target``'s input at ``target_path``."""

    source: str
    source_path: tuple[str, ...]
    target: str
    target_path: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Step:
    """One node of a built workflow."""

    id: str
    node: NodeType
    params: dict[str, Any]
    inputs: tuple[Connection, ...]
    prepared: Any  # the checked parameters, when no connection feeds the node
    deferred: NodeParameterError | None = None  # missing required values: runtime parameters may give them


class Workflow:
    """A built workflow: steps in dependency order, every parameter checked."""

    __slots__ = ("db", "steps", "transactional", "uses_database", "_by_id")

    def __init__(self, db: DataFlow | None, steps: tuple[Step, ...]) -> None:
        self.db = db
        self.steps = steps
        self._by_id = {s.id: s for s in steps}
        db_steps = [s for s in steps if s.node.is_database]
        self.uses_database = bool(db_steps)
        # A lone one-statement node commits by itself; anything more is one transaction.
        self.transactional = not (len(steps) == 1 and len(db_steps) == 1 and db_steps[0].node.statements == 1)

    def step(self, node_id: str) -> Step:
        return self._by_id[node_id]

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._by_id

    def __repr__(self) -> str:
        return f"<Workflow {[s.id for s in self.steps]}>"


class WorkflowBuilder:
    """Collects nodes and connections; :meth:`build` checks them all before any SQL."""

    def __init__(self, db: DataFlow | None = None) -> None:
        self._db = db
        self._nodes: dict[str, tuple[str, dict[str, Any]]] = {}
        self._connections: list[tuple[str, str, str, str]] = []

    def add_node(self, node_type: str, node_id: str, params: dict[str, Any] | None = None) -> WorkflowBuilder:
        """Add a node of type ``node_type`` (e.g. ``"UserCreateNode"``) with id ``node_id``."""
        if not isinstance(node_type, str) or not node_type:
            raise WorkflowError(f"node type must be a non-empty string, got {node_type!r}")
        if not isinstance(node_id, str) or not node_id or "." in node_id:
            raise WorkflowError(f"node id must be a non-empty string without dots, got {node_id!r}")
        if node_id in self._nodes:
            raise WorkflowError(f"node id {node_id!r} is used twice")
        if params is not None and not isinstance(params, dict):
            raise WorkflowError(f"node {node_id!r}: parameters must be a dict, got {type(params).__name__}")
        self._nodes[node_id] = (node_type, dict(params or {}))
        return self

    def add_connection(self, source: str, source_output: str, target: str, target_input: str) -> WorkflowBuilder:
        """Feed ``source``'s output ``source_output`` into ``target``'s input ``target_input``.

        Both sides may be dotted paths: ``"records.0.id"``, ``"filter.id"``.
        """
        for label, value in (("source", source), ("source_output", source_output),
                             ("target", target), ("target_input", target_input)):
            if not isinstance(value, str) or not value:
                raise WorkflowConnectionError(f"add_connection: {label} must be a non-empty string")
        self._connections.append((source, source_output, target, target_input))
        return self

    def build(self) -> Workflow:
        """Check node types, parameters, connections and cycles; return the workflow."""
        if not self._nodes:
            raise WorkflowError("the workflow has no nodes")
        types = {nid: self._resolve(nid, t) for nid, (t, _) in self._nodes.items()}
        db = self._single_db(types)
        inputs: dict[str, list[Connection]] = {nid: [] for nid in self._nodes}
        for source, out, target, inp in self._connections:
            conn = Connection(source, tuple(out.split(".")), target, tuple(inp.split(".")))
            self._check_connection(conn, types)
            inputs[target].append(conn)
        order = self._order(inputs)
        steps = []
        for nid in order:
            node = types[nid]
            params = self._nodes[nid][1]
            feeds = tuple(inputs[nid])
            deferred = None
            if feeds or not node.is_database:
                prepared = node.prepare(nid, params, partial=True)
            else:
                try:
                    prepared = node.prepare(nid, params, partial=False)
                except NodeParameterError as exc:
                    if not exc.errors or any(e.get("type") != "missing" for e in exc.errors):
                        raise
                    node.prepare(nid, params, partial=True)  # everything else must be right already
                    prepared, deferred = None, exc
            steps.append(Step(nid, node, params, feeds, None if feeds else prepared, deferred))
        return Workflow(db, tuple(steps))

    def _resolve(self, node_id: str, name: str) -> NodeType:
        node = self._db.get_node_type(name) if self._db is not None else find_node_type(name)
        if node is None:
            known = sorted(self._db.nodes) if self._db is not None else known_node_names()
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise UnknownNodeError(f"node {node_id!r}: unknown node type {name!r}{hint}", close)
        return node

    @staticmethod
    def _single_db(types: dict[str, NodeType]) -> DataFlow:
        dbs = {id(n.db): n.db for n in types.values()}
        if len(dbs) > 1:
            raise WorkflowError("a workflow's nodes must all belong to one DataFlow instance")
        return next(iter(dbs.values()))

    def _check_connection(self, conn: Connection, types: dict[str, NodeType]) -> None:
        for role, nid in (("source", conn.source), ("target", conn.target)):
            if nid not in types:
                raise WorkflowConnectionError(f"connection {conn.source}.{'.'.join(conn.source_path)} → "
                                              f"{conn.target}.{'.'.join(conn.target_path)}: unknown {role} node {nid!r}")
        if conn.source == conn.target:
            raise WorkflowConnectionError(f"node {conn.source!r} is connected to itself")
        outputs = types[conn.source].outputs()
        if outputs is not None and conn.source_path[0] not in outputs:
            raise WorkflowConnectionError(
                f"connection into {conn.target!r}: node {conn.source!r} ({types[conn.source].name}) "
                f"has no output {conn.source_path[0]!r}; it returns {', '.join(sorted(outputs))}"
            )
        accepted = types[conn.target].inputs()
        if accepted is not None and conn.target_path[0] not in accepted:
            raise WorkflowConnectionError(
                f"connection from {conn.source!r}: node {conn.target!r} ({types[conn.target].name}) "
                f"takes no input {conn.target_path[0]!r}; it takes {', '.join(sorted(accepted))}"
            )

    def _order(self, inputs: dict[str, list[Connection]]) -> list[str]:
        """Dependency order; among ready nodes, the order they were added (Kahn's algorithm)."""
        position = {nid: i for i, nid in enumerate(self._nodes)}
        waiting = {nid: len({c.source for c in conns}) for nid, conns in inputs.items()}
        dependents: dict[str, set[str]] = {nid: set() for nid in self._nodes}
        for nid, conns in inputs.items():
            for c in conns:
                dependents[c.source].add(nid)
        ready = [(position[n], n) for n, k in waiting.items() if k == 0]
        heapq.heapify(ready)
        order: list[str] = []
        while ready:
            _, nid = heapq.heappop(ready)
            order.append(nid)
            for dep in dependents[nid]:
                waiting[dep] -= 1
                if waiting[dep] == 0:
                    heapq.heappush(ready, (position[dep], dep))
        if len(order) != len(self._nodes):
            stuck = sorted(n for n in self._nodes if n not in order)
            raise WorkflowConnectionError(f"the connections make a cycle through {', '.join(stuck)}")
        return order
