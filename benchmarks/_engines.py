"""The three backends as the benchmarks see them: URLs, raw connections, DDL, clean-up."""

from __future__ import annotations

import contextlib
import secrets
import sqlite3
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from ._harness import require

DEFAULT_URLS = {
    "postgresql": "postgresql://postgres@127.0.0.1:5432/test",
    "mysql": "mysql://root@127.0.0.1:3306/test",
}
RAW_LABELS = {"sqlite": "raw sqlite3", "postgresql": "raw psycopg", "mysql": "raw PyMySQL"}
_TYPES = {
    "sqlite": {"pk": "INTEGER PRIMARY KEY AUTOINCREMENT", "str": "TEXT", "float": "REAL",
               "int": "INTEGER", "ts": "TIMESTAMP", "key": "TEXT UNIQUE"},
    "postgresql": {"pk": "BIGSERIAL PRIMARY KEY", "str": "VARCHAR(255)", "float": "DOUBLE PRECISION",
                   "int": "INTEGER", "ts": "TIMESTAMP", "key": "VARCHAR(255) UNIQUE"},
    "mysql": {"pk": "BIGINT AUTO_INCREMENT PRIMARY KEY", "str": "VARCHAR(255)", "float": "DOUBLE",
              "int": "INTEGER", "ts": "DATETIME(6)", "key": "VARCHAR(255) UNIQUE"},
}


def mask(url: str) -> str:
    """The URL with its password replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()


class Engine:
    """One backend.  SQLite lives in ``workdir``: ``shared.db`` holds the raw and peer
    tables, ``dataflow.db`` DataFlow's, so neither can slow the other's WAL file."""

    def __init__(self, name: str, url: str | None, workdir: Path) -> None:
        self.name = name
        self.workdir = workdir
        self.url = url or ""
        self.raw_label = RAW_LABELS[name]
        self.param = "?" if name == "sqlite" else "%s"
        self.suffix = secrets.token_hex(3)
        if name != "sqlite":
            parts = urlsplit(self.url)
            self.host = parts.hostname or "127.0.0.1"
            self.port = parts.port
            self.user = unquote(parts.username or "")
            self.password = unquote(parts.password or "")
            self.database = parts.path.lstrip("/")

    def table(self, stem: str) -> str:
        """A table name unique to this run."""
        return f"bench_{stem}_{self.suffix}"

    def sqlite_path(self, file: str = "shared") -> Path:
        return self.workdir / f"{file}.db"

    # -- connections ---------------------------------------------------------

    def connect(self, *, autocommit: bool = True, file: str = "shared") -> Any:
        """A raw driver connection.  SQLite: no implicit BEGIN; on ``shared.db`` WAL and
        synchronous=NORMAL (DataFlow's own file is left as DataFlow set it up)."""
        if self.name == "sqlite":
            conn = sqlite3.connect(self.sqlite_path(file), isolation_level=None,
                                   check_same_thread=False)
            if file == "shared":
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            return conn
        if self.name == "postgresql":
            require("psycopg")
            import psycopg

            return psycopg.connect(self.url, autocommit=autocommit)
        require("pymysql")
        import pymysql

        return pymysql.connect(host=self.host, port=self.port or 3306, user=self.user,
                               password=self.password, database=self.database,
                               autocommit=autocommit, charset="utf8mb4")

    @contextlib.contextmanager
    def admin(self, file: str = "shared") -> Iterator[Any]:
        """A short-lived autocommit connection for DDL, loading and clean-up."""
        conn = self.connect(file=file)
        try:
            if self.name == "postgresql":
                conn.execute("SET lock_timeout = '20s'")
            elif self.name == "mysql":
                conn.cursor().execute("SET SESSION lock_wait_timeout = 20")
            yield conn
        finally:
            conn.close()

    def dataflow_url(self) -> str:
        return f"sqlite:///{self.sqlite_path('dataflow')}" if self.name == "sqlite" else self.url

    def sqlalchemy_url(self) -> str:
        if self.name == "sqlite":
            return f"sqlite:///{self.sqlite_path()}"
        scheme = "postgresql+psycopg" if self.name == "postgresql" else "mysql+pymysql"
        return scheme + self.url[self.url.index("://"):]

    def django_settings(self) -> dict[str, Any]:
        if self.name == "sqlite":
            return {"ENGINE": "django.db.backends.sqlite3", "NAME": str(self.sqlite_path()),
                    "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL;PRAGMA synchronous=NORMAL"}}
        backend = "postgresql" if self.name == "postgresql" else "mysql"
        extra = {"OPTIONS": {"charset": "utf8mb4"}} if backend == "mysql" else {}
        return {"ENGINE": f"django.db.backends.{backend}", "NAME": self.database,
                "USER": self.user, "PASSWORD": self.password, "HOST": self.host,
                "PORT": str(self.port or ""), **extra}

    def server_version(self) -> str:
        with self.admin() as conn:
            if self.name == "sqlite":
                return "WAL-mode files in a temporary directory, synchronous=NORMAL"
            cur = conn.cursor()
            cur.execute("SELECT version()")
            return str(cur.fetchone()[0]).split(" on ")[0]

    # -- SQL -----------------------------------------------------------------

    def now(self) -> Any:
        """created_at / updated_at as the raw driver stores them (SQLite: ISO text)."""
        now = datetime.now()
        return now.isoformat(" ", "microseconds") if self.name == "sqlite" else now

    def create_table(self, table: str, columns: Sequence[tuple[str, str]]) -> None:
        """``CREATE TABLE`` with ``id`` first and the timestamps last, as DataFlow lays it out."""
        types = _TYPES[self.name]
        cols = ["id " + types["pk"]]
        cols += [f"{name} {types[kind]} NOT NULL" for name, kind in columns]
        cols += [f"{ts} {types['ts']} NOT NULL" for ts in ("created_at", "updated_at")]
        tail = " ENGINE=InnoDB" if self.name == "mysql" else ""
        with self.admin() as conn:
            conn.cursor().execute(f"CREATE TABLE {table} ({', '.join(cols)}){tail}")

    def load(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """executemany in one transaction; ``rows`` exclude the timestamps, added here."""
        names = [*columns, "created_at", "updated_at"]
        marks = ", ".join([self.param] * len(names))
        sql = f"INSERT INTO {table} ({', '.join(names)}) VALUES ({marks})"
        now = self.now()
        data = [(*row, now, now) for row in rows]
        with self.admin() as conn:
            if self.name == "postgresql":
                with conn.transaction():
                    conn.cursor().executemany(sql, data)
                return
            conn.begin() if self.name == "mysql" else conn.execute("BEGIN")
            conn.cursor().executemany(sql, data)
            conn.commit() if self.name == "mysql" else conn.execute("COMMIT")

    def run(self, *statements: str, file: str = "shared") -> None:
        with self.admin(file) as conn:
            cur = conn.cursor()
            for sql in statements:
                cur.execute(sql)

    def analyze(self, table: str, file: str = "shared") -> None:
        self.run(f"ANALYZE TABLE {table}" if self.name == "mysql" else f"ANALYZE {table}",
                 file=file)

    def has_index_on(self, table: str, column: str, file: str = "shared") -> bool:
        """Whether some index of ``table`` starts with ``column`` (checked in the catalog)."""
        with self.admin(file) as conn:
            cur = conn.cursor()
            if self.name == "sqlite":
                cur.execute(f"SELECT name FROM pragma_index_list('{table}')")
                names = [r[0] for r in cur.fetchall()]
                return any(conn.execute(f"SELECT name FROM pragma_index_info('{n}') "
                                        "WHERE seqno = 0").fetchone() == (column,) for n in names)
            if self.name == "postgresql":
                cur.execute("SELECT indexdef FROM pg_indexes WHERE tablename = %s", (table,))
                return any(f"({column}" in r[0] for r in cur.fetchall())
            cur.execute(f"SHOW INDEX FROM {table} WHERE Seq_in_index = 1 AND Column_name = %s",
                        (column,))
            return cur.fetchone() is not None

    def drop(self, *tables: str, file: str = "shared") -> None:
        self.run(*(f"DROP TABLE IF EXISTS {t}" for t in tables), file=file)
