"""Source locations as ``path:line:function``, preferring application frames over library ones."""

from __future__ import annotations

import os
import site
import sys
import sysconfig
from functools import lru_cache
from types import FrameType, TracebackType

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _roots(*keys: str) -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    return tuple({os.path.realpath(paths[k]) + os.sep for k in keys if paths.get(k)})


def _library_roots() -> tuple[str, ...]:
    # "scripts": console-script launchers (the venv's bin/gunicorn) are not application code.
    roots: set[str] = {os.path.realpath(_PACKAGE_DIR) + os.sep}
    roots.update(_roots("stdlib", "platstdlib", "purelib", "platlib", "scripts"))
    try:
        extra = [*site.getsitepackages(), site.getusersitepackages()]
    except Exception:
        extra = []
    roots.update(os.path.realpath(r) + os.sep for r in extra if r)
    return tuple(roots)


_LIBRARY_ROOTS = _library_roots()


# The standard library (a venv's platstdlib is the parent of its site-packages: installed
# distributions under it are libraries, not the standard library) and the console scripts.
_STDLIB_ROOTS = _roots("stdlib", "platstdlib")
_NOT_WHERE = (os.path.realpath(_PACKAGE_DIR) + os.sep, *_roots("scripts"))
_LIBRARY_MARKERS = (os.sep + "site-packages" + os.sep, os.sep + "dist-packages" + os.sep)


@lru_cache(maxsize=4096)
def is_app_file(filename: str) -> bool:
    """True for the application's own source files: not stdlib, installed packages or ours."""
    if not filename or filename.startswith("<"):
        return False
    path = os.path.realpath(filename)
    if any(marker in path for marker in _LIBRARY_MARKERS):
        return False
    return not path.startswith(_LIBRARY_ROOTS)


@lru_cache(maxsize=4096)
def short_path(filename: str) -> str:
    """The shortest importable form of a source path: relative to the deepest ``sys.path`` entry."""
    path = os.path.realpath(filename)
    best = ""
    for entry in sys.path:
        root = os.path.realpath(entry or os.getcwd())
        if not root.endswith(os.sep):
            root += os.sep
        if path.startswith(root) and len(root) > len(best):
            best = root
    return path[len(best) :] if best else path


def location(filename: str, lineno: int | None, function: str) -> str:
    """Format one location as ``path:line:function``."""
    return f"{short_path(filename)}:{lineno or 0}:{function}"


def _tb_frames(tb: TracebackType | None) -> list[tuple[str, int | None, str]]:
    frames: list[tuple[str, int | None, str]] = []
    while tb is not None:
        code = tb.tb_frame.f_code
        frames.append((code.co_filename, tb.tb_lineno, code.co_name))
        tb = tb.tb_next
    return frames


def exception_locations(exc: BaseException) -> tuple[str | None, str | None]:
    """(where it could last have been handled, where it was raised) for an exception.

    The first is the outermost application frame of the traceback (the view, typically), the
    second the innermost application frame; library frames are used only when no application
    frame is on the traceback.
    """
    frames = _tb_frames(exc.__traceback__)
    if not frames:
        return None, None
    app = [f for f in frames if is_app_file(f[0])]
    if app:
        return location(*app[0]), location(*app[-1])
    innermost = location(*frames[-1])
    return innermost, innermost


def stack_locations(frame: FrameType | None) -> tuple[str | None, str | None]:
    """(outermost, innermost) application frames of a live stack, for timeout snapshots.

    The outermost is taken from the view function inward: the first application frame called by
    Django's handler (``django/core/handlers/base.py``); any application frame (middleware) when
    the view was not reached.
    """
    return locations_of(frame_stack(frame))


def frame_stack(frame: FrameType | None) -> list[tuple[str, int | None, str]]:
    """A live stack as (file, line, function), outermost first."""
    stack: list[tuple[str, int | None, str]] = []
    while frame is not None:
        code = frame.f_code
        stack.append((code.co_filename, frame.f_lineno, code.co_name))
        frame = frame.f_back
    stack.reverse()
    return stack


def locations_of(stack: list[tuple[str, int | None, str]]) -> tuple[str | None, str | None]:
    """``stack_locations`` of a stack given as (file, line, function), outermost first."""
    app_indexes = [i for i, f in enumerate(stack) if is_app_file(f[0])]
    if not app_indexes:
        return None, None
    outer = app_indexes[0]
    for i in app_indexes:
        if i > 0 and stack[i - 1][0].endswith(VIEW_CALLER):
            outer = i
            break
    return location(*stack[outer]), location(*stack[app_indexes[-1]])


VIEW_CALLER = os.path.join("django", "core", "handlers", "base.py")


def caller_location(frame: FrameType | None) -> str | None:
    """The innermost application frame from ``frame`` outward, as ``path:line:function``, or the
    ``name:line`` of a template node met first.

    Costs a few microseconds (one cached filename check per frame); meant for rare events such
    as the second run of one SQL text, not for every query.
    """
    depth = 0
    library: FrameType | None = None
    while frame is not None and depth < _MAX_WALK:
        code = frame.f_code
        filename = code.co_filename
        if is_app_file(filename):
            return location(filename, frame.f_lineno, code.co_name)
        if code.co_name == "render_annotated" and filename.endswith(_TEMPLATE_BASE):
            # A template node reached before any application frame issued it ({{ book.author }}
            # in a loop): that node says where, not the view (or WSGI layer) far outside.
            where = node_location(frame.f_locals.get("self"))
            if where is not None:
                return where
        elif library is None and _says_where(filename):
            library = frame
        frame = frame.f_back
        depth += 1
    # No application frame (a library's own code): the innermost library frame above the
    # database layer, never a launcher.
    if library is not None:
        code = library.f_code
        return location(code.co_filename, library.f_lineno, code.co_name)
    return None


def node_location(node: object) -> str | None:
    """``name:line`` of a Django template node."""
    origin = getattr(node, "origin", None)
    name = getattr(origin, "template_name", None) or getattr(origin, "name", None)
    if not name:
        return None
    token = getattr(node, "token", None)
    return f"{name}:{getattr(token, 'lineno', 0) or 0}"


@lru_cache(maxsize=4096)
def _says_where(filename: str) -> bool:
    """A library frame worth naming when no application frame exists: not the database layer
    that ran the query, not the ORM's query machinery, not the standard library, not ours."""
    if not filename or filename.startswith("<"):
        return False
    path = os.path.realpath(filename)
    if path.startswith(_NOT_WHERE) or any(part in path for part in _QUERY_MACHINERY):
        return False
    stdlib = path.startswith(_STDLIB_ROOTS) and not any(marker in path for marker in _LIBRARY_MARKERS)
    return not stdlib


_MAX_WALK = 256
_TEMPLATE_BASE = os.path.join("django", "template", "base.py")
_QUERY_MACHINERY = tuple(os.sep + os.path.join("django", *parts) + os.sep for parts in (("db",), ("utils",)))

TEMPLATE_ATTR = "_otel_canonical_logs_template"
"""Attribute our template instrumentation sets on an exception: ``name:line`` of the node."""


def template_location(exc: BaseException | None) -> str | None:
    """``name:line`` of the template node that raised ``exc`` or an exception it was chained from."""
    seen = 0
    while exc is not None and seen < 8:
        where = getattr(exc, TEMPLATE_ATTR, None)
        if isinstance(where, str):
            return where
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None
