"""The small immutable messages that connection actors and the safety actor understand."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

__all__ = [
    "Close",
    "Compensate",
    "Compensation",
    "CompensationReport",
    "Connect",
    "Crash",
    "Forget",
    "Heartbeat",
    "Record",
    "Recover",
    "Run",
]


class Connect(NamedTuple):
    """Open the actor's driver connection, then report to the supervisor."""


class Run(NamedTuple):
    """Run ``fn(conn)`` on the actor's thread; ``reply(result, error)`` gets the outcome."""

    fn: Callable[[Any], Any]
    reply: Callable[[Any, BaseException | None], None]


class Close(NamedTuple):
    """Close the connection and stop the actor."""


class Crash(NamedTuple):
    """Fail the actor on purpose (failure-recovery tests)."""

    reason: str = "crash requested"


# -- the safety actor's journal ---------------------------------------------------


class Compensation(NamedTuple):
    """One journal entry: how to undo one completed step outside the database."""

    run_id: str
    #: which attempt of the run completed the step (retries start a new attempt)
    attempt: int
    #: position of the step among the attempt's compensating steps, from 0
    seq: int
    node_id: str
    #: the node type name: the key a restarted process looks the compensation up by
    name: str
    #: ``"module:qualname"`` of the compensation, or "" when it cannot be imported
    qualname: str
    #: the step's parameters and result, the compensation's two arguments
    params: Any
    result: Any


class CompensationReport(NamedTuple):
    """What running one attempt's compensations did."""

    #: node ids whose compensation ran without raising, in the order they ran
    compensated: tuple[str, ...] = ()
    #: (node id, exception) for every compensation that raised
    errors: tuple[tuple[str, BaseException], ...] = ()


class Record(NamedTuple):
    """Journal ``entry`` (and keep ``fn``, the compensation itself); answer once journalled."""

    entry: Compensation
    fn: Callable[..., Any] | None


class Compensate(NamedTuple):
    """Run the attempt's journalled compensations in reverse order, each at most once.

    Coroutines returned by a compensation run on ``loop`` when given (the
    caller's event loop). ``reply(report, error)`` is called when done, if given.
    """

    run_id: str
    attempt: int
    loop: Any = None
    reply: Callable[[Any, BaseException | None], None] | None = None


class Forget(NamedTuple):
    """Drop the attempt's journal entries without running them.

    ``journal=True``: the attempt committed, drop the durable entries too.
    ``journal=False``: its outcome is unknown; keep them for recovery.
    """

    run_id: str
    attempt: int
    journal: bool = True


class Recover(NamedTuple):
    """Take over and run the pending compensations of processes that died."""


class Heartbeat(NamedTuple):
    """Tell the durable journal this process is alive, then look for orphans."""
