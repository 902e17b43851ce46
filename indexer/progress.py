"""Terminal progress for long work: count, rate, ETA; silent when quiet."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _fmt_secs(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Progress:
    def __init__(self, quiet: bool = False, stream: TextIO | None = None) -> None:
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self._tty = self.stream.isatty()
        self._total = 0
        self._done = 0
        self._start = 0.0
        self._last = 0.0
        self._what = ""

    def log(self, message: str) -> None:
        if not self.quiet:
            if self._tty and self._total:
                self.stream.write("\r\033[K")
            print(message, file=self.stream, flush=True)

    def start(self, what: str, total: int) -> None:
        self._what, self._total, self._done = what, total, 0
        self._start = self._last = time.monotonic()

    def advance(self, n: int) -> None:
        self._done += n
        now = time.monotonic()
        # Redraw a terminal line 4x a second; log a plain line every 5 s otherwise.
        if now - self._last >= (0.25 if self._tty else 5.0) or self._done >= self._total:
            self._last = now
            self._draw(now)

    def rate(self) -> float:
        elapsed = time.monotonic() - self._start
        return self._done / elapsed if elapsed > 0 else 0.0

    def _draw(self, now: float) -> None:
        if self.quiet:
            return
        rate = self.rate()
        eta = (self._total - self._done) / rate if rate > 0 else 0.0
        line = f"{self._what} {self._done}/{self._total}  {rate:.1f} images/s  ETA {_fmt_secs(eta)}"
        if self._tty:
            end = "\n" if self._done >= self._total else ""
            self.stream.write("\r\033[K" + line + end)
            self.stream.flush()
        else:
            print(line, file=self.stream, flush=True)
