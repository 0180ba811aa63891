"""User nodes: a plain function (sync or async) registered as a node type."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._spec import NodeType

if TYPE_CHECKING:
    from .._engine import DataFlow

__all__ = ["make_user_node"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def make_user_node(
    db: DataFlow,
    name: str,
    func: Callable[..., Any],
    *,
    compensation: Callable[..., Any] | None = None,
    critical: bool = True,
) -> NodeType:
    """Wrap ``func`` as node type ``name``.

    ``func(**params)`` gets the node's parameters (static, connected and
    runtime ones merged) and returns a dict (anything else is wrapped as
    ``{"result": value}``). ``compensation(params, result)`` undoes a
    completed call when the workflow fails later.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"node type name {name!r} must be an identifier")
    if not callable(func):
        raise TypeError(f"node {name!r}: the function must be callable")
    if compensation is not None and not callable(compensation):
        raise TypeError(f"node {name!r}: the compensation must be callable")
    if not isinstance(critical, bool):
        raise TypeError(f"node {name!r}: critical must be True or False")
    return NodeType(
        name, db, func=func, compensation=compensation, critical=critical,
        is_async=inspect.iscoroutinefunction(func),
    )
