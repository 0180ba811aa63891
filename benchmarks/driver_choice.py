"""Which driver API should a connection actor run?  (input to docs/adr/0002)

A connection actor is a pykka ThreadingActor: one thread owning one driver
connection.  For each backend this script times one "pair" -- INSERT one row,
SELECT it back by id, COMMIT, all in one transaction -- run four ways:

  sync-owner     (a) sync driver (sqlite3 / psycopg Connection / PyMySQL),
                     opened and used on the owning thread.
  async-call     (b) async driver (aiosqlite / psycopg AsyncConnection /
                     aiomysql) on a private event loop owned by that thread;
                     every driver call (execute+fetch, commit) is driven by
                     its own loop.run_until_complete -- what a driver protocol
                     with one method per call would do.  3 loop runs per pair.
  async-pair     (b') same, but the whole pair is one coroutine and one
                     run_until_complete: the best case for the async drivers.
  sync-leased    (c) sync driver opened on the owning thread but used from
                     another (the caller) thread that holds an exclusive
                     lease on it; no hand-off.

Times are measured on the thread that runs the statements, so no thread
hand-off is included in any mode.  For each mode: REPEATS runs of N pairs
(modes interleaved round-robin to spread VM noise), median of the per-run
mean, printed as microseconds per pair and as a ratio to sync-owner.
A pykka ask round trip is measured too, for reference.

Usage:
    python benchmarks/driver_choice.py [--pg-url URL] [--mysql-url URL]
        [--backends sqlite,postgresql,mysql] [-n N] [-r REPEATS]

Each backend gets a throw-away table (df_bench_<pid>_<hex>) that is dropped
afterwards; the SQLite database is a WAL file in a temporary directory.
A backend whose server cannot be reached is reported as skipped.

Needs psycopg, PyMySQL, pykka and -- for this comparison only -- aiosqlite and
aiomysql, which are not project dependencies:
    pip install 'psycopg[binary]' PyMySQL pykka aiosqlite aiomysql
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import queue
import secrets
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from urllib.parse import unquote, urlparse

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_MYSQL_URL = "mysql://root@127.0.0.1:3306/test"
MODES = ("sync-owner", "async-call", "async-pair", "sync-leased")


# --------------------------------------------------------------------------
# A minimal "actor": a thread owning resources, running submitted callables.


class OwnerThread:
    def __init__(self, name: str) -> None:
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._inbox.get()
            if item is None:
                return
            fn, args, reply = item
            try:
                reply.put((True, fn(*args)))
            except BaseException as exc:  # reported to the caller
                reply.put((False, exc))

    def call(self, fn, *args):
        reply: queue.SimpleQueue = queue.SimpleQueue()
        self._inbox.put((fn, args, reply))
        ok, value = reply.get()
        if not ok:
            raise value
        return value

    def stop(self) -> None:
        self._inbox.put(None)
        self._thread.join()


def timed_loop(step, n: int) -> float:
    """Run step(i) n times on the current thread; return µs per call."""
    gc.collect()
    t0 = time.perf_counter_ns()
    for i in range(n):
        step(i)
    return (time.perf_counter_ns() - t0) / n / 1000.0


# --------------------------------------------------------------------------
# Backends: sync connect, a sync pair, async connect, async calls, DDL.


class SQLiteBackend:
    name = "sqlite"
    sync_label = "sqlite3"
    async_label = "aiosqlite"

    def __init__(self, table: str) -> None:
        self.table = table
        self.dir = tempfile.TemporaryDirectory(prefix="df_bench_")
        self.path = os.path.join(self.dir.name, "bench.db")

    def _prepare(self, conn) -> None:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # the usual WAL setting

    def sync_connect(self):
        conn = sqlite3.connect(self.path, check_same_thread=False)
        self._prepare(conn)
        return conn

    def create_table(self, conn) -> None:
        conn.execute(
            f"CREATE TABLE {self.table} (id INTEGER PRIMARY KEY AUTOINCREMENT,"
            " name TEXT NOT NULL, price REAL NOT NULL)"
        )
        conn.commit()

    def drop_table(self, conn) -> None:
        conn.execute(f"DROP TABLE IF EXISTS {self.table}")
        conn.commit()

    def sync_pair(self, conn, i: int) -> None:
        # sqlite3 opens the transaction implicitly before the INSERT.
        rowid = conn.execute(
            f"INSERT INTO {self.table} (name, price) VALUES (?, ?)", (f"p{i}", 1.5)
        ).lastrowid
        rows = conn.execute(
            f"SELECT id, name, price FROM {self.table} WHERE id = ?", (rowid,)
        ).fetchall()
        conn.commit()
        assert rows[0][0] == rowid

    def sync_close(self, conn) -> None:
        conn.close()

    async def async_connect(self):
        import aiosqlite

        conn = await aiosqlite.connect(self.path)
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    async def a_insert(self, conn, i: int):
        row = await conn.execute_insert(
            f"INSERT INTO {self.table} (name, price) VALUES (?, ?)", (f"p{i}", 1.5)
        )
        return row[0]

    async def a_select(self, conn, rowid):
        return list(
            await conn.execute_fetchall(
                f"SELECT id, name, price FROM {self.table} WHERE id = ?", (rowid,)
            )
        )

    async def a_commit(self, conn) -> None:
        await conn.commit()

    async def async_close(self, conn) -> None:
        await conn.close()

    def cleanup(self) -> None:
        self.dir.cleanup()


class PostgresBackend:
    name = "postgresql"
    sync_label = "psycopg (sync)"
    async_label = "psycopg AsyncConnection"

    def __init__(self, table: str, url: str) -> None:
        self.table = table
        self.url = url

    def sync_connect(self):
        import psycopg

        return psycopg.connect(self.url)

    def create_table(self, conn) -> None:
        conn.execute(
            f"CREATE TABLE {self.table} (id BIGSERIAL PRIMARY KEY,"
            " name TEXT NOT NULL, price DOUBLE PRECISION NOT NULL)"
        )
        conn.commit()

    def drop_table(self, conn) -> None:
        conn.rollback()
        conn.execute(f"DROP TABLE IF EXISTS {self.table}")
        conn.commit()

    def sync_pair(self, conn, i: int) -> None:
        cur = conn.cursor()
        cur.execute(
            f"INSERT INTO {self.table} (name, price) VALUES (%s, %s) RETURNING id",
            (f"p{i}", 1.5),
        )
        rowid = cur.fetchone()[0]
        cur.execute(f"SELECT id, name, price FROM {self.table} WHERE id = %s", (rowid,))
        rows = cur.fetchall()
        conn.commit()
        assert rows[0][0] == rowid

    def sync_close(self, conn) -> None:
        conn.close()

    async def async_connect(self):
        import psycopg

        return await psycopg.AsyncConnection.connect(self.url)

    async def a_insert(self, conn, i: int):
        cur = conn.cursor()
        await cur.execute(
            f"INSERT INTO {self.table} (name, price) VALUES (%s, %s) RETURNING id",
            (f"p{i}", 1.5),
        )
        return (await cur.fetchone())[0]

    async def a_select(self, conn, rowid):
        cur = conn.cursor()
        await cur.execute(
            f"SELECT id, name, price FROM {self.table} WHERE id = %s", (rowid,)
        )
        return await cur.fetchall()

    async def a_commit(self, conn) -> None:
        await conn.commit()

    async def async_close(self, conn) -> None:
        await conn.close()

    def cleanup(self) -> None:
        pass


class MySQLBackend:
    name = "mysql"
    sync_label = "PyMySQL"
    async_label = "aiomysql"

    def __init__(self, table: str, url: str) -> None:
        self.table = table
        u = urlparse(url)
        self.kw = dict(
            host=u.hostname or "127.0.0.1",
            port=u.port or 3306,
            user=unquote(u.username or "root"),
            password=unquote(u.password or ""),
            autocommit=False,
        )
        self.database = u.path.lstrip("/") or "test"

    def sync_connect(self):
        import pymysql

        return pymysql.connect(database=self.database, **self.kw)

    def create_table(self, conn) -> None:
        with conn.cursor() as cur:
            cur.execute(
                f"CREATE TABLE {self.table} (id BIGINT AUTO_INCREMENT PRIMARY KEY,"
                " name VARCHAR(100) NOT NULL, price DOUBLE NOT NULL) ENGINE=InnoDB"
            )
        conn.commit()

    def drop_table(self, conn) -> None:
        conn.rollback()
        with conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {self.table}")
        conn.commit()

    def sync_pair(self, conn, i: int) -> None:
        cur = conn.cursor()
        cur.execute(
            f"INSERT INTO {self.table} (name, price) VALUES (%s, %s)", (f"p{i}", 1.5)
        )
        rowid = cur.lastrowid
        cur.execute(f"SELECT id, name, price FROM {self.table} WHERE id = %s", (rowid,))
        rows = cur.fetchall()
        conn.commit()
        assert rows[0][0] == rowid

    def sync_close(self, conn) -> None:
        conn.close()

    async def async_connect(self):
        import aiomysql

        return await aiomysql.connect(db=self.database, **self.kw)

    async def a_insert(self, conn, i: int):
        cur = await conn.cursor()
        await cur.execute(
            f"INSERT INTO {self.table} (name, price) VALUES (%s, %s)", (f"p{i}", 1.5)
        )
        return cur.lastrowid

    async def a_select(self, conn, rowid):
        cur = await conn.cursor()
        await cur.execute(
            f"SELECT id, name, price FROM {self.table} WHERE id = %s", (rowid,)
        )
        return await cur.fetchall()

    async def a_commit(self, conn) -> None:
        await conn.commit()

    async def async_close(self, conn) -> None:
        conn.close()

    def cleanup(self) -> None:
        pass


# --------------------------------------------------------------------------
# The four modes.


class Bench:
    """Owns one thread per mode and the connections they hold."""

    def __init__(self, backend) -> None:
        self.b = backend
        self.sync_owner = OwnerThread(f"{backend.name}-sync-owner")
        self.async_owner = OwnerThread(f"{backend.name}-async-owner")
        self.lease_owner = OwnerThread(f"{backend.name}-lease-owner")
        self.loop = None
        self.aconn = None
        self.sconn = self.sync_owner.call(backend.sync_connect)
        self.lconn = self.lease_owner.call(backend.sync_connect)
        self.sync_owner.call(backend.create_table, self.sconn)
        self.async_owner.call(self._open_async)

    def _open_async(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.aconn = self.loop.run_until_complete(self.b.async_connect())

    def _close_async(self) -> None:
        self.loop.run_until_complete(self.b.async_close(self.aconn))
        self.loop.close()

    # (a) on the owning thread
    def _run_sync_owner(self, n: int) -> float:
        return timed_loop(lambda i: self.b.sync_pair(self.sconn, i), n)

    # (b) one run_until_complete per driver call
    def _run_async_call(self, n: int) -> float:
        b, conn, ruc = self.b, self.aconn, self.loop.run_until_complete

        def step(i: int) -> None:
            rowid = ruc(b.a_insert(conn, i))
            rows = ruc(b.a_select(conn, rowid))
            ruc(b.a_commit(conn))
            assert rows[0][0] == rowid

        return timed_loop(step, n)

    # (b') one run_until_complete per pair
    def _run_async_pair(self, n: int) -> float:
        b, conn, ruc = self.b, self.aconn, self.loop.run_until_complete

        async def pair(i: int) -> None:
            rowid = await b.a_insert(conn, i)
            rows = await b.a_select(conn, rowid)
            await b.a_commit(conn)
            assert rows[0][0] == rowid

        return timed_loop(lambda i: ruc(pair(i)), n)

    # (c) opened by lease_owner, used here by the caller (main) thread
    def _run_sync_leased(self, n: int) -> float:
        return timed_loop(lambda i: self.b.sync_pair(self.lconn, i), n)

    def run(self, mode: str, n: int) -> float:
        if mode == "sync-owner":
            return self.sync_owner.call(self._run_sync_owner, n)
        if mode == "async-call":
            return self.async_owner.call(self._run_async_call, n)
        if mode == "async-pair":
            return self.async_owner.call(self._run_async_pair, n)
        if mode == "sync-leased":
            return self._run_sync_leased(n)
        raise ValueError(mode)

    def close(self) -> None:
        try:
            if self.aconn is not None:
                self.async_owner.call(self._close_async)
        finally:
            try:
                self.sync_owner.call(self.b.drop_table, self.sconn)
            finally:
                self.sync_owner.call(self.b.sync_close, self.sconn)
                self.lease_owner.call(self.b.sync_close, self.lconn)
                for t in (self.sync_owner, self.async_owner, self.lease_owner):
                    t.stop()
                self.b.cleanup()


def bench_backend(backend, n: int, repeats: int) -> dict[str, float]:
    bench = Bench(backend)
    try:
        for mode in MODES:  # warm-up: connections, statement caches, JIT-less imports
            bench.run(mode, max(20, n // 10))
        samples: dict[str, list[float]] = {m: [] for m in MODES}
        for _ in range(repeats):
            for mode in MODES:
                samples[mode].append(bench.run(mode, n))
        return {m: statistics.median(v) for m, v in samples.items()}
    finally:
        bench.close()


def bench_pykka_ask(n: int, repeats: int) -> float | None:
    try:
        import pykka
    except ImportError:
        return None

    class Echo(pykka.ThreadingActor):
        def on_receive(self, message):
            return message

    ref = Echo.start()
    try:
        for _ in range(200):
            ref.ask(1)
        runs = [timed_loop(lambda i: ref.ask(i), n) for _ in range(repeats)]
        return statistics.median(runs)
    finally:
        ref.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pg-url", default=DEFAULT_PG_URL)
    p.add_argument("--mysql-url", default=DEFAULT_MYSQL_URL)
    p.add_argument("--backends", default="sqlite,postgresql,mysql")
    p.add_argument("-n", "--iterations", type=int, default=None,
                   help="pairs per run (default: 2000 for sqlite, 300 for servers)")
    p.add_argument("-r", "--repeats", type=int, default=7)
    args = p.parse_args(argv)

    import platform

    print(f"python {platform.python_version()} on {platform.machine()}, "
          f"{os.cpu_count()} cpu(s); repeats={args.repeats}; median of per-run means")
    table = f"df_bench_{os.getpid()}_{secrets.token_hex(3)}"

    results = []
    for name in args.backends.split(","):
        name = name.strip()
        try:
            if name == "sqlite":
                backend = SQLiteBackend(table)
            elif name == "postgresql":
                backend = PostgresBackend(table, args.pg_url)
            elif name == "mysql":
                backend = MySQLBackend(table, args.mysql_url)
            else:
                print(f"unknown backend {name!r}", file=sys.stderr)
                return 2
            n = args.iterations or (2000 if name == "sqlite" else 300)
            print(f"  {name}: n={n} ...", file=sys.stderr, flush=True)
            res = bench_backend(backend, n, args.repeats)
        except Exception as exc:
            print(f"{name}: skipped ({type(exc).__name__}: {exc})")
            continue
        results.append((backend, n, res))

    hdr = (f"{'backend':<11}{'sync driver':<16}{'async driver':<24}{'n':>5}"
           + "".join(f"{m:>13}" for m in MODES))
    print()
    print("µs per INSERT + SELECT-by-id + COMMIT (lower is better)")
    print(hdr)
    for backend, n, res in results:
        print(f"{backend.name:<11}{backend.sync_label:<16}{backend.async_label:<24}{n:>5}"
              + "".join(f"{res[m]:>13.1f}" for m in MODES))
    print()
    print("ratio to sync-owner")
    print(f"{'backend':<11}" + "".join(f"{m:>13}" for m in MODES))
    for backend, n, res in results:
        base = res["sync-owner"]
        print(f"{backend.name:<11}" + "".join(f"{res[m] / base:>12.2f}x" for m in MODES))

    ask = bench_pykka_ask(2000, args.repeats)
    if ask is not None:
        print(f"\nreference: pykka ask round trip {ask:.1f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
