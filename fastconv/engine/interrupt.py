"""Ctrl-C during ``fit``: the first SIGINT (main thread) sets a flag; the current step finishes and
training returns the History with the weights of that last finished step. A second Ctrl-C
interrupts at once."""

from __future__ import annotations

import signal
import sys
import threading

class _InterruptGuard:
    """Turns the first SIGINT into a flag checked between steps (main thread only)."""

    def __init__(self):
        self.requested = False
        self._old = None
        self._installed = False

    def _handler(self, signum, frame):
        if self.requested:
            signal.signal(signal.SIGINT, self._old)
            raise KeyboardInterrupt
        self.requested = True
        sys.stdout.write("\nInterrupted: stopping after this step (Ctrl-C again to abort at once).\n")
        sys.stdout.flush()

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            try:
                old = signal.getsignal(signal.SIGINT)
                if old is signal.default_int_handler:
                    self._old = old
                    signal.signal(signal.SIGINT, self._handler)
                    self._installed = True
            except (ValueError, OSError):  # pragma: no cover - embedded interpreters
                self._installed = False
        return self

    def __exit__(self, *exc):
        if self._installed:
            signal.signal(signal.SIGINT, self._old)
        return False
