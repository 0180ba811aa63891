"""SafetyActor: the compensation journal, against an in-memory durable journal (no database)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pykka
import pytest

from actors import (
    CommitOutcomeUnknown,
    Compensation,
    CompensationReport,
    ConnectionLost,
    OrphanRun,
    Safety,
    SafetyActor,
    WorkflowActor,
)
from actors.safety import import_qualified, qualified_name
from tests.fakes import FakeDriver

from .conftest import SupervisorFactory


class Undo(Exception):
    """A compensation that fails."""


class MemoryJournal:
    """A Journal in a dict: rows by (run_id, attempt, seq); orphans handed in by the test."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, int, int], tuple[Compensation, str]] = {}
        self.orphans: list[OrphanRun] = []
        self.opened = self.closed = self.beats = 0
        self.fail_append = False

    def open(self) -> None:
        self.opened += 1

    def close(self) -> None:
        self.closed += 1

    def append(self, entry: Compensation) -> None:
        if self.fail_append:
            raise OSError("journal unavailable")
        self.rows[(entry.run_id, entry.attempt, entry.seq)] = (entry, "pending")

    def forget(self, run_id: str, attempt: int) -> None:
        for key in [k for k in self.rows if k[:2] == (run_id, attempt)]:
            del self.rows[key]

    def settle(self, run_id: str, attempt: int, done: Sequence[int], failed: Sequence[tuple[int, str]]) -> None:
        for seq in done:
            self.rows.pop((run_id, attempt, seq), None)
        for seq, error in failed:
            entry, _ = self.rows[(run_id, attempt, seq)]
            self.rows[(run_id, attempt, seq)] = (entry, f"failed: {error}")

    def heartbeat(self) -> None:
        self.beats += 1

    def claim_orphans(self) -> list[OrphanRun]:
        out, self.orphans = self.orphans, []
        return out


@pytest.fixture
def calls() -> list[str]:
    return []


@pytest.fixture
def make_safety() -> Iterator[Callable[..., Safety]]:
    made: list[Safety] = []

    def make(resolve: Callable[[Compensation], Any] = lambda e: None, journal: Any = None) -> Safety:
        safety = Safety(resolve, timeout=2.0, journal=journal)
        made.append(safety)
        return safety

    yield make
    for safety in made:
        safety.stop()


def _undo(calls: list[str], fail: frozenset[str] = frozenset()) -> Callable[[Any, Any], None]:
    def undo(params: Any, result: Any) -> None:
        calls.append(params["node"])
        if params["node"] in fail:
            raise Undo(params["node"])

    return undo


def _record(saga: Any, fn: Callable[..., Any], *nodes: str) -> None:
    for node in nodes:
        saga.record(node, "Step", fn, {"node": node}, {"ok": True})


def test_compensations_run_last_first_and_only_once(make_safety: Callable[..., Safety], calls: list[str]) -> None:
    """Compensate runs the journalled steps in reverse; a second compensate of the attempt runs nothing."""
    saga = make_safety().saga("run", 1)
    _record(saga, _undo(calls), "a", "b", "c")
    assert saga.compensate() == CompensationReport(("c", "b", "a"), ())
    assert saga.compensate() == CompensationReport()
    assert calls == ["c", "b", "a"]


def test_a_raising_compensation_is_reported_and_the_rest_still_run(
    make_safety: Callable[..., Safety], calls: list[str]
) -> None:
    """Failures are collected, not propagated: every other compensation still runs."""
    saga = make_safety().saga("run", 1)
    _record(saga, _undo(calls, frozenset({"b"})), "a", "b", "c")
    report = saga.compensate()
    assert report.compensated == ("c", "a")
    assert [(n, type(e)) for n, e in report.errors] == [("b", Undo)]
    assert calls == ["c", "b", "a"]


def test_attempts_are_journalled_apart(make_safety: Callable[..., Safety], calls: list[str]) -> None:
    """Each attempt of a run has its own journal: compensating one leaves the other alone."""
    safety = make_safety()
    first, second = safety.saga("run", 1), safety.saga("run", 2)
    _record(first, _undo(calls), "a")
    _record(second, _undo(calls), "b")
    first.compensate()
    second.forget()
    assert calls == ["a"]


def test_a_saga_without_steps_never_starts_the_actor(make_safety: Callable[..., Safety]) -> None:
    """No compensating step, no message: compensate and forget cost nothing."""
    saga = make_safety().saga("run", 1)
    assert saga.compensate() == CompensationReport()
    saga.forget()
    assert pykka.ActorRegistry.get_by_class(SafetyActor) == []


def test_entries_are_durable_before_record_returns(make_safety: Callable[..., Safety], calls: list[str]) -> None:
    """With a journal, record() returns only once the entry is written; forget drops it."""
    journal = MemoryJournal()
    saga = make_safety(journal=journal).saga("run", 1)
    _record(saga, _undo(calls), "a")
    assert [k for k in journal.rows] == [("run", 1, 0)]
    saga.forget()
    _wait(lambda: not journal.rows)


def test_a_failed_append_raises_but_the_entry_is_still_compensated(
    make_safety: Callable[..., Safety], calls: list[str]
) -> None:
    """The step cannot be acknowledged when its entry is not durable, yet its compensation is kept in memory."""
    journal = MemoryJournal()
    journal.fail_append = True
    saga = make_safety(journal=journal).saga("run", 1)
    with pytest.raises(OSError):
        _record(saga, _undo(calls), "a")
    assert saga.compensate().compensated == ("a",)


def test_failed_compensations_stay_in_the_journal(make_safety: Callable[..., Safety], calls: list[str]) -> None:
    """Compensations that ran leave the journal; ones that raised stay, marked failed, for an operator."""
    journal = MemoryJournal()
    saga = make_safety(journal=journal).saga("run", 1)
    _record(saga, _undo(calls, frozenset({"a"})), "a", "b")
    saga.compensate()
    assert {k: v[1] for k, v in journal.rows.items()} == {("run", 1, 0): "failed: Undo: a"}


def test_recovery_runs_orphans_in_reverse_and_waits_for_unresolved_ones(
    make_safety: Callable[..., Safety], calls: list[str]
) -> None:
    """Orphans run last-first until one cannot be resolved; registering it later resumes from there."""
    journal = MemoryJournal()
    known: dict[str, Any] = {"Later": None, "Now": _undo(calls)}

    def resolve(entry: Compensation) -> Any:
        return known.get(entry.name)

    safety = make_safety(resolve, journal)
    entries = tuple(
        Compensation("dead", 1, seq, node, name, "", {"node": node}, {})
        for seq, (node, name) in enumerate([("x", "Now"), ("y", "Later"), ("z", "Now")])
    )
    for e in entries:
        journal.append(e)
    journal.orphans = [OrphanRun("dead", 1, False, entries), OrphanRun("done", 1, True, ())]
    report = safety.recover()
    assert (report.runs, report.committed, report.compensated) == (2, 1, (("dead", "z"),))
    assert report.unresolved == ("Later",) and safety.unresolved == frozenset({"Later"})
    known["Later"] = _undo(calls)
    report = safety.recover()
    assert report.compensated == (("dead", "y"), ("dead", "x"))
    assert calls == ["z", "y", "x"]
    assert safety.unresolved == frozenset() and journal.rows == {}


def test_the_heartbeat_beats_and_sweeps(make_safety: Callable[..., Safety], monkeypatch: pytest.MonkeyPatch,
                                        calls: list[str]) -> None:
    """Every HEARTBEAT_INTERVAL the journal hears from this owner and orphans are looked for."""
    monkeypatch.setattr(SafetyActor, "HEARTBEAT_INTERVAL", 0.01)
    journal = MemoryJournal()
    safety = make_safety(lambda e: _undo(calls), journal)
    safety.recover()
    entry = Compensation("dead", 1, 0, "n", "Step", "", {"node": "n"}, {})
    journal.orphans = [OrphanRun("dead", 1, False, (entry,))]
    _wait(lambda: calls == ["n"] and journal.beats >= 2)


def test_async_compensations_run_on_the_given_loop(make_safety: Callable[..., Safety]) -> None:
    """A coroutine returned by a compensation runs on the workflow caller's loop, without blocking it."""
    seen: list[asyncio.AbstractEventLoop] = []

    async def undo(params: Any, result: Any) -> None:
        seen.append(asyncio.get_running_loop())

    async def main() -> CompensationReport:
        loop = asyncio.get_running_loop()
        saga = make_safety().saga("run", 1, loop)
        await asyncio.to_thread(_record, saga, undo, "a")
        done: asyncio.Future[CompensationReport] = loop.create_future()
        saga.compensate_then(lambda r: loop.call_soon_threadsafe(done.set_result, r))
        report = await asyncio.wait_for(done, 5)
        assert seen == [loop]
        return report

    assert asyncio.run(main()).compensated == ("a",)


def test_a_stopped_safety_reports_instead_of_hanging(make_safety: Callable[..., Safety], calls: list[str]) -> None:
    """After stop, compensate reports the actor's absence as a compensation error."""
    safety = make_safety()
    saga = safety.saga("run", 1)
    _record(saga, _undo(calls), "a")
    safety.stop()
    report = saga.compensate()
    assert report.compensated == () and len(report.errors) == 1


def test_qualified_names_only_for_importable_callables() -> None:
    """Module-level functions round-trip through their qualified name; lambdas and closures do not."""
    assert qualified_name(import_qualified) == "actors.safety:import_qualified"
    assert import_qualified("actors.safety:import_qualified") is import_qualified
    assert qualified_name(lambda: None) == ""
    assert import_qualified("actors.safety:nothing_here") is None


def test_a_disconnect_at_commit_is_an_unknown_outcome(supervisor: SupervisorFactory, driver: FakeDriver) -> None:
    """COMMIT on a lost connection raises CommitOutcomeUnknown (a ConnectionLost), never a plain failure."""
    sup = supervisor(min_size=1, max_size=1)
    with sup.checkout() as lease, pytest.raises(CommitOutcomeUnknown) as info:
        WorkflowActor(driver, lease).run(lambda c: driver.kill(c))
    assert isinstance(info.value, ConnectionLost)


def _wait(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    done = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if condition():
            return
        done.wait(0.01)
    raise AssertionError("condition not reached in time")
