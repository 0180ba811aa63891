"""The small immutable messages connection actors understand."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

__all__ = ["Close", "Connect", "Crash", "Run"]


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
