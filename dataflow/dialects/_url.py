"""Database URLs: parsing, and a form safe to print (password masked)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

from ..errors import ConfigurationError

__all__ = ["DatabaseURL", "parse_url"]

_ALIASES = {
    "sqlite": "sqlite",
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "postgresql+psycopg": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
    "mysql+aiomysql": "mysql",
    "mysql+pymysql": "mysql",
}


@dataclass(frozen=True)
class DatabaseURL:
    """A parsed database URL. ``str()`` and ``repr()`` never show the password."""

    backend: str
    host: str | None = None
    port: int | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    database: str | None = None  # for SQLite: a file path, or None for in-memory
    query: tuple[tuple[str, str], ...] = ()

    @property
    def memory(self) -> bool:
        return self.backend == "sqlite" and self.database is None

    def __str__(self) -> str:
        if self.backend == "sqlite":
            return f"sqlite:///{self.database}" if self.database else "sqlite:///:memory:"
        auth = ""
        if self.user:
            auth = self.user + (":***" if self.password else "") + "@"
        port = f":{self.port}" if self.port else ""
        return f"{self.backend}://{auth}{self.host or ''}{port}/{self.database or ''}"

    def mask(self, text: str) -> str:
        """``text`` with this URL's password replaced by ``***``."""
        if self.password:
            text = text.replace(self.password, "***")
        return text


def parse_url(url: str) -> DatabaseURL:
    """Parse ``url``; raise :class:`ConfigurationError` (password masked) if it is wrong."""
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(f"not a database URL: {_masked(url)!r} (expected e.g. sqlite:///app.db or postgresql://user@host/db)")
    scheme, rest = url.split("://", 1)
    backend = _ALIASES.get(scheme.lower())
    if backend is None:
        raise ConfigurationError(f"unknown database scheme {scheme!r}; known: {sorted(_ALIASES)}")
    if backend == "sqlite":
        return _sqlite(rest, url)
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise ConfigurationError(f"bad port in database URL {_masked(url)!r}") from None
    database = unquote(parts.path.lstrip("/")) or None
    return DatabaseURL(
        backend,
        host=parts.hostname,
        port=port,
        user=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        database=database,
        query=tuple(parse_qsl(parts.query)),
    )


def _sqlite(rest: str, url: str) -> DatabaseURL:
    path, _, query = rest.partition("?")
    if path in ("", "/", "/:memory:", ":memory:"):
        return DatabaseURL("sqlite", query=tuple(parse_qsl(query)))
    if not path.startswith("/"):
        raise ConfigurationError(f"SQLite URL {url!r} must look like sqlite:///relative.db or sqlite:////absolute.db")
    path = path[1:]  # sqlite:///app.db → app.db (relative); sqlite:////tmp/a.db → /tmp/a.db
    return DatabaseURL("sqlite", database=os.path.abspath(path), query=tuple(parse_qsl(query)))


def _masked(url: object) -> str:
    text = str(url)
    try:
        parts = urlsplit(text)
        if parts.password:
            return text.replace(parts.password, "***")
    except ValueError:
        pass
    return text
