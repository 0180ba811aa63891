"""``multi_tenant``: a managed ``tenant_id``, bound per execute, carried by every statement."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from dataflow import (
    AsyncLocalRuntime,
    ConfigurationError,
    DataFlow,
    IntegrityError,
    LocalRuntime,
    ModelError,
    TenantRequiredError,
    WorkflowBuilder,
    WorkflowFailed,
)
from tests.safety.helpers import fails, index_columns, raw, rejected, run_node, snapshot


def _define(db: DataFlow) -> None:
    @db.model
    class Member:
        email: str
        name: str = ""
        __dataflow__ = {"multi_tenant": True}  # noqa: RUF012
        __indexes__ = [{"name": "uq_member_email", "fields": ["email"], "unique": True}]  # noqa: RUF012


def _stored(db: DataFlow, table: str = "members") -> int:
    return int(raw(db, f"SELECT COUNT(*) FROM {db.dialect.quote(table)}")[0][0])


def _emails(db: DataFlow, tenant: str) -> list[str]:
    return [r["email"] for r in snapshot(db, "Member", tenant)]


def test_tenant_id_column_and_its_index_exist(db: DataFlow) -> None:
    """The table gets a tenant_id column, an index on it, and the unique index becomes (tenant_id, email)."""
    _define(db)
    run_node(db, "MemberCreateNode", {"email": "a@x"}, tenant="acme")
    assert raw(db, f"SELECT {db.dialect.quote('tenant_id')} FROM {db.dialect.quote('members')}") == [("acme",)]
    indexes = index_columns(db, "members")
    assert (("tenant_id",), False) in indexes.values()
    assert indexes["uq_member_email"] == (("tenant_id", "email"), True)


def test_create_stamps_the_bound_tenant(db: DataFlow) -> None:
    """A record created inside tenant_context.switch carries that tenant, in the result and in the table."""
    _define(db)
    with db.tenant_context.switch("acme"):
        created = run_node(db, "MemberCreateNode", {"email": "a@x"})
    assert created["tenant_id"] == "acme"
    assert _emails(db, "acme") == ["a@x"]
    assert _emails(db, "globex") == []


def test_execute_tenant_id_wins_over_the_bound_tenant(db: DataFlow) -> None:
    """execute(..., tenant_id=...) is the tenant of that run even inside another tenant's switch block."""
    _define(db)
    with db.tenant_context.switch("acme"):
        created = run_node(db, "MemberCreateNode", {"email": "a@x"}, tenant="globex")
    assert created["tenant_id"] == "globex"
    assert _emails(db, "acme") == []


def test_no_tenant_raises_before_anything_runs(db: DataFlow) -> None:
    """Without a tenant, execute raises TenantRequiredError: no node runs, not even a user node before it."""
    _define(db)
    calls: list[str] = []
    db.register_node("Audit", lambda **kw: calls.append("ran") or {"ok": True})
    wf = WorkflowBuilder(db)
    wf.add_node("Audit", "audit", {})
    wf.add_node("MemberCreateNode", "create", {"email": "a@x"})
    with pytest.raises(TenantRequiredError, match="create"):
        LocalRuntime().execute(wf.build())
    assert calls == []
    assert _stored(db) == 0


def test_async_runtime_takes_the_tenant_too(db: DataFlow) -> None:
    """execute_async honours tenant_id= and the bound tenant, and raises TenantRequiredError without one."""
    _define(db)

    async def main() -> None:
        runtime = AsyncLocalRuntime()
        wf = WorkflowBuilder(db)
        wf.add_node("MemberCreateNode", "c", {"email": "a@x"})
        built = wf.build()
        results, _ = await runtime.execute_async(built, tenant_id="acme")
        assert results["c"]["tenant_id"] == "acme"
        with db.tenant_context.switch("globex"):
            results, _ = await runtime.execute_async(built)
        assert results["c"]["tenant_id"] == "globex"
        with pytest.raises(TenantRequiredError):
            await runtime.execute_async(built)

    asyncio.run(main())
    assert (_emails(db, "acme"), _emails(db, "globex"), _stored(db)) == (["a@x"], ["a@x"], 2)


def test_switch_is_scoped_and_nests() -> None:
    """switch binds for its with-block only; a nested switch restores the outer tenant when it ends."""
    with DataFlow() as db:
        ctx = db.tenant_context
        assert ctx.current is None
        with ctx.switch("acme"):
            assert ctx.current == "acme"
            with ctx.switch("globex"):
                assert ctx.current == "globex"
            assert ctx.current == "acme"
        assert ctx.current is None


def test_switch_is_restored_after_an_error() -> None:
    """An exception inside the with-block still unbinds the tenant."""
    with DataFlow() as db:
        with pytest.raises(RuntimeError), db.tenant_context.switch("acme"):
            raise RuntimeError("boom")
        assert db.tenant_context.current is None


def test_each_instance_has_its_own_tenant_context() -> None:
    """A tenant bound for one DataFlow instance is not bound for another."""
    with DataFlow() as one, DataFlow() as two, one.tenant_context.switch("acme"):
        assert two.tenant_context.current is None


@pytest.mark.parametrize("bad", ["", 5, None, b"acme", "x" * 256])
def test_bad_tenant_ids_are_refused(db: DataFlow, bad: Any) -> None:
    """An empty, non-string or over-long tenant id is a TenantRequiredError, for switch and for execute."""
    _define(db)
    with pytest.raises(TenantRequiredError), db.tenant_context.switch(bad):
        pass
    if bad is not None:
        with pytest.raises(TenantRequiredError):
            run_node(db, "MemberCreateNode", {"email": "a@x"}, tenant=bad)
    assert _stored(db) == 0


def test_the_bound_tenant_does_not_leak_into_other_threads(db: DataFlow) -> None:
    """A thread started inside a switch block has no tenant; a tenant it binds is not seen by the caller."""
    _define(db)
    seen: list[Any] = []

    def worker() -> None:
        seen.append(db.tenant_context.current)
        try:
            run_node(db, "MemberCreateNode", {"email": "t@x"})
        except TenantRequiredError as exc:
            seen.append(exc)
        with db.tenant_context.switch("globex"):
            seen.append(run_node(db, "MemberCreateNode", {"email": "t@x"})["tenant_id"])

    with db.tenant_context.switch("acme"):
        thread = threading.Thread(target=worker)
        thread.start()
        thread.join(30)
        assert db.tenant_context.current == "acme"
    assert seen[0] is None
    assert isinstance(seen[1], TenantRequiredError)
    assert seen[2] == "globex"
    assert (_emails(db, "acme"), _emails(db, "globex")) == ([], ["t@x"])


def test_concurrent_asyncio_tasks_keep_their_own_tenant(db: DataFlow) -> None:
    """Tasks switching to different tenants at the same time each write and read only their own rows."""
    _define(db)

    async def tenant_task(tenant: str, runtime: AsyncLocalRuntime) -> list[str]:
        with db.tenant_context.switch(tenant):
            for i in range(5):
                wf = WorkflowBuilder(db)
                wf.add_node("MemberCreateNode", "c", {"email": f"{tenant}-{i}@x"})
                await runtime.execute_async(wf.build())
                await asyncio.sleep(0)
            wf = WorkflowBuilder(db)
            wf.add_node("MemberListNode", "l", {"order_by": ["email"]})
            results, _ = await runtime.execute_async(wf.build())
            return [r["tenant_id"] for r in results["l"]["records"]]

    async def main() -> list[list[str]]:
        runtime = AsyncLocalRuntime()
        return list(await asyncio.gather(*(tenant_task(t, runtime) for t in ("acme", "globex", "initech"))))

    for tenant, seen in zip(("acme", "globex", "initech"), asyncio.run(main())):
        assert seen == [tenant] * 5


def test_tenant_never_leaks_to_the_next_workflow_on_the_same_connection(engine_url: str) -> None:
    """With one pooled connection, a run for tenant A leaves nothing behind: the next run needs and uses its own tenant."""
    with DataFlow(engine_url, pool_size=1) as db:
        _define(db)
        run_node(db, "MemberCreateNode", {"email": "a@x"}, tenant="acme")
        assert db.pool_stats()["size"] == 1
        with pytest.raises(TenantRequiredError):
            run_node(db, "MemberListNode", {})
        assert run_node(db, "MemberListNode", {}, tenant="globex")["records"] == []
        with db.tenant_context.switch("acme"):
            assert [r["email"] for r in run_node(db, "MemberListNode", {})["records"]] == ["a@x"]
        assert run_node(db, "MemberListNode", {}, tenant="globex")["count"] == 0


def test_dataflow_multi_tenant_applies_to_every_model(engine_url: str) -> None:
    """DataFlow(multi_tenant=True) makes every model multi-tenant; a model may opt out with an explicit False."""
    with DataFlow(engine_url, multi_tenant=True) as db:

        @db.model
        class Invoice:
            total: int

        @db.model
        class Country:
            code: str
            __dataflow__ = {"multi_tenant": False}  # noqa: RUF012

        assert db.models["Invoice"].multi_tenant and not db.models["Country"].multi_tenant
        with pytest.raises(TenantRequiredError):
            run_node(db, "InvoiceCreateNode", {"total": 1})
        assert run_node(db, "InvoiceCreateNode", {"total": 1}, tenant="acme")["tenant_id"] == "acme"
        assert "tenant_id" not in run_node(db, "CountryCreateNode", {"code": "NZ"})


def test_environment_variable_turns_it_on(engine_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """DATAFLOW_MULTI_TENANT=1 is the same as DataFlow(multi_tenant=True); the argument wins over it."""
    monkeypatch.setenv("DATAFLOW_MULTI_TENANT", "1")
    with DataFlow(engine_url) as db:

        @db.model
        class Invoice:
            total: int

        assert db.models["Invoice"].multi_tenant
    with DataFlow(engine_url, multi_tenant=False) as db:

        @db.model
        class Receipt:
            total: int

        assert not db.models["Receipt"].multi_tenant


def test_multi_tenant_argument_must_be_a_bool() -> None:
    """DataFlow(multi_tenant=...) takes True or False only."""
    with pytest.raises(ConfigurationError, match="multi_tenant"):
        DataFlow(multi_tenant="yes")  # type: ignore[arg-type]


def test_unique_index_is_unique_per_tenant(db: DataFlow) -> None:
    """Two tenants may hold the same unique value; one tenant may not hold it twice."""
    _define(db)
    run_node(db, "MemberCreateNode", {"email": "same@x"}, tenant="acme")
    run_node(db, "MemberCreateNode", {"email": "same@x"}, tenant="globex")
    err = fails(db, "MemberCreateNode", {"email": "same@x"}, tenant="acme")
    assert isinstance(err, IntegrityError)
    assert (_emails(db, "acme"), _emails(db, "globex")) == (["same@x"], ["same@x"])


def test_upsert_on_a_unique_key_stays_within_the_tenant(db: DataFlow) -> None:
    """BulkUpsert on a unique key updates this tenant's row and never another tenant's row with the same key."""
    _define(db)
    run_node(db, "MemberCreateNode", {"email": "same@x", "name": "acme's"}, tenant="acme")
    before = snapshot(db, "Member", "acme")
    out = run_node(db, "MemberBulkUpsertNode", {"records": [{"email": "same@x", "name": "globex's"}],
                                                "conflict_on": ["email"]}, tenant="globex")
    assert out == {"inserted": 1, "updated": 0}
    out = run_node(db, "MemberBulkUpsertNode", {"records": [{"email": "same@x", "name": "globex 2"}],
                                                "conflict_on": ["email"]}, tenant="globex")
    assert out == {"inserted": 0, "updated": 1}
    assert snapshot(db, "Member", "acme") == before
    assert [r["name"] for r in snapshot(db, "Member", "globex")] == ["globex 2"]


def test_concurrent_upserts_of_one_new_key_never_make_two_rows(db: DataFlow) -> None:
    """Two threads upserting the same new key for one tenant leave one row; the slower may fail with IntegrityError."""
    _define(db)
    for round_ in range(5):
        email = f"race{round_}@x"
        gate = threading.Barrier(2)
        outcomes: list[Any] = [None, None]

        def worker(slot: int, email: str = email, gate: threading.Barrier = gate, outcomes: list[Any] = outcomes) -> None:
            wf = WorkflowBuilder(db)
            wf.add_node("MemberBulkUpsertNode", "u", {"records": [{"email": email, "name": f"t{slot}"}],
                                                      "conflict_on": ["email"]})
            built = wf.build()
            gate.wait()
            try:
                outcomes[slot] = LocalRuntime().execute(built, tenant_id="acme")[0]["u"]
            except WorkflowFailed as exc:
                outcomes[slot] = exc.__cause__

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert [r["email"] for r in snapshot(db, "Member", "acme")].count(email) == 1
        done = [o for o in outcomes if isinstance(o, dict)]
        assert len(done) >= 1, outcomes
        assert all(isinstance(o, (dict, IntegrityError)) for o in outcomes), outcomes
        assert sum(o["inserted"] for o in done) == 1


@pytest.mark.parametrize(("node", "params"), [
    ("MemberCreateNode", {"email": "a@x", "tenant_id": "globex"}),
    ("MemberUpdateNode", {"id": 1, "tenant_id": "globex"}),
    ("MemberUpdateNode", {"filter": {"id": 1}, "fields": {"tenant_id": "globex"}}),
    ("MemberBulkUpdateNode", {"filter": {"id": 1}, "fields": {"tenant_id": "globex"}}),
    ("MemberBulkUpdateNode", {"records": [{"id": 1, "tenant_id": "globex"}]}),
    ("MemberBulkCreateNode", {"records": [{"email": "b@x", "tenant_id": "globex"}]}),
    ("MemberBulkUpsertNode", {"records": [{"email": "a@x", "tenant_id": "globex"}], "conflict_on": ["email"]}),
])
def test_caller_cannot_set_tenant_id(db: DataFlow, node: str, params: dict[str, Any]) -> None:
    """Writing tenant_id is a NodeParameterError naming the field; the tenant's rows stay as they were."""
    _define(db)
    run_node(db, "MemberCreateNode", {"email": "a@x"}, tenant="acme")
    before = snapshot(db, "Member", "acme")
    assert rejected(db, node, params, tenant="acme").field == "tenant_id"
    assert snapshot(db, "Member", "acme") == before
    assert snapshot(db, "Member", "globex") == []


@pytest.mark.parametrize(("node", "params"), [
    ("MemberListNode", {"filter": {"tenant_id": "globex"}}),
    ("MemberListNode", {"filter": {"$or": [{"tenant_id": "globex"}, {"email": "a@x"}]}}),
    ("MemberListNode", {"filter": {"$not": {"tenant_id": "acme"}}}),
    ("MemberListNode", {"filter": {"tenant_id": {"$ne": "acme"}}}),
    ("MemberUpdateNode", {"filter": {"tenant_id": "globex"}, "fields": {"name": "n"}}),
    ("MemberDeleteNode", {"filter": {"tenant_id": "globex"}}),
    ("MemberBulkDeleteNode", {"filter": {"$and": [{"tenant_id": {"$in": ["acme", "globex"]}}]}}),
])
def test_caller_cannot_filter_on_tenant_id(db: DataFlow, node: str, params: dict[str, Any]) -> None:
    """tenant_id may not appear in a filter, at any depth: the tenant comes only from the context."""
    _define(db)
    assert rejected(db, node, params, tenant="acme").field == "tenant_id"


def test_tenant_id_may_be_projected_and_ordered(db: DataFlow) -> None:
    """A List may project or order by tenant_id; it still sees only its tenant's rows."""
    _define(db)
    run_node(db, "MemberCreateNode", {"email": "a@x"}, tenant="acme")
    run_node(db, "MemberCreateNode", {"email": "b@x"}, tenant="globex")
    out = run_node(db, "MemberListNode", {"fields": ["email", "tenant_id"], "order_by": ["-tenant_id"]}, tenant="acme")
    assert out["records"] == [{"email": "a@x", "tenant_id": "acme"}]


def test_models_without_the_option_need_no_tenant(db: DataFlow) -> None:
    """A model without multi_tenant runs with or without a tenant and has no tenant_id column."""

    @db.model
    class Setting:
        key: str

    created = run_node(db, "SettingCreateNode", {"key": "k"})
    assert "tenant_id" not in created
    assert run_node(db, "SettingListNode", {}, tenant="acme")["count"] == 1


def test_a_workflow_mixing_models_carries_the_tenant_to_each_node(db: DataFlow) -> None:
    """In one workflow, the multi-tenant node gets the tenant and the plain node works as before."""
    _define(db)

    @db.model
    class Log:
        text: str

    wf = WorkflowBuilder(db)
    wf.add_node("MemberCreateNode", "m", {"email": "a@x"})
    wf.add_node("LogCreateNode", "log", {})
    wf.add_connection("m", "email", "log", "text")
    results, _ = LocalRuntime().execute(wf.build(), tenant_id="acme")
    assert (results["m"]["tenant_id"], results["log"]["text"]) == ("acme", "a@x")


def test_declaring_tenant_id_on_a_multi_tenant_model_is_a_model_error(db: DataFlow) -> None:
    """A multi-tenant model may not declare 'tenant_id' itself."""
    with pytest.raises(ModelError, match="tenant_id"):

        @db.model
        class Bad:
            tenant_id: str
            __dataflow__ = {"multi_tenant": True}  # noqa: RUF012


def test_rows_from_before_the_option_belong_to_no_tenant(db: DataFlow, engine_url: str) -> None:
    """Turning multi_tenant on for an existing table leaves its old rows (tenant_id NULL) visible to no tenant."""

    @db.model
    class Ledger:
        amount: int
        __tablename__ = "ledgers_mt"

    run_node(db, "LedgerCreateNode", {"amount": 1})
    with DataFlow(engine_url) as db2:

        @db2.model
        class Ledger:
            amount: int
            __tablename__ = "ledgers_mt"
            __dataflow__ = {"multi_tenant": True}  # noqa: RUF012

        assert run_node(db2, "LedgerListNode", {}, tenant="acme")["count"] == 0
        assert run_node(db2, "LedgerBulkDeleteNode", {"filter": {}, "confirmed": True}, tenant="acme") == {"deleted": 0}
    assert _stored(db, "ledgers_mt") == 1
