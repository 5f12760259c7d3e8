"""Gunicorn integration, attached by patching Gunicorn's classes: no config edit, no hook
function replaced, so the user's own hooks (``post_fork``, ``worker_abort``, ...) run untouched."""

from __future__ import annotations

import logging
from typing import Any

from .. import _guard
from .._patching import Patches
from .._runtime import runtime
from . import rejected, saturation, workers
from .asgi import CanonicalASGI
from .wsgi import CanonicalWSGI

_logger = logging.getLogger("otel_canonical_logs")

__all__ = ["CanonicalASGI", "CanonicalWSGI", "patch", "wrap_application"]


_patches = Patches()
_patched = _patches.patch


def patch() -> None:
    """Attach to Gunicorn if it is installed: server layer, watchdog, saturation sampler."""
    try:
        from gunicorn.arbiter import Arbiter
        from gunicorn.workers.base import Worker
    except ImportError:
        return

    def make_start(original: Any) -> Any:
        def start(self: Any) -> Any:
            known = True
            with _guard.guard("gunicorn.arbiter_start"):
                known = _check_worker_class(self)
            result = original(self)
            if known:
                with _guard.guard("gunicorn.arbiter_start"):
                    saturation.board.start_sampler(self)
            return result

        return start

    def make_init(original: Any) -> Any:
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            original(self, *args, **kwargs)
            with _guard.guard("gunicorn.worker_init"):
                if workers.kind_of_worker(self) is not None:
                    saturation.board.assign_slot(self)

        return __init__

    def make_spawn_worker(original: Any) -> Any:
        def spawn_worker(self: Any) -> Any:
            result = original(self)  # returns in the arbiter only: the worker never comes back
            # Right after the fork, long before the new worker has booted: its first request
            # already finds a sample, instead of waiting up to a second for the sampler thread.
            with _guard.guard("gunicorn.spawn_worker"):
                if saturation.board.sampling():
                    saturation.board.sample(self)
            return result

        return spawn_worker

    def make_losing(original: Any) -> Any:
        # reap_workers and kill_worker are where the arbiter drops a worker that exited.
        def losing(self: Any, *args: Any, **kwargs: Any) -> Any:
            before = dict(getattr(self, "WORKERS", {}))
            try:
                return original(self, *args, **kwargs)
            finally:
                with _guard.guard("gunicorn.worker_exit"):
                    if saturation.board.sampling():
                        after = self.WORKERS
                        saturation.board.exited([w for pid, w in before.items() if pid not in after])

        return losing

    _patched(Arbiter, "start", make_start)
    _patched(Arbiter, "spawn_worker", make_spawn_worker)
    _patched(Arbiter, "reap_workers", make_losing)
    _patched(Arbiter, "kill_worker", make_losing)
    _patched(Worker, "__init__", make_init)
    _patched(Worker, "load_wsgi", make_load_wsgi)
    # Requests Gunicorn rejects before the application sees them (400, 414, 431...) get a line too.
    from gunicorn import util

    _patched(Worker, "handle_error", rejected.make_handle_error)
    _patched(util, "write_error", rejected.make_write_error)
    runtime.register_server_fields(saturation.board.fields)


def make_load_wsgi(original: Any) -> Any:
    """A worker's ``load_wsgi``, then the server layer around what it loaded."""

    def load_wsgi(self: Any) -> None:
        original(self)
        with _guard.guard("gunicorn.load_wsgi"):
            wrap_application(self)

    return load_wsgi


def wrap_application(worker: Any) -> None:
    """Put the server layer around the worker's application, as its kind needs."""
    kind = workers.kind_of_worker(worker)
    if kind is None:
        return  # unknown worker type: left alone (the arbiter said so once)
    app = getattr(worker, kind.app_attr, None)
    if app is None or isinstance(app, (CanonicalWSGI, CanonicalASGI)):
        return
    layer = CanonicalASGI if kind.interface == "asgi" else CanonicalWSGI
    setattr(worker, kind.app_attr, layer(app, worker, kind))


_warned: set[str] = set()


def _check_worker_class(arbiter: Any) -> bool:
    """Whether the arbiter's worker type is one the package knows; warn once if not."""
    cls = getattr(arbiter, "worker_class", None)
    if cls is None:
        return False
    kind = workers.kind_of(cls)
    if kind is None:
        name = workers.qualified_name(cls)
        if name not in _warned:
            _warned.add(name)
            _logger.warning(
                "otel_canonical_logs: Gunicorn worker type %s is not one this package supports (sync, "
                "gthread, gevent, asgi, uvicorn_worker.UvicornWorker); it is left alone: no server "
                "layer, timeout events or saturation fields, lines only from Django's own spans",
                name,
            )
        return False
    # A worker type that loads its application its own way (Gunicorn's asgi worker sets
    # ``self.asgi``) overrides load_wsgi: the server layer goes in after that one too.
    for klass in cls.__mro__:
        if "load_wsgi" in vars(klass) and klass.__module__ != "gunicorn.workers.base":
            _patched(klass, "load_wsgi", make_load_wsgi)
    if kind is workers.GEVENT:
        from .. import _gevent

        _gevent.guard_worker_patch(cls)
    return True
