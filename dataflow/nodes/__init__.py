"""Node types: the nine per model, generated from one table, and user nodes."""

from ._generate import OPERATIONS, model_node_types
from ._spec import NodeContext, NodeType, Operation, RunContext
from ._user import make_user_node

__all__ = ["OPERATIONS", "NodeContext", "NodeType", "Operation", "RunContext", "make_user_node", "model_node_types"]
