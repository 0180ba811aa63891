"""The demo's progress bar: drawn on a terminal, absent anywhere else."""

from __future__ import annotations

import io

from dataflow import BulkProgress
from dataflow.demo import progress_bar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def event(done: int, total: int | None, finished: bool = False) -> BulkProgress:
    return BulkProgress("import", "ProductBulkCreateNode", "Product", "BulkCreate", done, total, 1, 0, 0.5,
                        done / 0.5, finished)


def test_no_bar_off_a_terminal() -> None:
    """Writing to a pipe or a file gives no callback at all, so nothing is drawn."""
    assert progress_bar("importing", io.StringIO()) is None


def test_bar_on_a_terminal() -> None:
    """On a terminal each event redraws one line; the last one ends it."""
    out = Terminal()
    show = progress_bar("importing", out, width=10)
    assert show is not None
    show(event(500, 1000))
    show(event(1000, 1000, finished=True))
    text = out.getvalue()
    assert text.startswith("\rimporting [#####.....] 500/1,000  1,000/s")
    assert text.endswith("\rimporting [##########] 1,000/1,000  2,000/s\n")


def test_bar_without_a_total() -> None:
    """A generator has no length: the line shows the count and the rate."""
    out = Terminal()
    show = progress_bar("importing", out)
    assert show is not None
    show(event(2000, None))
    assert out.getvalue() == "\rimporting 2,000 records  4,000/s"
