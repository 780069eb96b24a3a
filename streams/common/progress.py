"""Progress lines for long work: count, rate and elapsed time, at most once a second, on stderr."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Prints `label: N items (R/s, T s)` while work goes on, and a final line at the end."""

    def __init__(self, label: str, total: int | None = None, stream: TextIO | None = None) -> None:
        self.label = label
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.started = time.perf_counter()
        self.last = self.started
        self.count = 0
        self.tty = self.stream.isatty()
        self.printed: int | None = None  # the count of the last line printed

    def update(self, count: int) -> None:
        """Record progress; prints when a second has passed since the last line."""
        self.count = count
        now = time.perf_counter()
        if now - self.last >= 1.0:
            self.last = now
            self._print(now, final=False)

    def done(self, count: int | None = None) -> None:
        """Print the final line (with the final count, when given).

        On a terminal the final line overwrites the running one; elsewhere (a log file, a pipe)
        every line stays, so a final line repeating the last printed count is left out.
        """
        if count is not None:
            self.count = count
        if not self.tty and self.printed == self.count:
            return
        self._print(time.perf_counter(), final=True)

    def _print(self, now: float, *, final: bool) -> None:
        elapsed = max(now - self.started, 1e-9)
        share = f"/{self.total:,} ({100 * self.count / self.total:.0f}%)" if self.total else ""
        line = f"{self.label}: {self.count:,}{share} at {self.count / elapsed:,.0f}/s, {elapsed:.1f}s"
        end = "\n" if final or not self.tty else ""
        prefix = "\r" if self.tty else ""
        print(prefix + line, end=end, file=self.stream, flush=True)
        self.printed = self.count
