"""One bulk measurement in a process of its own: ``python -m benchmarks._bulk_worker '<json job>'``.

The parent (``benchmarks/bulk.py``) starts one process per contender and
repetition, so each one's peak RSS is its own: the interpreter, the libraries
that contender imports, its input and whatever it holds while it writes. The
process sets its table up (untimed), builds the input as a list of dicts (or a
generator, for the huge import), resets the kernel's peak-RSS mark
(``/proc/self/clear_refs``), times the one operation, checks the result in the
database (untimed), and prints one JSON line.
"""

from __future__ import annotations

import gc
import json
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from operator import itemgetter
from pathlib import Path
from typing import Any

from . import _peers
from ._engines import Engine

#: (column, kind) of the tables; "key" is a unique string
PRODUCT = (("name", "str"), ("price", "float"), ("stock", "int"))
KEYED = (("sku", "key"), ("name", "str"), ("price", "float"), ("stock", "int"))
Op = Callable[[], Any]


class Job:
    """What the parent asks for (the JSON argument)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.engine = Engine(spec["engine"], spec.get("url"), Path(spec["workdir"]))
        self.scenario: str = spec["scenario"]  # insert | upsert | update | huge
        self.contender: str = spec["contender"]
        self.table: str = spec["table"]
        self.n: int = spec["n"]
        self.rep: int = spec.get("rep", 0)
        #: DataFlow's own DDL for the table: the raw baseline writes the same physical table
        self.ddl: list[str] = spec.get("ddl", [])
        #: dialect class attributes to override, for tuning runs (bulk_chunk_size, bulk_overlap)
        self.knobs: dict[str, Any] = spec.get("knobs", {})
        #: seconds to let the server finish the previous run's background work before timing
        self.settle: float = spec.get("settle", 0.0)

    @property
    def columns(self) -> tuple[tuple[str, str], ...]:
        return KEYED if self.scenario == "upsert" else PRODUCT

    def records(self) -> list[dict[str, Any]]:
        """The input: a list of dicts, as a user has it."""
        n, rep = self.n, self.rep
        if self.scenario == "upsert":  # keys s0 … s(n-1); the first half is stored already
            return [{"sku": f"s{i}", "name": f"n{i}.{rep}", "price": rep + i / 100, "stock": i} for i in range(n)]
        return [{"name": f"p{i}", "price": i / 100, "stock": i} for i in range(n)]

    def preload(self) -> list[dict[str, Any]]:
        """Rows stored before the timed operation: half the keys (upsert), 2n rows (update)."""
        if self.scenario == "upsert":
            return [{"sku": f"s{i}", "name": "old", "price": 0.5, "stock": -1} for i in range(self.n // 2)]
        if self.scenario == "update":
            return [{"name": f"p{i}", "price": 1.0, "stock": i} for i in range(2 * self.n)]
        return []

    def expected(self) -> int:
        """Rows in the table after the operation."""
        return {"insert": self.n, "upsert": self.n, "update": 2 * self.n}.get(self.scenario, self.n)


# -- raw drivers -------------------------------------------------------------------


def raw(job: Job) -> Op:
    """The driver alone, on a table with DataFlow's own DDL (same column types, same indexes)."""
    engine, table = job.engine, job.table
    engine.drop(table)
    engine.run(*job.ddl)
    names = [c for c, _ in job.columns]
    now = datetime.now(UTC).isoformat(timespec="microseconds")  # stored as text, as DataFlow does
    records = job.records()
    cols = ", ".join([*names, "created_at", "updated_at"])
    p = engine.param
    marks = ", ".join([p] * (len(names) + 2))
    conn = engine.connect()
    preload = job.preload()
    if preload:  # timestamps in DataFlow's text form too: an UPDATE then rewrites rows of the same size
        load = f"INSERT INTO {table} ({cols}) VALUES ({marks})"
        _in_transaction(engine, conn, lambda cur: cur.executemany(load, [(*r.values(), now, now) for r in preload]))()
    if job.scenario == "update":
        sql = f"UPDATE {table} SET price = {p}, updated_at = {p} WHERE stock < {p}"
        return _in_transaction(engine, conn, lambda cur: cur.execute(sql, (100.0 + job.rep, now, job.n)))
    if engine.name == "postgresql":
        types = ["text" if k in ("str", "key") else "float8" if k == "float" else "int8" for _, k in job.columns]
        types += ["varchar", "varchar"]
        if job.scenario == "insert":
            def copy(cur: Any) -> None:
                with cur.copy(f"COPY {table} ({cols}) FROM STDIN (FORMAT BINARY)") as cp:
                    cp.set_types(types)
                    write = cp.write_row
                    for r in records:
                        write((r["name"], r["price"], r["stock"], now, now))
            return _in_transaction(engine, conn, copy)

        sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in (*names[1:], "updated_at"))

        def staged(cur: Any) -> None:  # COPY into a temporary table, then one INSERT … ON CONFLICT
            cur.execute(f"CREATE TEMP TABLE stage ON COMMIT DROP AS SELECT {cols} FROM {table} WITH NO DATA")
            with cur.copy(f"COPY stage ({cols}) FROM STDIN (FORMAT BINARY)") as cp:
                cp.set_types(types)
                write = cp.write_row
                for r in records:
                    write((r["sku"], r["name"], r["price"], r["stock"], now, now))
            cur.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM stage "
                        f"ON CONFLICT (sku) DO UPDATE SET {sets}")
        return _in_transaction(engine, conn, staged)
    sql = f"INSERT INTO {table} ({cols}) VALUES ({marks})"
    if job.scenario == "upsert":
        update = (*names[1:], "updated_at")
        if engine.name == "mysql":
            sql += " ON DUPLICATE KEY UPDATE " + ", ".join(f"{c} = VALUES({c})" for c in update)
        else:
            sql += " ON CONFLICT (sku) DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in update)

    get = itemgetter(*names)
    stamps = (now, now)

    def many(cur: Any) -> None:
        cur.executemany(sql, [get(r) + stamps for r in records])
    return _in_transaction(engine, conn, many)


def _raw_table(job: Job) -> None:
    engine = job.engine
    engine.drop(job.table)
    engine.create_table(job.table, job.columns)
    rows = job.preload()
    if rows:
        engine.load(job.table, [c for c, _ in job.columns], [tuple(r.values()) for r in rows])


def _in_transaction(engine: Engine, conn: Any, body: Callable[[Any], Any]) -> Op:
    def op() -> None:
        cur = conn.cursor()
        if engine.name == "postgresql":
            with conn.transaction():
                body(cur)
        else:
            conn.begin() if engine.name == "mysql" else conn.execute("BEGIN")
            body(cur)
            conn.commit() if engine.name == "mysql" else conn.execute("COMMIT")
    return op


# -- DataFlow ----------------------------------------------------------------------


def dataflow(job: Job, mode: str = "balanced") -> Op:
    from dataflow import DataFlow, LocalRuntime, WorkflowBuilder

    engine = job.engine
    if engine.name == "sqlite":
        engine.drop(job.table, file="dataflow")
    else:
        engine.drop(job.table)
    db = DataFlow(engine.dataflow_url(), bulk_optimization_mode=mode)
    for name, value in job.knobs.items():
        setattr(type(db.dialect), name, value)
    attrs: dict[str, Any] = {"__tablename__": job.table,
                             "__annotations__": {c: {"str": str, "key": str, "float": float, "int": int}[k]
                                                 for c, k in job.columns}}
    if job.scenario == "upsert":
        attrs["__indexes__"] = [{"name": f"ux_{job.table}", "fields": ["sku"], "unique": True}]
    db.model(type("Product", (), attrs))
    rt = LocalRuntime()
    preload = job.preload()
    if preload:
        wf = WorkflowBuilder(db)
        wf.add_node("ProductBulkCreateNode", "load", {"records": preload})
        rt.execute(wf.build())
    wf = WorkflowBuilder(db)
    if job.scenario == "update":
        wf.add_node("ProductBulkUpdateNode", "op", {"filter": {"stock": {"$lt": job.n}},
                                                     "fields": {"price": 100.0 + job.rep}})
        expect: Any = {"updated": job.n}
    elif job.scenario == "upsert":
        wf.add_node("ProductBulkUpsertNode", "op", {"records": job.records(), "conflict_on": ["sku"]})
        expect = {"inserted": job.n - job.n // 2, "updated": job.n // 2}
    elif job.scenario == "huge":
        wf.add_node("ProductBulkCreateNode", "op", {"records": _generated(job.n)})
        expect = {"inserted": job.n}
    else:
        wf.add_node("ProductBulkCreateNode", "op", {"records": job.records()})
        expect = {"inserted": job.n}
    built = wf.build()

    def op() -> None:
        results, _ = rt.execute(built)
        got = {k: results["op"][k] for k in expect}
        if got != expect:
            raise AssertionError(f"DataFlow reported {got}, expected {expect}")
    return op


def _generated(n: int) -> Iterator[dict[str, Any]]:
    return ({"name": f"p{i}", "price": i / 100, "stock": i} for i in range(n))


def raw_generator(job: Job) -> Op:
    """The huge import's baseline: psycopg COPY straight from the same generator."""
    engine = job.engine
    engine.drop(job.table)
    engine.run(*job.ddl)
    conn = engine.connect()
    now = datetime.now(UTC).isoformat(timespec="microseconds")

    def copy(cur: Any) -> None:
        with cur.copy(f"COPY {job.table} (name, price, stock, created_at, updated_at) FROM STDIN (FORMAT BINARY)") as cp:
            cp.set_types(["text", "float8", "int8", "varchar", "varchar"])
            for r in _generated(job.n):
                cp.write_row((r["name"], r["price"], r["stock"], now, now))
    return _in_transaction(engine, conn, copy)


# -- SQLAlchemy and Django ---------------------------------------------------------------


def sqlalchemy_core(job: Job) -> Op:
    _raw_table(job)
    sa = _peers.sqlalchemy_engine(job.engine)
    from sqlalchemy import update

    t = _peers.sqlalchemy_table(job.table, job.columns)
    if job.scenario == "update":
        stmt = update(t).where(t.c.stock < job.n).values(price=100.0 + job.rep, updated_at=datetime.now())

        def op() -> None:
            with sa.begin() as conn:
                conn.execute(stmt)
        return op
    records = job.records()
    stmt = t.insert() if job.scenario == "insert" else _upsert(job, t)

    def op() -> None:
        with sa.begin() as conn:
            conn.execute(stmt, records)
    return op


def _upsert(job: Job, target: Any) -> Any:
    """The dialect's INSERT … ON CONFLICT / ON DUPLICATE KEY UPDATE of SQLAlchemy, on ``target``."""
    names = ("name", "price", "stock")
    if job.engine.name == "mysql":
        from sqlalchemy.dialects.mysql import insert as mysql_insert

        stmt = mysql_insert(target)
        return stmt.on_duplicate_key_update({c: stmt.inserted[c] for c in (*names, "updated_at")})
    if job.engine.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    stmt = dialect_insert(target)
    return stmt.on_conflict_do_update(index_elements=["sku"],
                                      set_={c: stmt.excluded[c] for c in (*names, "updated_at")})


def sqlalchemy_orm(job: Job) -> Op:
    _raw_table(job)
    sa = _peers.sqlalchemy_engine(job.engine)
    from sqlalchemy import update
    from sqlalchemy.orm import Session

    Row = _peers.sqlalchemy_class(_peers.sqlalchemy_table(job.table, job.columns))
    if job.scenario == "update":
        stmt = update(Row).where(Row.stock < job.n).values(price=100.0 + job.rep, updated_at=datetime.now())

        def op() -> None:
            with Session(sa) as session:
                session.execute(stmt, execution_options={"synchronize_session": False})
                session.commit()
        return op
    records = job.records()
    if job.scenario == "upsert":  # ORM-enabled bulk upsert (SQLAlchemy 2)
        stmt = _upsert(job, Row)
        now = datetime.now()
        rows = [{**r, "created_at": now, "updated_at": now} for r in records]

        def op() -> None:
            with Session(sa) as session:
                session.execute(stmt, rows)
                session.commit()
        return op

    def op() -> None:  # the unit of work: add_all + commit
        with Session(sa) as session:
            session.add_all([Row(**r) for r in records])
            session.commit()
    return op


def django(job: Job) -> Op:
    _raw_table(job)
    _peers.configure_django([job.engine])
    from django.db import transaction

    model = _peers.django_model(job.table, job.columns, managed=False)
    alias = job.engine.name
    objects = model.objects.using(alias)
    if job.scenario == "update":
        def op() -> None:
            with transaction.atomic(using=alias):
                objects.filter(stock__lt=job.n).update(price=100.0 + job.rep, updated_at=datetime.now())
        return op
    records = job.records()
    extra: dict[str, Any] = {}
    if job.scenario == "upsert":
        extra = {"update_conflicts": True, "update_fields": ["name", "price", "stock", "updated_at"]}
        if alias != "mysql":  # MySQL's ON DUPLICATE KEY UPDATE cannot name the key
            extra["unique_fields"] = ["sku"]

    def op() -> None:
        with transaction.atomic(using=alias):
            objects.bulk_create([model(**r) for r in records], **extra)
    return op


CONTENDERS: dict[str, Callable[[Job], Op]] = {
    "raw": raw,
    "raw_generator": raw_generator,
    "dataflow": dataflow,
    "dataflow_speed": lambda job: dataflow(job, "speed"),
    "sqlalchemy_core": sqlalchemy_core,
    "sqlalchemy_orm": sqlalchemy_orm,
    "django": django,
}


# -- measuring ---------------------------------------------------------------------


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS (Linux 4.0+)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _count(job: Job) -> int:
    file = "dataflow" if job.contender.startswith("dataflow") else "shared"
    with job.engine.admin(file) as conn:
        cur = conn.cursor()
        cur.execute(f"SELECT count(*) FROM {job.table}")
        return int(cur.fetchone()[0])


def _settle(job: Job) -> None:
    """Start every contender from the same server state, whatever ran before it.

    The run before this one (another contender) left dirty pages, and on
    PostgreSQL an autovacuum of its new table that would land in this run's
    timing. Autovacuum is switched off for the table, a CHECKPOINT writes the
    dirty pages out, and then the server gets ``settle`` seconds of quiet.
    """
    file = "dataflow" if job.contender.startswith("dataflow") else "shared"
    if job.engine.name == "postgresql":
        job.engine.run(f"ALTER TABLE {job.table} SET (autovacuum_enabled = false)", "CHECKPOINT")
    elif job.engine.name == "sqlite":
        job.engine.run("PRAGMA wal_checkpoint(TRUNCATE)", file=file)
    time.sleep(job.settle)


def main(argv: list[str]) -> int:
    job = Job(json.loads(argv[0]))
    op = CONTENDERS[job.contender](job)
    _settle(job)
    gc.collect()
    reset = _reset_peak()
    rss_before = _status_kb("VmRSS")
    cpu = time.process_time()
    start = time.perf_counter()
    op()
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu
    peak = _status_kb("VmHWM")
    rows = _count(job)
    if job.scenario != "huge" and rows != job.expected():
        raise AssertionError(f"{job.contender}: {rows} rows in the table, expected {job.expected()}")
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu, "rss_before_kb": rss_before, "peak_kb": peak,
                      "peak_is_op": reset, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
