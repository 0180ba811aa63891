"""A Hypothesis state machine of concurrent bank transfers between versioned accounts.

Each transfer is one workflow: read both accounts, plan, debit (naming the
version it read), maybe fail, credit, maybe fail. Batches of transfers run
concurrently, with faults injected between and after the two updates:
permanent failures, transient driver errors (retried), and connections
killed by the server (retried). After every step the money is conserved,
no balance is negative, and each balance is its start plus exactly the
transfers that reported success.
"""

from __future__ import annotations

import threading
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from actors import Backoff
from dataflow import DataFlow, LocalRuntime, OutcomeUnknownError, WorkflowBuilder, WorkflowFailed
from tests.safety.faults import kill, patched, transient_error

ACCOUNTS = 3
START = 100
FAULTS = ("none", "none", "mid", "after", "transient_mid", "transient_after", "kill_mid")


class Injected(Exception):
    """A permanent failure injected into a transfer."""


class Insufficient(Exception):
    """The source account cannot cover the transfer."""


class BankMachine(RuleBasedStateMachine):
    """Concurrent transfers on one DataFlow; the model is the balance each account should have."""

    def __init__(self, db: DataFlow) -> None:
        super().__init__()
        self.db = db
        self._registered = False
        self._setup()

    def _setup(self) -> None:
        db = self.db

        @db.model
        class Account:
            owner: str
            balance: int
            __dataflow__ = {"versioned": True}  # noqa: RUF012

        run = LocalRuntime()
        wipe = WorkflowBuilder(db)
        wipe.add_node("AccountBulkDeleteNode", "wipe", {"filter": {}, "confirmed": True})
        run.execute(wipe.build())
        self.ids: list[int] = []
        for i in range(ACCOUNTS):
            wf = WorkflowBuilder(db)
            wf.add_node("AccountCreateNode", "c", {"owner": f"acct{i}", "balance": START})
            self.ids.append(run.execute(wf.build())[0]["c"]["id"])
        self.model = {i: START for i in self.ids}
        self.transfer_no = 0
        self.fired: set[str] = set()
        self.local = threading.local()
        self._register()

    def _register(self) -> None:
        db = self.db
        fired = self.fired

        def plan(src: dict[str, Any], dst: dict[str, Any], amount: int) -> dict[str, Any]:
            if src["balance"] < amount:
                raise Insufficient(f"{src['balance']} < {amount}")
            return {"from_balance": src["balance"] - amount, "from_version": src["version"],
                    "to_balance": dst["balance"] + amount, "to_version": dst["version"]}

        def fault(tag: str, kind: str, **_: Any) -> dict[str, Any]:
            if kind in ("mid", "after"):
                raise Injected(f"{tag}: injected {kind}")
            if tag in fired:
                return {}
            fired.add(tag)  # transient faults strike the first attempt only
            if kind.startswith("transient"):
                raise transient_error(db)
            kill(db, self.local.conn)  # kill_mid: the server drops this workflow's connection
            return {}

        db.register_node("Plan", plan)
        db.register_node("Fault", fault)

    def _transfer(self, src: int, dst: int, amount: int, kind: str) -> Any:
        self.transfer_no += 1
        tag = f"t{self.transfer_no}"
        wf = WorkflowBuilder(self.db)
        wf.add_node("AccountReadNode", "src", {"id": src})
        wf.add_node("AccountReadNode", "dst", {"id": dst})
        wf.add_node("Plan", "plan", {"amount": amount})
        wf.add_connection("src", "balance", "plan", "src.balance")
        wf.add_connection("src", "version", "plan", "src.version")
        wf.add_connection("dst", "balance", "plan", "dst.balance")
        wf.add_connection("dst", "version", "plan", "dst.version")
        wf.add_node("AccountUpdateNode", "debit", {"filter": {"id": src}, "fields": {}})
        wf.add_connection("plan", "from_version", "debit", "filter.version")
        wf.add_connection("plan", "from_balance", "debit", "fields.balance")
        if kind in ("mid", "transient_mid", "kill_mid"):
            wf.add_node("Fault", "fault", {"tag": tag, "kind": kind})
            wf.add_connection("debit", "rows_affected", "fault", "after_debit")
        wf.add_node("AccountUpdateNode", "credit", {"filter": {"id": dst}, "fields": {}})
        wf.add_connection("plan", "to_version", "credit", "filter.version")
        wf.add_connection("plan", "to_balance", "credit", "fields.balance")
        if kind in ("after", "transient_after"):
            wf.add_node("Fault", "fault", {"tag": tag, "kind": kind})
            wf.add_connection("credit", "rows_affected", "fault", "after_credit")
        return wf.build()

    @rule(batch=st.lists(
        st.tuples(st.integers(0, ACCOUNTS - 1), st.integers(1, ACCOUNTS - 1), st.integers(1, 80), st.sampled_from(FAULTS)),
        min_size=1, max_size=3,
    ))
    def transfer_concurrently(self, batch: list[tuple[int, int, int, str]]) -> None:
        flows = []
        for src_i, shift, amount, kind in batch:
            src, dst = self.ids[src_i], self.ids[(src_i + shift) % ACCOUNTS]
            flows.append(((src, dst, amount, kind), self._transfer(src, dst, amount, kind)))
        outcomes: list[Any] = [None] * len(flows)
        original_begin = self.db.dialect.begin

        def begin(conn: Any) -> None:
            self.local.conn = conn  # each workflow thread remembers its own connection
            original_begin(conn)

        def run(i: int) -> None:
            try:
                LocalRuntime().execute(flows[i][1])
                outcomes[i] = "ok"
            except BaseException as exc:  # noqa: BLE001 - collected and judged below
                outcomes[i] = exc

        with patched(self.db.dialect, "begin", begin):
            threads = [threading.Thread(target=run, args=(i,)) for i in range(len(flows))]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
        for ((src, dst, amount, kind), _), outcome in zip(flows, outcomes):
            assert not isinstance(outcome, OutcomeUnknownError), outcome
            if outcome == "ok":
                assert kind not in ("mid", "after"), "a transfer with a permanent fault reported success"
                self.model[src] -= amount
                self.model[dst] += amount
            else:
                assert isinstance(outcome, WorkflowFailed), repr(outcome)

    def _balances(self) -> dict[int, int]:
        wf = WorkflowBuilder(self.db)
        wf.add_node("AccountListNode", "all", {})
        records = LocalRuntime().execute(wf.build())[0]["all"]["records"]
        return {r["id"]: r["balance"] for r in records}

    @invariant()
    def money_is_conserved_and_matches_the_reported_transfers(self) -> None:
        balances = self._balances()
        assert sum(balances.values()) == ACCOUNTS * START
        assert all(b >= 0 for b in balances.values()), balances
        assert balances == self.model


def test_bank_transfers(db: DataFlow) -> None:
    """Concurrent versioned transfers with injected failures: total conserved, no overdraft, exact balances."""
    original = (Backoff.INITIAL_DELAY, Backoff.MAX_DELAY)
    Backoff.INITIAL_DELAY, Backoff.MAX_DELAY = 0.002, 0.02
    try:
        run_state_machine_as_test(
            lambda: BankMachine(db),
            settings=settings(max_examples=20, stateful_step_count=8, deadline=None, database=None,
                              suppress_health_check=list(HealthCheck)),
        )
    finally:
        Backoff.INITIAL_DELAY, Backoff.MAX_DELAY = original
