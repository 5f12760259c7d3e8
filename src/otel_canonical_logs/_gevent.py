"""gevent under ``opentelemetry-instrument gunicorn -k gevent``, with nothing else to set.

gevent must patch the standard library before anything creates locks, threads or database
connections. Gunicorn patches in each worker, after the arbiter imported Django and
OpenTelemetry; the distro therefore patches first, in the arbiter, when the command line (or
``GUNICORN_CMD_ARGS``, or a ``worker_class`` literal in the config file) asks for a gevent
worker — what ``OTEL_PYTHON_AUTO_INSTRUMENTATION_EXPERIMENTAL_GEVENT_PATCH=patch_all`` does.
When the worker type could not be told that early (a computed ``worker_class``), the worker's
own patching is made safe for Django's lazy settings instead.

This module imports neither gevent nor Gunicorn until it is asked to.
"""

from __future__ import annotations

import ast
import logging
import os
import shlex
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ._patching import Patches

# The names users pass to -k for the gevent worker (Gunicorn's short names and the class paths).
GEVENT_NAMES = frozenset(
    {
        "gevent",
        "gevent_wsgi",
        "gevent_pywsgi",
        "egg:gunicorn#gevent",
        "egg:gunicorn#gevent_wsgi",
        "egg:gunicorn#gevent_pywsgi",
        "gunicorn.workers.ggevent.GeventWorker",
        "gunicorn.workers.ggevent.GeventPyWSGIWorker",
    }
)

_logger = logging.getLogger("otel_canonical_logs")
OTEL_GEVENT_PATCH = "OTEL_PYTHON_AUTO_INSTRUMENTATION_EXPERIMENTAL_GEVENT_PATCH"


def _is_gunicorn(argv: Sequence[str]) -> bool:
    if not argv:
        return False
    program = Path(argv[0])
    return program.name == "gunicorn" or (program.name == "__main__.py" and program.parent.name == "gunicorn")


def _options(tokens: Sequence[str], names: tuple[str, ...], short: str) -> list[str]:
    """Every value given to an option, in order: ``-kX``, ``-k X``, ``--name X``, ``--name=X``."""
    values: list[str] = []
    it = iter(tokens)
    for token in it:
        if token in names or token == short:
            value = next(it, None)
            if value is not None:
                values.append(value)
        elif any(token.startswith(n + "=") for n in names):
            values.append(token.split("=", 1)[1])
        elif short and token.startswith(short) and len(token) > len(short) and not token.startswith("--"):
            values.append(token[len(short) :])
    return values


def _config_worker_class(path: Path) -> str | None:
    """``worker_class = "..."`` assigned a literal at the top of a Gunicorn config file."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    except (OSError, SyntaxError, ValueError):
        return None
    found: str | None = None
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            value = node.value.value
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id == "worker_class" and isinstance(value, str):
                    found = value
    return found


def requested_worker_class(argv: Sequence[str], env: Mapping[str, str], cwd: Path) -> str | None:
    """The worker class a ``gunicorn`` command line asks for, as far as it can be read without
    running anything: config file, then ``GUNICORN_CMD_ARGS``, then the arguments (later wins)."""
    if not _is_gunicorn(argv):
        return None
    tokens = [*shlex.split(env.get("GUNICORN_CMD_ARGS", "")), *argv[1:]]
    configs = _options(tokens, ("--config",), "-c")
    config = configs[-1] if configs else "gunicorn.conf.py"
    chosen: str | None = None
    if not config.startswith("python:"):
        path = Path(config) if os.path.isabs(config) else cwd / config
        chosen = _config_worker_class(path)
    classes = _options(tokens, ("--worker-class",), "-k")
    return classes[-1] if classes else chosen


def patch_early(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> bool:
    """Monkey-patch with gevent now if this process is Gunicorn about to run gevent workers."""
    env = os.environ if env is None else env
    if env.get(OTEL_GEVENT_PATCH):
        return False  # OpenTelemetry's own switch already did (or refused) it
    worker_class = requested_worker_class(sys.argv if argv is None else argv, env, Path.cwd())
    if worker_class not in GEVENT_NAMES:
        return False
    try:
        from gevent import monkey
    except ImportError:
        return False  # Gunicorn will say that the gevent worker needs gevent
    if not monkey.is_module_patched("threading"):
        monkey.patch_all()
        _logger.debug("otel_canonical_logs: gevent worker requested; patched with gevent in the arbiter")
    return True


@contextmanager
def _settings_parked() -> Iterator[None]:
    """While gevent looks at every object for locks to fix, an unconfigured ``django.conf.settings``
    must not be asked its ``__class__`` (that loads the settings, which the stock ``wsgi.py``
    names only later): it is given a stand-in for the duration."""
    conf = sys.modules.get("django.conf")
    settings = getattr(conf, "settings", None)
    parked = False
    if settings is not None and not os.environ.get("DJANGO_SETTINGS_MODULE"):
        from django.utils.functional import empty

        if settings.__dict__.get("_wrapped", empty) is empty:
            settings._wrapped = _Parked()
            parked = True
    try:
        yield
    finally:
        if parked and settings is not None and isinstance(settings.__dict__.get("_wrapped"), _Parked):
            from django.utils.functional import empty

            settings._wrapped = empty


def _renew_thread_locals() -> None:
    """Django's connection handlers made before gevent patched (the package's DB instrumentation
    imports ``django.db`` in the arbiter) keep a real thread-local: every greenlet would share
    one connection. Give them a fresh, now greenlet-local, store; nothing is connected yet."""
    handlers = []
    db = sys.modules.get("django.db")
    if db is not None:
        handlers.append(db.connections)
    cache = sys.modules.get("django.core.cache")
    if cache is not None:
        handlers.append(cache.caches)
    if not handlers:
        return
    from asgiref.local import Local

    for handler in handlers:
        store = handler.__dict__.get("_connections")
        if isinstance(store, Local) and not _has_items(store):
            handler._connections = Local(handler.thread_critical)


def _has_items(store: Any) -> bool:
    storage = getattr(store, "_storage", None)
    return bool(getattr(storage, "__dict__", None))


class _Parked:
    """Stands in for unconfigured settings while gevent patches."""


_patches = Patches()


def guard_worker_patch(worker_class: Any) -> None:
    """Make the gevent worker's own ``patch()`` safe for Django's lazy settings (arbiter, once)."""

    def make(original: Any) -> Any:
        def patch(self: Any) -> Any:
            with _settings_parked():
                result = original(self)
            try:
                _renew_thread_locals()
            except Exception as exc:
                from . import _guard

                _guard.report("gevent.renew_thread_locals", exc)
            return result

        return patch

    _patches.patch(worker_class, "patch", make)
