"""SafetyActor: the compensation journal of steps outside the database (sagas).

A step outside the database (a payment, an e-mail, a call to another
service) that completes registers how to undo it. The journal records that
*before* the step's result is acknowledged to the workflow, so a failure at
any later point finds it. When the workflow fails, after the database has
rolled back, the journalled compensations run in reverse order, each at most
once; one that raises does not stop the others, and every failure is
reported.

Hops (``docs/adr/0001-one-hop-budget.md``): a workflow without compensating
steps never talks to this actor, because its :class:`Saga` sends nothing. A
compensating step costs one ``ask`` (the journal append), a failed attempt
one more (compensate), a successful one a ``tell`` (forget).

With a durable :class:`Journal` the actor also writes each entry to the
database before answering, keeps this process's owner record alive with a
heartbeat, and takes over the pending entries of owners that died.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import threading
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, NamedTuple, Protocol

import pykka

from ._loop import run_coroutine
from .errors import ActorStopped, CompensationError
from .messages import (
    Compensate,
    Compensation,
    CompensationReport,
    Forget,
    Heartbeat,
    Record,
    Recover,
)

__all__ = [
    "Journal",
    "OrphanRun",
    "RecoveryReport",
    "Resolver",
    "Safety",
    "SafetyActor",
    "Saga",
    "import_qualified",
    "qualified_name",
]

log = logging.getLogger(__name__)

#: finds the compensation of a journal entry whose callable is not in memory (None: not yet)
Resolver = Callable[[Compensation], "Callable[..., Any] | None"]


class OrphanRun(NamedTuple):
    """One attempt of a dead owner, with compensations pending, now claimed by this process."""

    run_id: str
    attempt: int
    #: the run ledger says this attempt committed: its entries are dropped, not run
    committed: bool
    #: the attempt's pending entries, in journal order
    entries: tuple[Compensation, ...]


class RecoveryReport(NamedTuple):
    """What one recovery pass did."""

    #: orphan attempts taken over from dead owners
    runs: int = 0
    #: of those, how many had committed (their compensations are dropped)
    committed: int = 0
    #: (run id, node id) of each compensation that ran without raising, in order
    compensated: tuple[tuple[str, str], ...] = ()
    #: (run id, node id, exception) of each compensation that raised
    errors: tuple[tuple[str, str, BaseException], ...] = ()
    #: node type names whose compensation cannot be found yet (register them to run it)
    unresolved: tuple[str, ...] = ()


class Journal(Protocol):
    """A durable store of journal entries, written in its own short transactions.

    Every method runs on the safety actor's thread, on a connection of the
    journal's own (never a workflow's lease, so a workflow's rollback cannot
    erase an entry).
    """

    def open(self) -> None:
        """Connect, create the journal's tables if missing, register this owner."""

    def close(self) -> None:
        """Unregister this owner and close the connection."""

    def append(self, entry: Compensation) -> None:
        """Commit ``entry`` as pending."""

    def forget(self, run_id: str, attempt: int) -> None:
        """Delete every entry of the attempt (it committed)."""

    def settle(self, run_id: str, attempt: int, done: Sequence[int], failed: Sequence[tuple[int, str]]) -> None:
        """Delete the entries (by seq) whose compensation ran; mark the failed ones, with the error."""

    def heartbeat(self) -> None:
        """Say this owner is still alive."""

    def claim_orphans(self) -> list[OrphanRun]:
        """Take over the pending entries of owners that died; say which attempts committed."""


def qualified_name(fn: Any) -> str:
    """``"module:qualname"`` of ``fn``, or "" if another process cannot import it back
    (a lambda, a closure, a function of the ``__main__`` script)."""
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str) or "<" in qualname or module == "__main__":
        return ""
    return f"{module}:{qualname}"


def import_qualified(name: str) -> Callable[..., Any] | None:
    """The callable named ``"module:qualname"``, or None if it cannot be imported."""
    module_name, _, qualname = name.partition(":")
    if not module_name or not qualname:
        return None
    try:
        target: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError):
        log.warning("compensation_not_importable name=%s", name, exc_info=True)
        return None
    return target if callable(target) else None


class _Entry:
    __slots__ = ("entry", "fn")

    def __init__(self, entry: Compensation, fn: Callable[..., Any] | None) -> None:
        self.entry = entry
        self.fn = fn


class _Shared:
    # Written by the actor thread, read by any thread: one attribute, replaced whole.
    __slots__ = ("unresolved",)

    def __init__(self) -> None:
        self.unresolved: frozenset[str] = frozenset()


class SafetyActor(pykka.ThreadingActor):
    """Owns the journal of every running workflow's compensations, and runs them.

    Compensations run on this actor's thread, one at a time; a coroutine a
    compensation returns runs on the workflow caller's event loop when there
    is one, else on the engine's private loop, bounded by ``timeout``.
    """

    use_daemon_thread = True
    #: seconds between two heartbeats of the durable journal (tests shrink it)
    HEARTBEAT_INTERVAL = 10.0

    def __init__(
        self, resolve: Resolver, timeout: float, journal: Journal | None = None, shared: _Shared | None = None
    ) -> None:
        # Runs in the thread that starts the actor.
        super().__init__()
        self._resolve = resolve
        self._timeout = timeout
        self._journal = journal
        self._shared = shared or _Shared()
        self._opened = False
        self._runs: dict[tuple[str, int], list[_Entry]] = {}
        self._orphans: dict[tuple[str, int], list[_Entry]] = {}
        self._stopping = threading.Event()

    def on_start(self) -> None:
        # Runs in the actor's thread. The journal opens on the first message,
        # so that its errors reach whoever asked.
        if self._journal is not None:
            threading.Thread(target=self._beat, name="safety-heartbeat", daemon=True).start()

    def on_receive(self, message: Any) -> Any:
        # Runs in the actor's thread; may block on the journal or a compensation.
        # An exception here reaches an ``ask``-er; for told messages it is caught.
        if isinstance(message, Record):
            return self._record(message)
        if isinstance(message, Compensate):
            return self._compensate(message)
        if isinstance(message, Forget):
            self._forget(message)
        elif isinstance(message, Recover):
            return self._recover()
        elif isinstance(message, Heartbeat):
            self._heartbeat()
        return None

    def on_stop(self) -> None:
        # Runs in the actor's thread, before it exits.
        self._shutdown()

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # Runs in the actor's thread, before it exits.
        log.error("safety_actor_failed error=%r", exception_value)
        self._shutdown()

    # -- handlers ---------------------------------------------------------------

    def _record(self, message: Record) -> None:
        entry = message.entry
        # In memory first: if the durable write fails the workflow fails at
        # this step, and this entry must still be compensated.
        self._runs.setdefault((entry.run_id, entry.attempt), []).append(_Entry(entry, message.fn))
        if self._journal is not None:
            self._open()
            self._journal.append(entry)

    def _compensate(self, message: Compensate) -> CompensationReport | None:
        try:
            entries = self._runs.pop((message.run_id, message.attempt), [])
            ran, failed, _ = self._run_reversed(entries, message.loop, stop_unresolved=False)
            self._settle(message.run_id, message.attempt, ran, failed)
            report = CompensationReport(
                tuple(e.entry.node_id for e in ran), tuple((e.entry.node_id, exc) for e, exc in failed)
            )
        except BaseException as exc:
            if message.reply is None:
                raise
            message.reply(None, exc)
            return None
        if message.reply is not None:
            message.reply(report, None)
        return report

    def _forget(self, message: Forget) -> None:
        self._runs.pop((message.run_id, message.attempt), None)
        if self._journal is not None and message.journal:
            try:
                self._open()
                self._journal.forget(message.run_id, message.attempt)
            except Exception:
                # The run ledger still says it committed: recovery will not run these.
                log.warning("journal_forget_failed run_id=%s", message.run_id, exc_info=True)

    def _recover(self) -> RecoveryReport:
        if self._journal is None:
            return RecoveryReport()
        self._open()
        runs = committed = 0
        for orphan in self._journal.claim_orphans():
            if orphan.committed:
                committed += 1
                self._journal.forget(orphan.run_id, orphan.attempt)
                continue
            runs += 1
            self._orphans[(orphan.run_id, orphan.attempt)] = [_Entry(e, None) for e in orphan.entries]
        compensated: list[tuple[str, str]] = []
        errors: list[tuple[str, str, BaseException]] = []
        unresolved: set[str] = set()
        for key, entries in list(self._orphans.items()):
            ran, failed, left = self._run_reversed(entries, None, stop_unresolved=True)
            self._settle(key[0], key[1], ran, failed)
            compensated.extend((key[0], e.entry.node_id) for e in ran)
            errors.extend((key[0], e.entry.node_id, exc) for e, exc in failed)
            if left:
                self._orphans[key] = left
                unresolved.add(left[-1].entry.name)
            else:
                del self._orphans[key]
        self._shared.unresolved = frozenset(unresolved)
        if runs or committed:
            log.warning(
                "compensations_recovered runs=%d committed=%d compensated=%d failed=%d unresolved=%s",
                runs, committed, len(compensated), len(errors), sorted(unresolved),
            )
        return RecoveryReport(runs + committed, committed, tuple(compensated), tuple(errors), tuple(sorted(unresolved)))

    def _heartbeat(self) -> None:
        assert self._journal is not None
        try:
            self._open()
            self._journal.heartbeat()
            self._recover()
        except Exception:
            log.warning("journal_heartbeat_failed", exc_info=True)

    # -- helpers -----------------------------------------------------------------

    def _run_reversed(
        self, entries: list[_Entry], loop: Any, *, stop_unresolved: bool
    ) -> tuple[list[_Entry], list[tuple[_Entry, BaseException]], list[_Entry]]:
        """Run ``entries`` last first; returns (ran, failed, left unrun because unresolved)."""
        ran: list[_Entry] = []
        failed: list[tuple[_Entry, BaseException]] = []
        for i in range(len(entries) - 1, -1, -1):
            item = entries[i]
            fn = item.fn if item.fn is not None else self._resolve(item.entry)
            if fn is None and stop_unresolved:
                return ran, failed, entries[: i + 1]
            try:
                if fn is None:
                    raise LookupError(f"no compensation found for node type {item.entry.name!r}")
                self._call(fn, item.entry, loop)
            except Exception as exc:  # noqa: BLE001 - a user's compensation: reported, the others still run
                log.warning(
                    "compensation_failed run_id=%s node_id=%s error_type=%s",
                    item.entry.run_id, item.entry.node_id, type(exc).__name__,
                )
                failed.append((item, exc))
            else:
                ran.append(item)
        return ran, failed, []

    def _call(self, fn: Callable[..., Any], entry: Compensation, loop: Any) -> None:
        out = fn(entry.params, entry.result)
        if asyncio.iscoroutine(out):
            if loop is not None and not loop.is_closed():
                future = asyncio.run_coroutine_threadsafe(out, loop)
                try:
                    future.result(self._timeout)
                except TimeoutError:
                    future.cancel()
                    raise
            else:
                run_coroutine(out, self._timeout)

    def _settle(
        self, run_id: str, attempt: int, ran: list[_Entry], failed: list[tuple[_Entry, BaseException]]
    ) -> None:
        if self._journal is None or not (ran or failed):
            return
        try:
            self._journal.settle(
                run_id, attempt, [e.entry.seq for e in ran],
                [(e.entry.seq, f"{type(exc).__name__}: {exc}") for e, exc in failed],
            )
        except Exception:
            # The compensations ran; if this process dies before the journal
            # learns it, recovery runs them again (at least once across a crash).
            log.warning("journal_settle_failed run_id=%s", run_id, exc_info=True)

    def _open(self) -> None:
        if not self._opened:
            assert self._journal is not None
            self._journal.open()
            self._opened = True

    def _beat(self) -> None:
        # Runs on its own daemon thread: only tells the actor, never touches its state.
        ref = self.actor_ref
        while not self._stopping.wait(self.HEARTBEAT_INTERVAL):
            try:
                ref.tell(Heartbeat())
            except pykka.ActorDeadError:
                return

    def _shutdown(self) -> None:
        self._stopping.set()
        if self._journal is not None and self._opened:
            self._opened = False
            try:
                self._journal.close()
            except Exception:
                log.warning("journal_close_failed", exc_info=True)


class Safety:
    """The workflow side of the safety actor: starts it on first use, hands out sagas.

    Thread-safe; any thread may call it. ``timeout`` bounds each compensation
    and each journal append.
    """

    def __init__(self, resolve: Resolver, *, timeout: float, journal: Journal | None = None) -> None:
        self._resolve = resolve
        self.timeout = timeout
        self._journal = journal
        self._shared = _Shared()
        self._lock = threading.Lock()
        self._ref: pykka.ActorRef[Any] | None = None
        self._stopped = False

    @property
    def durable(self) -> bool:
        """True if entries are also written to a durable journal."""
        return self._journal is not None

    @property
    def unresolved(self) -> frozenset[str]:
        """Node type names of recovered compensations still waiting to be found."""
        return self._shared.unresolved

    def saga(self, run_id: str, attempt: int, loop: Any = None) -> Saga:
        """The journal handle of one attempt of one run."""
        return Saga(self, run_id, attempt, loop)

    def recover(self, timeout: float | None = None) -> RecoveryReport:
        """Take over and run the pending compensations of dead owners (durable journal only)."""
        if self._journal is None:
            return RecoveryReport()
        result: RecoveryReport = self.ask(Recover(), timeout)
        return result

    def ask(self, message: Any, timeout: float | None) -> Any:
        try:
            return self._actor().ask(message, timeout=timeout)
        except pykka.ActorDeadError as exc:
            raise ActorStopped("the safety actor has stopped") from exc
        except pykka.Timeout as exc:
            raise CompensationError([("*", TimeoutError(f"the safety actor did not answer within {timeout}s"))]) from exc

    def tell(self, message: Any) -> None:
        try:
            self._actor().tell(message)
        except pykka.ActorDeadError as exc:
            raise ActorStopped("the safety actor has stopped") from exc

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the actor (idempotent); later use raises :class:`ActorStopped`."""
        with self._lock:
            self._stopped = True
            ref, self._ref = self._ref, None
        if ref is not None:
            try:
                ref.stop(block=True, timeout=timeout)
            except (pykka.ActorDeadError, pykka.Timeout):
                pass

    def _actor(self) -> pykka.ActorRef[Any]:
        ref = self._ref
        if ref is not None:
            return ref
        with self._lock:
            if self._stopped:
                raise ActorStopped("the safety actor was stopped")
            if self._ref is None:
                self._ref = SafetyActor.start(self._resolve, self.timeout, self._journal, self._shared)
            return self._ref


class Saga:
    """One attempt's journal handle, used on the workflow's thread.

    It sends nothing until a compensating step completes, so a workflow
    without one costs no hop.
    """

    __slots__ = ("_safety", "attempt", "loop", "nodes", "run_id")

    def __init__(self, safety: Safety, run_id: str, attempt: int, loop: Any) -> None:
        self._safety = safety
        self.run_id = run_id
        self.attempt = attempt
        self.loop = loop
        #: node ids of the steps journalled and not yet compensated or forgotten
        self.nodes: list[str] = []

    @property
    def count(self) -> int:
        """How many journalled steps are waiting to be compensated or forgotten."""
        return len(self.nodes)

    def record(self, node_id: str, name: str, fn: Callable[..., Any], params: Any, result: Any) -> None:
        """Journal a completed step's compensation; returns once it is journalled."""
        entry = Compensation(self.run_id, self.attempt, self.count, node_id, name, qualified_name(fn), params, result)
        self.nodes.append(node_id)  # even if the ask fails: the actor may hold it in memory
        self._safety.ask(Record(entry, fn), self._safety.timeout)

    def compensate(self) -> CompensationReport:
        """Run this attempt's compensations in reverse order (no hop when there are none)."""
        if not self.nodes:
            return CompensationReport()
        n = len(self.nodes)
        self.nodes = []
        try:
            report: CompensationReport = self._safety.ask(
                Compensate(self.run_id, self.attempt, self.loop), n * self._safety.timeout + 5.0
            )
        except (ActorStopped, CompensationError) as exc:
            return CompensationReport((), (("*", exc),))
        return report

    def compensate_then(self, reply: Callable[[CompensationReport], None]) -> None:
        """Like :meth:`compensate` without blocking: ``reply(report)`` runs on the actor thread."""
        if not self.nodes:
            reply(CompensationReport())
            return
        self.nodes = []

        def done(report: Any, error: BaseException | None) -> None:
            reply(report if error is None else CompensationReport((), (("*", error),)))

        try:
            self._safety.tell(Compensate(self.run_id, self.attempt, self.loop, done))
        except ActorStopped as exc:
            reply(CompensationReport((), (("*", exc),)))

    def forget(self, *, journal: bool = True) -> None:
        """Drop the attempt's entries unrun (a ``tell``; nothing when there are none).

        ``journal=True`` when the attempt committed; ``journal=False`` when its
        outcome is unknown, which keeps the durable entries for recovery.
        """
        if not self.nodes:
            return
        self.nodes = []
        try:
            self._safety.tell(Forget(self.run_id, self.attempt, journal))
        except ActorStopped:
            pass
