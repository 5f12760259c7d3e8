"""The outermost WSGI layer of each Gunicorn worker (sync, gthread, gevent): arms the timeout
watchdog, flags the worker busy for saturation, writes each request's line when its body has been
sent, and gives a line to requests that no root span saw (health checks answered in ``wsgi.py``,
WhiteNoise static files)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .. import _guard, _scope
from .._http import body_bytes, content_length, fields_from_environ
from . import rejected
from .layer import ServerLayer, emit_unseen, end_request
from .workers import SYNC, WorkerKind

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _greenlet_module() -> Any:
    import greenlet

    return greenlet


class CanonicalWSGI(ServerLayer):
    """Wraps a worker's WSGI app. Per request: one context-variable set, two dict operations for
    the watchdog, two byte writes for saturation, and a thin wrapper around the body whose
    ``close()`` (which every WSGI server calls once the body is sent) writes the line."""

    app: WSGIApp

    def __init__(self, app: WSGIApp, worker: Any = None, kind: WorkerKind = SYNC) -> None:
        super().__init__(app, worker, kind)
        self._getcurrent = _greenlet_module().getcurrent if kind.greenlets else None
        # Sync workers beat just before accepting a request: that is when the arbiter's
        # timeout clock starts, so the watchdog's does too.
        tmp = getattr(worker, "tmp", None)
        sync = self.watchdog is not None and self.watchdog.kill_on_timeout
        self._heartbeat: Callable[[], float] | None = tmp.last_update if sync and tmp is not None else None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        getcurrent = self._getcurrent
        scope = _scope.RequestScope(
            environ, self.kind.threads, getcurrent() if getcurrent is not None else None
        )
        path_info = environ.get("PATH_INFO", "")  # raw: Django rewrites the environ's in place
        _scope.current.set(scope)
        rejected.served(environ)  # so Gunicorn's error handler never writes a second line for it
        start = time.perf_counter_ns()
        status: list[Any] = []  # the status line, then the headers
        watchdog = self.watchdog
        if watchdog is not None:
            since = scope.start
            if self._heartbeat is not None:
                try:  # noqa: SIM105 - cheaper than contextlib.suppress on the request path
                    since = min(since, self._heartbeat())
                except (OSError, ValueError):
                    pass
            watchdog.arm(scope, since)
        self._busy(self.slot, 1)

        def capture(status_line: str, headers: Any, exc_info: Any = None) -> Any:
            status[:] = [status_line, headers]
            return start_response(status_line, headers, exc_info)

        try:
            body = self.app(environ, capture)
        except BaseException as exc:
            self._finish(scope, environ, path_info, status, start, failed=True, complete=False, error=exc)
            raise
        try:
            file_wrapper = environ.get("wsgi.file_wrapper")
            if file_wrapper is not None and isinstance(body, file_wrapper):
                # Gunicorn sends these with sendfile: keep the object, hook its close().
                _hook_close(
                    body,
                    lambda: self._finish(scope, environ, path_info, status, start, sent=_declared(status)),
                )
                return body  # type: ignore[no-any-return]
            if hasattr(type(body), "__iter__"):
                return _Body(body, self, scope, environ, path_info, status, start)
        except Exception as exc:
            _guard.report("wsgi.body", exc)
        self._finish(scope, environ, path_info, status, start)
        return body

    def _finish(
        self,
        scope: _scope.RequestScope,
        environ: dict[str, Any],
        path_info: str,
        status: list[Any],
        start: int,
        failed: bool = False,
        complete: bool = True,
        error: BaseException | None = None,
        status_override: bool = False,
        sent: int | None = None,
    ) -> None:
        """The request is over (its body sent, or not): write its line; ``sent``: the body bytes
        handed to the server, when known."""
        if not scope.open:
            return
        scope.open = False
        try:
            if _scope.current.get() is scope:
                _scope.current.set(None)
            self._busy(self.slot, -1, not scope.timed_out)  # a timed-out one has its event
            if self.watchdog is not None:
                self.watchdog.disarm(scope)
            resp_bytes = None
            if sent is not None and status:
                resp_bytes = body_bytes(environ.get("REQUEST_METHOD"), _code(status), sent)
            end_request(scope, complete, error, 500 if status_override else None, resp_bytes)
            if not scope.root_started and not scope.fired:
                elapsed = time.perf_counter_ns() - start
                self._emit(environ, path_info, status, failed, elapsed, complete, scope.start, resp_bytes)
        except Exception as exc:
            _guard.report("wsgi.finish", exc)

    @staticmethod
    def _emit(
        environ: dict[str, Any],
        path_info: str,
        status: list[Any],
        failed: bool,
        elapsed_ns: int,
        complete: bool = True,
        started: float | None = None,
        resp_bytes: int | None = None,
    ) -> None:
        try:
            code = _code(status) if status else None
            fields = fields_from_environ(environ, path_info, started)
            emit_unseen(fields, code, failed, elapsed_ns, complete, resp_bytes)
        except Exception as exc:
            _guard.report("wsgi.fallback_event", exc)


def _code(status: list[Any]) -> int | None:
    """The status code of a status line (``"200 OK"``)."""
    try:
        return int(status[0].split(" ", 1)[0])
    except (ValueError, AttributeError, IndexError):
        return None  # Gunicorn refuses such a status line: its own error response goes out


def _declared(status: list[Any]) -> int | None:
    """The ``Content-Length`` the application declared: what Gunicorn sends of a file."""
    for name, value in status[1] if len(status) > 1 else ():
        if name.lower() == "content-length":
            return content_length(value)
    return None


def _hook_close(body: Any, finish: Callable[[], None]) -> None:
    original = getattr(body, "close", None)

    def close() -> None:
        try:
            if original is not None:
                original()
        finally:
            finish()

    body.close = close


class _Body:
    """The response body as the server iterates it; the request ends when a streamed body's last
    chunk is out, when a plain body is handed over, or at ``close()`` (every WSGI server calls it).

    A body the server stopped iterating before its end (the client hung up) is ``aborted``; an
    exception raised while producing it is the request's error. Iterating is a generator, so a
    chunk costs one generator resume and the end of the body raises no exception.
    """

    __slots__ = (
        "_bytes",
        "_complete",
        "_environ",
        "_error",
        "_inner",
        "_layer",
        "_path_info",
        "_scope",
        "_sent",
        "_start",
        "_status",
    )

    def __init__(
        self,
        inner: Iterable[bytes],
        layer: CanonicalWSGI,
        scope: _scope.RequestScope,
        environ: dict[str, Any],
        path_info: str,
        status: list[Any],
        start: int,
    ) -> None:
        self._inner = inner
        self._layer = layer
        self._scope = scope
        self._environ = environ
        self._path_info = path_info
        self._status = status
        self._start = start
        self._error: BaseException | None = None
        self._sent = False  # a chunk went to the server: its headers are out
        self._complete = False
        self._bytes = 0  # body bytes the server has taken

    def __iter__(self) -> Iterator[bytes]:
        inner = self._inner
        if type(inner) in (list, tuple) or getattr(inner, "streaming", None) is False:
            # A plain response (Django's HttpResponse, a list): its bytes are already in memory.
            # The line goes out before the server writes them: a worker killed between the last
            # byte and the line would otherwise lose the line of a request its client received.
            try:
                chunks = list(inner)
            except BaseException as exc:
                self._error = exc
                raise
            self._complete = True
            try:
                self._bytes = sum(map(len, chunks))
            except Exception as exc:
                _guard.report("wsgi.body_bytes", exc)
            self._end()
            yield from chunks
            return
        try:
            for chunk in inner:
                self._sent = True
                yield chunk
                # Asked for the next one: the server has written this one.
                self._bytes += len(chunk)
        except GeneratorExit:
            raise  # the server stopped early (client gone): close() ends the request
        except BaseException as exc:
            self._error = exc
            raise
        self._complete = True
        # The server asks for more only once the last chunk is written: the streamed body is
        # sent. The line goes out now, before the server's close() bookkeeping (Django's
        # request_finished, closing the DB connection).
        self._end()

    def close(self) -> None:
        try:
            close = getattr(self._inner, "close", None)
            if close is not None:
                close()
        finally:
            self._end()

    def _end(self) -> None:
        if self._scope.open:
            error = self._error
            status = self._status
            if error is not None and not self._sent:
                status[:] = ["500"]  # nothing sent yet: Gunicorn answers the error with a 500
            self._layer._finish(
                self._scope,
                self._environ,
                self._path_info,
                status,
                self._start,
                failed=error is not None,
                complete=self._complete,
                error=error,
                status_override=error is not None and not self._sent,
                sent=None if error is not None and not self._sent else self._bytes,
            )
