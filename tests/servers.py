"""Throw-away databases on the test servers, through the raw drivers."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def _swap_db(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def _pg(url: str):  # type: ignore[no-untyped-def]
    import psycopg

    return psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True, connect_timeout=10)


def _mysql(url: str, database: str | None = None):  # type: ignore[no-untyped-def]
    import pymysql

    parts = urlsplit(url)
    return pymysql.connect(
        host=parts.hostname or "127.0.0.1", port=parts.port or 3306, user=parts.username or "root",
        password=parts.password or "", database=database, autocommit=True, connect_timeout=10,
    )


def create_database(engine: str, url: str, name: str) -> str:
    if engine == "postgresql":
        with _pg(url) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    else:
        conn = _mysql(url)
        try:
            conn.cursor().execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        finally:
            conn.close()
    return _swap_db(url, name)


def drop_database(engine: str, base_url: str, url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    if engine == "postgresql":
        with _pg(base_url) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    else:
        conn = _mysql(base_url)
        try:
            conn.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
        finally:
            conn.close()


def drop_all_tables(engine: str, url: str) -> None:
    if engine == "postgresql":
        with _pg(url) as conn:
            conn.execute("DROP SCHEMA public CASCADE")
            conn.execute("CREATE SCHEMA public")
    else:
        name = urlsplit(url).path.lstrip("/")
        conn = _mysql(url, name)
        try:
            cur = conn.cursor()
            cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (name,))
            tables = [r[0] for r in cur.fetchall()]
            cur.execute("SET FOREIGN_KEY_CHECKS = 0")
            for table in tables:
                cur.execute(f"DROP TABLE IF EXISTS `{table}`")
            cur.execute("SET FOREIGN_KEY_CHECKS = 1")
        finally:
            conn.close()
