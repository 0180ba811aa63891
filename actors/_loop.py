"""The one place that runs a coroutine from an actor or worker thread.

A single daemon thread owns a private event loop; sync code that must await
(an async user node, say) submits the coroutine there and waits with a bound.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["run_coroutine"]

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


def _get_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="actors-loop", daemon=True)
            thread.start()
            _loop = loop
        return _loop


def run_coroutine(coro: Coroutine[Any, Any, T], timeout: float | None) -> T:
    """Run ``coro`` on the private loop and wait for it at most ``timeout`` seconds.

    Raises :class:`TimeoutError` (and cancels the coroutine) when it takes longer.
    """
    future = asyncio.run_coroutine_threadsafe(coro, _get_loop())
    try:
        return future.result(timeout)
    except TimeoutError:
        future.cancel()
        raise
