"""Keras's progress bar for fit / evaluate / predict, and the number and time formats of its lines."""

from __future__ import annotations

import math
import sys
import time

__all__ = ["Progbar"]


def _format_time(seconds):
    if seconds > 3600:
        return f"{int(seconds // 3600)}:{int(seconds % 3600 // 60):02d}:{int(seconds % 60):02d}"
    if seconds > 60:
        return f"{int(seconds // 60)}:{int(seconds % 60):02d}"
    return f"{int(seconds)}s"


def _format_value(v):
    return f"{v:.4f}" if abs(v) > 1e-3 or v == 0 else f"{v:.4e}"


class Progbar:
    """Keras-style progress bar: ``  12/125 [==>...........] - ETA: 3s - loss: 0.4000 - accuracy: 0.9000``.

    ``verbose=1`` redraws one line (at most every ``interval`` seconds) when the
    stream is a terminal or a notebook, and prints only the final line otherwise;
    ``verbose=2`` prints one summary line per call to :meth:`finish`.
    """

    def __init__(self, target, width=30, verbose=1, interval=0.05, stream=None, unit_name="step"):
        self.target = target
        self.width = width
        self.verbose = verbose
        self.interval = interval
        self.stream = stream if stream is not None else sys.stdout
        self.unit_name = unit_name
        isatty = getattr(self.stream, "isatty", None)
        self.dynamic = bool((isatty and isatty()) or "ipykernel" in sys.modules)
        self.start = time.perf_counter()
        self._last_update = 0.0
        self._last_width = 0

    def _bar(self, current):
        target = self.target
        if target is None or target <= 0:
            return f"{current:7d}/Unknown"
        digits = int(math.log10(target)) + 1
        prog = min(current / target, 1.0)
        done = int(self.width * prog)
        bar = f"{current:{digits}d}/{target} ["
        if done > 0:
            bar += "=" * (done - 1) + (">" if current < target else "=")
        bar += "." * (self.width - done) + "]"
        return bar

    def _values(self, values):
        return "".join(f" - {k}: {_format_value(v)}" for k, v in values)

    def update(self, current, values=()):
        """Redraw at step ``current`` (1-based) with ``values`` = [(name, running value), ...]."""
        if self.verbose != 1 or not self.dynamic:
            return
        now = time.perf_counter()
        if now - self._last_update < self.interval and (self.target is None or current < self.target):
            return
        self._last_update = now
        elapsed = now - self.start
        line = self._bar(current)
        if self.target and current < self.target and current > 0:
            eta = elapsed / current * (self.target - current)
            line += f" - ETA: {_format_time(eta)}"
        line += self._values(values)
        pad = max(0, self._last_width - len(line))
        self._last_width = len(line)
        self.stream.write("\r" + line + " " * pad)
        self.stream.flush()

    def finish(self, current, values=()):
        """Print the final line of an epoch (``verbose`` 1 or 2)."""
        if self.verbose not in (1, 2):
            return
        elapsed = time.perf_counter() - self.start
        per = elapsed / max(current, 1)
        if per >= 1 or per == 0:
            per_s = f"{per:.0f}s/{self.unit_name}"
        elif per >= 1e-3:
            per_s = f"{per * 1e3:.0f}ms/{self.unit_name}"
        else:
            per_s = f"{per * 1e6:.0f}us/{self.unit_name}"
        if self.verbose == 1:
            line = f"{self._bar(current)} - {elapsed:.0f}s {per_s}{self._values(values)}"
            pad = max(0, self._last_width - len(line))
            prefix = "\r" if self.dynamic else ""
            self.stream.write(prefix + line + " " * pad + "\n")
        else:
            t = self.target if self.target else current
            self.stream.write(f"{current}/{t} - {elapsed:.0f}s - {per_s}{self._values(values)}\n")
        self.stream.flush()
