"""``python -m benchmarks``: DataFlow against the raw drivers (and, with --peers,
SQLAlchemy Core, SQLAlchemy ORM and Django) in one run; see benchmarks/README.md."""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import shlex
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

from . import _peers, bulk, create_read, list_filtered, rw_concurrent
from ._engines import DEFAULT_URLS, RAW_LABELS, Engine, mask
from ._harness import Config, NotInstalled, render

SCENARIOS = {m.NAME: m for m in (create_read, list_filtered, rw_concurrent, bulk)}


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("--engine", action="append", choices=list(RAW_LABELS),
                   help="repeatable; default: sqlite")
    p.add_argument("--only", action="append", choices=list(SCENARIOS),
                   help="run only this scenario (repeatable)")
    p.add_argument("--peers", action="store_true",
                   help="also run SQLAlchemy Core, SQLAlchemy ORM and Django")
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke test, not figures")
    p.add_argument("--reps", type=int, help="repetitions per contender (default 5, quick 3)")
    p.add_argument("--huge", action="store_true",
                   help="bulk: also import 1, 3 and 10 million rows from a generator (PostgreSQL)")
    p.add_argument("--pg-url", default=os.environ.get("DATAFLOW_BENCH_PG_URL",
                                                      DEFAULT_URLS["postgresql"]))
    p.add_argument("--mysql-url", default=os.environ.get("DATAFLOW_BENCH_MYSQL_URL",
                                                         DEFAULT_URLS["mysql"]))
    return p.parse_args(argv)


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _psycopg_libpq() -> str:
    try:
        import psycopg
    except ImportError:
        return "-"
    v = psycopg.pq.version()
    return f"{v // 10000}.{v % 10000}"


def _dataflow_version() -> str:
    """Where ``dataflow`` is imported from, and its version and git commit when known."""
    try:
        from dataflow import DataFlow  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - a broken package is reported, not fatal
        return f"not importable ({type(exc).__name__}: {exc})"
    import dataflow

    where = Path(dataflow.__file__).parent
    version = getattr(dataflow, "__version__", "")
    git = subprocess.run(["git", "-C", str(where), "describe", "--always", "--dirty"],
                         capture_output=True, text=True, check=False).stdout.strip()
    return " ".join(filter(None, [version, str(where), git and f"(git {git})"]))


def header(argv: list[str], cfg: Config, servers: dict[str, str]) -> list[str]:
    lines = [
        "command: " + shlex.join(["python", "-m", "benchmarks", *argv]),
        (f"python: {platform.python_implementation()} {platform.python_version()} on "
         f"{platform.platform()}, {os.cpu_count()} CPUs"),
        f"sqlite3: SQLite {sqlite3.sqlite_version}",
    ]
    if "postgresql" in servers:
        libpq = _psycopg_libpq()
        lines.append(f"psycopg: {_version('psycopg')} (libpq {libpq}), "
                     f"psycopg_pool: {_version('psycopg-pool')}")
    if "mysql" in servers:
        lines.append(f"PyMySQL: {_version('PyMySQL')}")
    if cfg.peers:
        lines.append(f"SQLAlchemy: {_version('SQLAlchemy')}, Django: {_version('Django')}")
    lines.append(f"dataflow: {_dataflow_version()}")
    lines += [f"{name}: {version}" for name, version in servers.items()]
    lines.append(f"reps: {cfg.reps} per contender, round-robin; figures are medians"
                 + (" (--quick: smoke-test sizes, not figures to quote)" if cfg.quick else ""))
    return lines


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    cfg = Config(quick=args.quick, peers=args.peers, reps=args.reps or (3 if args.quick else 5), huge=args.huge)
    urls = {"sqlite": None, "postgresql": args.pg_url, "mysql": args.mysql_url}
    status = 0
    with tempfile.TemporaryDirectory(prefix="dataflow-bench-") as tmp:
        engines, servers = [], {}
        for name in dict.fromkeys(args.engine or ["sqlite"]):
            engine = Engine(name, urls[name], Path(tmp) / name)
            engine.workdir.mkdir()
            try:
                version = engine.server_version()
            except NotInstalled as exc:
                extra = "postgres" if name == "postgresql" else name
                print(f"{name}: driver not installed ({exc}): pip install -e '.[{extra}]'",
                      flush=True)
                status = 1
                continue
            except Exception as exc:  # noqa: BLE001 - an unreachable server skips its engine
                print(f"{name}: cannot connect to {mask(engine.url)}: "
                      f"{type(exc).__name__}: {exc}", flush=True)
                status = 1
                continue
            engines.append(engine)
            servers[name] = version + ("" if name == "sqlite" else f" at {mask(engine.url)}")
        print("\n".join(header(argv, cfg, servers)), end="\n\n", flush=True)
        if cfg.peers:
            _peers.configure_django(engines)
        for engine in engines:
            for scenario in (SCENARIOS[s] for s in (args.only or SCENARIOS)):
                if engine.name not in scenario.ENGINES:
                    print(f"== {scenario.NAME} · {engine.name}: not run "
                          f"(only {', '.join(scenario.ENGINES)})\n", flush=True)
                    continue
                for group in scenario.groups(engine, cfg):
                    print(render(group), end="\n\n", flush=True)
                    status |= group.outcomes[0].error is not None
    return status


if __name__ == "__main__":
    sys.exit(main())
