"""Statements from models: every identifier from the model, every value bound."""

from ._compiler import CompiledModel
from ._filters import FilterError, compile_filter

__all__ = ["CompiledModel", "FilterError", "compile_filter"]
