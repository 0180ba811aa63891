"""What the pool's liveness check costs (docs/adr/0006-pool-and-supervision.md).

``python benchmarks/pool_check.py [--pg-url URL] [--mysql-url URL]`` prints, for each
server: the cost of one check of an idle connection (a socket poll, psycopg_pool's
``check_connection``, ``SELECT 1``, PyMySQL's ``ping``), then the cost of one
checkout + release with the idle check off, at its default threshold, and on every
checkout. Medians of 7 runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import select
import statistics
import time
from collections.abc import Callable
from typing import Any

from dataflow import DataFlow


def per_call(fn: Callable[[], Any], n: int) -> float:
    """Median µs per call of ``fn`` over 7 runs of ``n`` calls."""
    fn()
    runs = []
    for _ in range(7):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        runs.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(runs)


def poll_once(fd: int) -> Callable[[], Any]:
    def check() -> Any:
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLPRI)
        return poller.poll(0)

    return check


def checks(db: DataFlow) -> list[tuple[str, float]]:
    """µs per check of one idle connection, by method."""
    with db.engine.checkout() as lease:
        conn = lease.connection
        if db.dialect.name == "postgresql":
            from psycopg_pool import ConnectionPool

            return [
                ("socket poll (Driver.alive, quiet socket)", per_call(poll_once(conn.pgconn.socket), 20_000)),
                ("psycopg_pool ConnectionPool.check_connection", per_call(lambda: ConnectionPool.check_connection(conn), 2_000)),
                ("SELECT 1", per_call(lambda: conn.execute("SELECT 1").fetchone(), 2_000)),
            ]
        return [
            ("socket poll (Driver.alive, quiet socket)", per_call(poll_once(conn._sock.fileno()), 20_000)),
            ("PyMySQL ping(reconnect=False)", per_call(lambda: conn.ping(reconnect=False), 2_000)),
        ]


def checkout_cycles(db: DataFlow) -> list[tuple[str, float]]:
    """µs per checkout + release, by idle-check setting."""
    sup = db.supervisor
    base = sup.policy
    out = []
    for label, check_idle in (("idle check off", None), ("default (idle ≥ 1 ms)", base.check_idle),
                              ("idle check on every checkout", 0.0)):
        sup.policy = dataclasses.replace(base, check_idle=check_idle)
        out.append((f"checkout + release, {label}", per_call(lambda: sup.checkout().release(), 20_000)))
    sup.policy = base
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test")
    p.add_argument("--mysql-url", default="mysql://root@127.0.0.1:3306/test")
    args = p.parse_args()
    for url in (args.pg_url, args.mysql_url):
        with DataFlow(url, pool_size=1) as db:
            print(f"== {db.dialect.name}")
            for label, us in checks(db) + checkout_cycles(db):
                print(f"  {label:50} {us:8.2f} µs")


if __name__ == "__main__":
    main()
