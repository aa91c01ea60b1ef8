"""Progress bars: tqdm's, when it is installed (the extra "progress"); otherwise nothing, and nothing breaks."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class Progress:
    """A tqdm bar, or nothing: every method does nothing without one."""

    def __init__(self, bar: Any):
        self._bar = bar

    def total(self, total: int | None) -> None:
        if self._bar is not None and self._bar.total != total:
            self._bar.total = total
            self._bar.refresh()

    def update(self, count: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(count)

    def show(self, done: int, note: str) -> None:
        """Show done of the total so far, and a note after the bar."""
        if self._bar is not None:
            self._bar.n = done
            self._bar.set_postfix_str(note)  # refreshes the bar too


@contextmanager
def progress(shown: bool, unit: str, total: int | None = None) -> Iterator[Progress]:
    """A bar on stderr counting units, when shown and tqdm is installed."""
    bar = None
    if shown:
        try:
            from tqdm import tqdm  # type: ignore[import-untyped]
        except ImportError:
            pass
        else:
            bar = tqdm(unit=unit, total=total, file=sys.stderr, unit_scale=unit == "B", unit_divisor=1024)
    try:
        yield Progress(bar)
    finally:
        if bar is not None:
            bar.close()
