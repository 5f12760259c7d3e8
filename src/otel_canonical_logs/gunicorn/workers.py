"""The Gunicorn worker types the package knows, and what each one gives.

A worker class is known when it, or a class it derives from, is listed here (so a project's own
``UvicornWorker`` subclass with other ``CONFIG_KWARGS`` is known too). Any other worker type is
left alone: its application is not wrapped, no watchdog or saturation slot, one warning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class WorkerKind:
    """How requests run in one worker type."""

    name: str
    # "wsgi": Worker.wsgi is a WSGI app; "asgi": the attribute ``app_attr`` holds an ASGI app.
    interface: str
    app_attr: str
    # How a request past --timeout ends: "kill" (sync: the arbiter kills the worker), "stuck"
    # (gthread: nobody kills it), "cooperative" (gevent, asyncio: stuck unless it blocks the
    # event loop / hub, which stops the heartbeat and gets the worker killed).
    timeout: str
    # Whether each request has an OS thread of its own: its CPU clock and its stack are its own.
    threads: bool
    greenlets: bool = False


SYNC = WorkerKind("sync", "wsgi", "wsgi", "kill", threads=True)
GTHREAD = WorkerKind("gthread", "wsgi", "wsgi", "stuck", threads=True)
GEVENT = WorkerKind("gevent", "wsgi", "wsgi", "cooperative", threads=False, greenlets=True)
GUNICORN_ASGI = WorkerKind("asgi", "asgi", "asgi", "cooperative", threads=False)
UVICORN = WorkerKind("uvicorn", "asgi", "wsgi", "cooperative", threads=False)

KNOWN: dict[str, WorkerKind] = {
    "gunicorn.workers.sync.SyncWorker": SYNC,
    "gunicorn.workers.gthread.ThreadWorker": GTHREAD,
    "gunicorn.workers.ggevent.GeventWorker": GEVENT,
    "gunicorn.workers.ggevent.GeventPyWSGIWorker": GEVENT,
    "gunicorn.workers.gasgi.ASGIWorker": GUNICORN_ASGI,
    "uvicorn.workers.UvicornWorker": UVICORN,
    "uvicorn.workers.UvicornH11Worker": UVICORN,
    "uvicorn_worker._workers.UvicornWorker": UVICORN,
    "uvicorn_worker._workers.UvicornH11Worker": UVICORN,
}


def qualified_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def kind_of(cls: type) -> WorkerKind | None:
    """The kind of a worker class, from the first known class in its MRO; None if unknown."""
    for klass in getattr(cls, "__mro__", ()):
        kind = KNOWN.get(qualified_name(klass))
        if kind is not None:
            return kind
        if klass.__name__ == "Worker" and klass.__module__ == "gunicorn.workers.base":
            return None  # past every concrete worker type: the base class knows nothing
    return None


def kind_of_worker(worker: Any) -> WorkerKind | None:
    return kind_of(type(worker))
