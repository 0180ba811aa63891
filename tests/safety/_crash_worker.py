"""A process that dies in the middle of a workflow, for the journal recovery tests.

``python -m tests.safety._crash_worker URL LOG MODE``. Modes: ``importable``
(the compensation is a module-level function), ``closure`` (it is a lambda,
found again only by node type name), ``after_commit`` (the workflow commits,
then the process dies before the journal hears of it).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from dataflow import DataFlow, LocalRuntime, WorkflowBuilder

EXIT_DIED = 17


def charge(log: str, amount: int) -> dict[str, Any]:
    with open(log, "a") as f:
        f.write(f"charge {amount}\n")
    return {"charge_id": f"ch-{amount}"}


def refund(params: dict[str, Any], result: dict[str, Any]) -> None:
    with open(params["log"], "a") as f:
        f.write(f"refund {params['amount']} {result['charge_id']}\n")


def die() -> dict[str, Any]:
    os._exit(EXIT_DIED)


def main(url: str, log: str, mode: str) -> None:
    db = DataFlow(url, durable_compensations=True)

    @db.model
    class Order:
        item: str

    compensation = (lambda p, r: refund(p, r)) if mode == "closure" else refund
    db.register_node("Charge", charge, compensation=compensation)
    db.register_node("Die", die)
    wf = WorkflowBuilder(db)
    wf.add_node("Charge", "first", {"log": log, "amount": 1})
    wf.add_node("OrderCreateNode", "order", {"item": "pen"})
    wf.add_node("Charge", "second", {"log": log, "amount": 2})
    if mode == "after_commit":
        from actors import Saga

        Saga.forget = lambda self, **kw: None  # type: ignore[method-assign]  # dies before the journal learns
        LocalRuntime().execute(wf.build())
        os._exit(0)
    wf.add_node("Die", "die")
    LocalRuntime().execute(wf.build())
    raise AssertionError("the workflow should have killed this process")


if __name__ == "__main__":
    # Run the importable module's main, so that its functions are named
    # tests.safety._crash_worker.*, not __main__.* (which no other process can import).
    from tests.safety._crash_worker import main as imported_main

    imported_main(*sys.argv[1:4])
