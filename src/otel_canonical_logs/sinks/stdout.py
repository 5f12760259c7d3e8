"""Writes each event as one logfmt line on stdout: one ``write`` per line, losses counted."""

from __future__ import annotations

import os
import sys
import threading
import weakref
from collections.abc import Callable, Mapping

from .. import _guard
from ..event import Event
from .logfmt import encode_bytes

# ``(fields, max_len) -> one line as bytes``: logfmt.encode_bytes or jsonl.encode_bytes.
Encoder = Callable[[Mapping[str, object], int], bytes]


class StdoutSink:
    """Encodes and writes events to a file descriptor (stdout by default).

    A line goes out in a single ``write`` under a lock, so lines from concurrent threads never
    interleave; ``O_APPEND``/pipe semantics keep lines from different workers whole too.
    """

    def __init__(self, max_len: int, fd: int | None = None, encoder: Encoder = encode_bytes) -> None:
        self._max_len = max_len
        self._fd = fd
        self._encode = encoder
        self._lock = threading.Lock()
        if hasattr(os, "register_at_fork"):
            # The Gunicorn arbiter writes saturation events from a thread: a fork while it holds
            # the lock would leave the lock held for ever in the new worker.
            reinit = weakref.WeakMethod(self._after_fork)

            def after_in_child() -> None:
                if (method := reinit()) is not None:
                    method()

            os.register_at_fork(after_in_child=after_in_child)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()

    def _fileno(self) -> int:
        if self._fd is not None:
            return self._fd
        try:
            return sys.stdout.fileno()
        except Exception:
            # No usable sys.stdout. If Python found descriptor 1 closed at startup (``>&-``;
            # sys.__stdout__ is None), 1 may since have been reused for another file (Gunicorn's
            # heartbeat file, a socket): never write there, the write fails and is counted.
            return 1 if sys.__stdout__ is not None else -1

    def __call__(self, event: Event) -> None:
        data = self._encode(event.fields, self._max_len)
        fd = self._fileno()
        try:
            with self._lock:
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
        except OSError:
            # stdout closed, a broken pipe, a full disk: the request must not notice.
            _guard.count("dropped.stdout_write")
