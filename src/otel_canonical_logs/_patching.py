"""The one way this package replaces an attribute of someone else's code (a method of Django's,
Gunicorn's or a driver's), and undoes it.

``patch(owner, name, make)`` sets ``owner.name = make(original)`` once: the replacement is marked,
so patching twice is a no-op, and it keeps the original as ``__wrapped__``. Each ``Patches`` set
remembers what it replaced, so an instrumentor's ``_uninstrument`` puts back exactly what its
``_instrument`` changed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

MARK = "_otel_canonical_logs"


def is_ours(value: Any) -> bool:
    return bool(getattr(value, MARK, False))


def mark(replacement: Any, original: Any) -> Any:
    """Mark ``replacement`` as ours, wrapping ``original``."""
    replacement._otel_canonical_logs = True
    replacement.__wrapped__ = original
    return replacement


class Patches:
    """The replacements one integration made, to undo them in reverse order."""

    def __init__(self) -> None:
        # (owner, name, original, replacement, whether owner itself held the original)
        self._done: list[tuple[Any, str, Any, Any, bool]] = []

    def patch(self, owner: Any, name: str, make: Callable[[Any], Any], own: bool = False) -> bool:
        """Replace ``owner.name`` with ``make(original)`` unless it is ours already; ``own``: look
        only in ``owner``'s own ``__dict__`` (a class that does not define ``name`` is skipped).
        Returns whether it patched."""
        original = vars(owner).get(name) if own else getattr(owner, name, None)
        if original is None or is_ours(original):
            return False
        self.replace(owner, name, mark(make(original), original))
        return True

    def replace(self, owner: Any, name: str, replacement: Any) -> None:
        """Set ``owner.name`` to a replacement the caller built."""
        had_own = name in vars(owner) if isinstance(owner, type) else True
        original = getattr(owner, name, None)
        setattr(owner, name, replacement)
        self._done.append((owner, name, original, replacement, had_own))

    def undo(self) -> None:
        """Put back every original, newest first; one replaced again since by someone else is
        left as it is."""
        while self._done:
            owner, name, original, replacement, had_own = self._done.pop()
            current = vars(owner).get(name) if isinstance(owner, type) else getattr(owner, name, None)
            if current is not replacement:
                continue
            if had_own:
                setattr(owner, name, original)
            else:
                delattr(owner, name)
