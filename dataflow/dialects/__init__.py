"""Backends: URL scheme → dialect class, imported lazily so a missing driver
only matters for the backend that needs it."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ..errors import ConfigurationError
from ._url import DatabaseURL, parse_url

if TYPE_CHECKING:
    from .base import Dialect

__all__ = ["DatabaseURL", "SCHEMES", "dialect_for", "parse_url"]

#: scheme → (module, class, pip extra that brings its driver)
SCHEMES: dict[str, tuple[str, str, str | None]] = {
    "sqlite": ("dataflow.dialects.sqlite", "SQLiteDialect", None),
    "postgresql": ("dataflow.dialects.postgresql", "PostgresDialect", "postgres"),
    "mysql": ("dataflow.dialects.mysql", "MySQLDialect", "mysql"),
}


def dialect_for(url: DatabaseURL) -> Dialect:
    """The dialect instance that serves ``url``."""
    module_name, class_name, extra = SCHEMES[url.backend]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("dataflow"):
            raise ConfigurationError(f"the {url.backend} backend is not available in this version") from None
        raise ConfigurationError(
            f"the {url.backend} backend needs its driver: pip install 'dataflow-actors[{extra}]' "
            f"(missing module {exc.name!r})"
        ) from None
    dialect: Dialect = getattr(module, class_name)(url)
    return dialect
