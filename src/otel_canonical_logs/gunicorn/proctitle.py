"""Busy/idle in the worker's process title and the backlog in the arbiter's, when ``setproctitle``
is importable (the optional ``proctitle`` extra); without it every call is a no-op."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _functions() -> tuple[Callable[[], str], Callable[[str], None]] | None:
    try:
        from setproctitle import getproctitle, setproctitle
    except ImportError:
        return None
    return getproctitle, setproctitle


class Title:
    """This process's title: the one Gunicorn gave it (``gunicorn: worker [app]``), plus a state.

    ``follow``: read the base again whenever the title is no longer the one set here last (Gunicorn
    renames the arbiter on reload); a worker's is read once (Gunicorn names it before it boots),
    which keeps a request's two title changes at one ``setproctitle`` call each (≈0.5 µs).
    """

    def __init__(self, follow: bool = True, functions: Any = _functions) -> None:
        found = functions()
        self._get: Callable[[], str] | None = found[0] if found else None
        self._set: Callable[[str], None] | None = found[1] if found else None
        self._base = ""
        self._ours: str | None = None
        self._follow = follow
        self._states: dict[str, str] = {}

    @property
    def available(self) -> bool:
        return self._set is not None

    def show(self, state: str) -> None:
        """Make the title ``<Gunicorn's title> <state>``."""
        get, set_ = self._get, self._set
        if get is None or set_ is None:
            return
        if not self._follow and self._ours is not None:
            title = self._states.get(state) or self._states.setdefault(state, f"{self._base} {state}")
            set_(title)
            self._ours = title
            return
        current = get()
        if current != self._ours:
            self._base = current
            self._states.clear()
        title = f"{self._base} {state}"
        if title != current:
            set_(title)
        self._ours = title
