"""Progress bars that suit where the output goes.

On a terminal a :func:`progress_bar` is a tqdm bar. Anywhere else (a log file, a pipe, a container's log) a
redrawn bar would flood the log with carriage-return frames, so it is a :class:`LineProgress` instead: one plain
line every few seconds (``CONCEPTEVO_PROGRESS_S``, default 5) and one when it closes. Both have the few tqdm
methods the worker and the trainer use (``update``, ``n``, ``set_postfix_str``, ``set_postfix``, ``refresh``,
``close``). ``TQDM_DISABLE=1`` silences both.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, TextIO

from tqdm import tqdm

DEFAULT_INTERVAL_S = 5.0


def _interval() -> float:
    """Seconds between plain progress lines (``CONCEPTEVO_PROGRESS_S``; a bad value falls back to the default)."""
    try:
        value = float(os.environ.get("CONCEPTEVO_PROGRESS_S", DEFAULT_INTERVAL_S))
    except ValueError:
        return DEFAULT_INTERVAL_S
    return value if value >= 0 else DEFAULT_INTERVAL_S


class LineProgress:
    """A progress reporter for non-terminal output: ``desc: 42% (420/1000 img) message`` every few seconds.

    Args:
        total: the count that means done.
        desc: what is progressing (start of each line).
        unit: what is counted; None prints the percentage only.
        stream: where lines go (default ``sys.stderr``, looked up when writing).
        interval: seconds between lines (default: :func:`_interval`).
        leave: print a last line on :meth:`close`.
    """

    def __init__(
        self,
        total: int,
        desc: str,
        unit: str | None = "it",
        stream: TextIO | None = None,
        interval: float | None = None,
        leave: bool = True,
    ) -> None:
        self.total = max(1, int(total))
        self.desc = desc
        self.unit = unit
        self.n = 0
        self.leave = leave
        self._stream = stream
        self._interval = _interval() if interval is None else interval
        self._postfix = ""
        self._started = time.monotonic()
        self._last_line = self._started
        self._printed_n: int | None = None
        self._closed = False

    def update(self, count: int = 1) -> None:
        """Count ``count`` more done and print a line if one is due."""
        self.n += count
        self.refresh()

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        """Text printed after the count (e.g. the job's current stage)."""
        self._postfix = text
        if refresh:
            self.refresh()

    def set_postfix(self, refresh: bool = True, **values: Any) -> None:
        """Values printed after the count, as ``key=value`` pairs (tqdm's form)."""
        self.set_postfix_str(", ".join(f"{key}={value}" for key, value in values.items()), refresh)

    def refresh(self) -> None:
        """Print a line when the interval has passed since the last one."""
        now = time.monotonic()
        if now - self._last_line >= self._interval:
            self._emit(now)

    def close(self) -> None:
        """Print the last line (when ``leave`` and something changed since the previous line)."""
        if not self._closed and self.leave and self._printed_n != self.n:
            self._emit(time.monotonic())
        self._closed = True

    def line(self, now: float | None = None) -> str:
        """The line that would be printed now."""
        elapsed = (time.monotonic() if now is None else now) - self._started
        text = f"{self.desc}: {min(100.0, 100.0 * self.n / self.total):3.0f}%"
        if self.unit is not None:
            text += f" ({self.n}/{self.total} {self.unit})"
        text += f" {elapsed:.0f} s"
        return f"{text} {self._postfix}".rstrip()

    def _emit(self, now: float) -> None:
        stream = self._stream or sys.stderr
        print(self.line(now), file=stream, flush=True)
        self._last_line = now
        self._printed_n = self.n


def progress_bar(
    total: int,
    desc: str,
    unit: str | None = "it",
    leave: bool = True,
    disable: bool = False,
    stream: TextIO | None = None,
) -> tqdm | LineProgress:
    """A tqdm bar on a terminal, plain lines every few seconds elsewhere (see the module docstring).

    Args:
        total: the count that means done.
        desc: label.
        unit: what is counted; None shows a percentage only (no ``‰/s``-style rate of an abstract count).
        leave: keep the bar (or print a last line) when it closes.
        disable: show nothing.
        stream: output (default ``sys.stderr``).

    Returns:
        An object with tqdm's ``update``/``n``/``set_postfix_str``/``set_postfix``/``refresh``/``close``.
    """
    out = stream or sys.stderr
    disable = disable or os.environ.get("TQDM_DISABLE", "").lower() in ("1", "true", "yes")
    is_tty = bool(getattr(out, "isatty", lambda: False)())
    if disable or is_tty:
        options: dict[str, Any] = {"unit": unit or "it"}
        if unit is None:
            options["bar_format"] = "{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]{postfix}"
        return tqdm(
            total=total, desc=desc, leave=leave, disable=disable, file=out, dynamic_ncols=True, **options
        )
    return LineProgress(total, desc, unit=unit, stream=stream, leave=leave)
