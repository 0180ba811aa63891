"""Timing and reporting shared by every scenario.

A scenario hands `measure` a list of contenders.  Each contender's `setup`
opens whatever it needs and returns ``(op, cleanup)``; `op(i)` does one unit of
work (one create + read, one list, one batch of concurrent workflows).  All
contenders are set up first, then every repetition runs each contender once,
round-robin with the starting contender rotated, so that drift in a noisy
machine is spread over all of them instead of landing on whoever ran last.
"""

from __future__ import annotations

import gc
import importlib.util
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

Op = Callable[[int], Any]
Setup = Callable[[], tuple[Op, Callable[[], None]]]


class NotInstalled(Exception):
    """A peer's package is missing: reported as such, not as an error."""


def require(*modules: str) -> None:
    """Raise `NotInstalled` unless every module can be imported."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise NotInstalled(", ".join(missing))


@dataclass
class Contender:
    name: str
    setup: Setup
    note: str = ""


@dataclass
class Outcome:
    name: str
    note: str = ""
    per_op_us: list[float] = field(default_factory=list)  # one figure per repetition
    error: str | None = None
    extra: dict[str, str] = field(default_factory=dict)  # a Group's extra columns, by header

    @property
    def median(self) -> float | None:
        return statistics.median(self.per_op_us) if self.per_op_us and not self.error else None


@dataclass
class Group:
    """One table: a scenario on one engine; the first outcome is the raw baseline."""

    title: str
    outcomes: list[Outcome]
    wall_ops: int | None = None  # ops per repetition, when wall time is worth a column
    unit: str = "µs/op"
    columns: tuple[str, ...] = ()  # extra columns, filled from each outcome's ``extra``


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return text if len(text) <= 110 else text[:107] + "..."


def _fail(outcome: Outcome, exc: BaseException) -> None:
    outcome.error = _describe(exc)
    print(f"--- {outcome.name} failed:", file=sys.stderr)
    traceback.print_exception(exc, file=sys.stderr)


def measure(
    contenders: Iterable[Contender], *, n: int, reps: int, warmup: int, ops_per_call: int = 1
) -> list[Outcome]:
    """Time ``n`` calls of each contender's op, ``reps`` times; µs per op of each rep.

    The garbage collector runs before each repetition and stays enabled during it,
    as it would in an application.
    """
    outcomes: list[Outcome] = []
    running: list[tuple[Outcome, Op, Callable[[], None]]] = []
    try:
        for c in contenders:
            outcome = Outcome(c.name, c.note)
            outcomes.append(outcome)
            try:
                op, cleanup = c.setup()
            except NotInstalled as exc:
                outcome.note = f"not installed ({exc})"
                continue
            except Exception as exc:  # noqa: BLE001 - any failure is reported, the run goes on
                _fail(outcome, exc)
                continue
            running.append((outcome, op, cleanup))
            try:
                for i in range(warmup):
                    op(i)
            except Exception as exc:  # noqa: BLE001
                _fail(outcome, exc)
        index = warmup
        for rep in range(reps):
            live = [r for r in running if not r[0].error]
            shift = rep % len(live) if live else 0
            for outcome, op, _ in live[shift:] + live[:shift]:
                gc.collect()
                try:
                    start = time.perf_counter()
                    for i in range(index, index + n):
                        op(i)
                    elapsed = time.perf_counter() - start
                except Exception as exc:  # noqa: BLE001
                    _fail(outcome, exc)
                    continue
                outcome.per_op_us.append(elapsed * 1e6 / (n * ops_per_call))
            index += n
    finally:
        for outcome, _, cleanup in running:
            try:
                cleanup()
            except Exception as exc:  # noqa: BLE001
                print(f"--- cleanup of {outcome.name} failed: {_describe(exc)}", file=sys.stderr)
    return outcomes


def render(group: Group) -> str:
    """The table of one group: median µs/op, range over repetitions, ratio to the first row."""
    wall_ops = group.wall_ops
    base = group.outcomes[0].median if group.outcomes else None
    header = ["contender", group.unit, "min–max", "× raw"]
    if wall_ops:
        header.insert(2, "wall ms")
    header += group.columns
    rows = [header]
    notes: list[str] = []
    for o in group.outcomes:
        med = o.median
        if med is None:
            row = [o.name, "-", "-", "-"] + (["-"] if wall_ops else []) + ["-"] * len(group.columns)
            notes.append(f"error: {o.error}" if o.error else o.note)
        else:
            spread = f"{min(o.per_op_us):.1f}–{max(o.per_op_us):.1f}"
            ratio = f"{med / base:.2f}x" if base else "-"
            row = [o.name, f"{med:.1f}", spread, ratio]
            if wall_ops:
                row.insert(2, f"{med * wall_ops / 1000:.0f}")
            row += [o.extra.get(c, "-") for c in group.columns]
            notes.append(o.note)
        rows.append(row)
    widths = [max(len(r[k]) for r in rows) for k in range(len(header))]
    lines = [f"== {group.title}"]
    for k, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        note = ("  " + notes[k - 1]) if k and notes[k - 1] else ("  note" if not k else "")
        lines.append("  " + "  ".join(cells) + note)
    return "\n".join(lines)


@dataclass(frozen=True)
class Config:
    """What the command line asked for."""

    quick: bool = False
    peers: bool = False
    reps: int = 5
    huge: bool = False  # the bulk scenario's ten-million-row import (PostgreSQL)
