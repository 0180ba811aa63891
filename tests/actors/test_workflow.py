"""WorkflowActor: one unit of work on one lease, in one transaction."""

from __future__ import annotations

from typing import Any

import pytest

from actors import ConnectionLost, LeaseReleased, WorkflowActor
from actors.protocols import TxState
from tests.fakes import FakeDisconnect, FakeDriver, wait_until

from .conftest import SupervisorFactory


class NodeFailed(Exception):
    """A failing node body in these tests."""


def test_commits_on_success(supervisor: SupervisorFactory, driver: FakeDriver) -> None:
    """A body that returns commits its transaction and hands back its result."""
    sup = supervisor()
    with sup.checkout() as lease:
        result = WorkflowActor(driver, lease).run(lambda conn: conn.execute("insert"))
        conn = lease.connection
    assert result == "insert"
    assert (driver.begins, driver.commits, driver.rollbacks) == (1, 1, 0)
    assert conn.tx is TxState.IDLE and conn.statements == ["insert"]


def test_rolls_back_and_reraises_on_failure(supervisor: SupervisorFactory, driver: FakeDriver) -> None:
    """A body that raises rolls the transaction back and the same error reaches the caller."""
    sup = supervisor()

    def body(conn: Any) -> None:
        conn.execute("insert")
        raise NodeFailed("constraint")

    with sup.checkout() as lease:
        with pytest.raises(NodeFailed):
            WorkflowActor(driver, lease).run(body)
        conn = lease.connection
        assert conn.tx is TxState.IDLE
    assert (driver.begins, driver.commits, driver.rollbacks) == (1, 0, 1)
    with sup.checkout() as again:
        assert again.connection is conn  # a clean rollback keeps the connection


def test_disconnect_marks_the_lease_broken(supervisor: SupervisorFactory, driver: FakeDriver) -> None:
    """A lost connection raises ConnectionLost (driver error chained) and is replaced after release."""
    sup = supervisor(min_size=1, max_size=1)

    def body(conn: Any) -> None:
        driver.kill(conn)
        conn.execute("insert")

    with sup.checkout() as lease:
        conn = lease.connection
        with pytest.raises(ConnectionLost) as info:
            WorkflowActor(driver, lease).run(body)
        assert isinstance(info.value.__cause__, FakeDisconnect)
    wait_until(lambda: conn.closed)
    wait_until(lambda: sup.stats().idle == 1)
    with sup.checkout() as fresh:
        assert fresh.connection is not conn
    assert driver.opens == 2


def test_disconnect_on_commit_raises_connection_lost(
    supervisor: SupervisorFactory, driver: FakeDriver
) -> None:
    """A connection that dies before COMMIT raises ConnectionLost and is not reused."""
    sup = supervisor(min_size=1, max_size=1)
    with sup.checkout() as lease:
        conn = lease.connection
        with pytest.raises(ConnectionLost):
            WorkflowActor(driver, lease).run(lambda c: driver.kill(c))
    wait_until(lambda: conn.closed)
    assert driver.commits == 0


def test_non_transactional_issues_no_begin_or_commit(
    supervisor: SupervisorFactory, driver: FakeDriver
) -> None:
    """transactional=False runs the body without BEGIN or COMMIT."""
    sup = supervisor()
    with sup.checkout() as lease:
        result = WorkflowActor(driver, lease).run(lambda conn: conn.execute("select"), transactional=False)
    assert result == "select"
    assert (driver.begins, driver.commits, driver.rollbacks) == (0, 0, 0)


def test_released_lease_cannot_run(supervisor: SupervisorFactory, driver: FakeDriver) -> None:
    """A workflow on a released lease raises LeaseReleased before touching the database."""
    sup = supervisor()
    lease = sup.checkout()
    lease.release()
    with pytest.raises(LeaseReleased):
        WorkflowActor(driver, lease).run(lambda conn: conn.execute("x"))
    assert driver.begins == 0
