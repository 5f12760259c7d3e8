"""The outermost ASGI layer of each asyncio worker (Uvicorn's, Gunicorn's ``asgi``): the same
job as the WSGI layer for HTTP requests — watchdog, saturation, the line written once the last
body message has been sent, a line for requests that never reached Django. Lifespan and
websocket scopes pass through untouched (a websocket connection gets no line)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .. import _guard, _scope
from .._http import body_bytes, fields_from_asgi
from .layer import ServerLayer, emit_unseen, end_request
from .workers import UVICORN, WorkerKind

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]


class _Exchange:
    """What the server layer saw of one HTTP exchange."""

    __slots__ = ("complete", "disconnected", "sent", "status")

    def __init__(self) -> None:
        self.status: int | None = None
        self.sent = 0  # body bytes the server has taken
        self.complete = False  # the last body message (more_body false) was sent
        self.disconnected = False  # the client went away before that


class CanonicalASGI(ServerLayer):
    """Wraps a worker's ASGI application (ASGI 3: ``await app(scope, receive, send)``)."""

    app: ASGIApp

    def __init__(self, app: ASGIApp, worker: Any = None, kind: WorkerKind = UVICORN) -> None:
        super().__init__(app, worker, kind)

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            return await self.app(scope, receive, send)
        try:
            request, token, exchange, receive_, send_ = self._begin(scope, receive, send)
        except Exception as exc:
            _guard.report("asgi.begin", exc)
            return await self.app(scope, receive, send)
        start = time.perf_counter_ns()
        failed = False
        try:
            await self.app(scope, receive_, send_)
        except BaseException:
            failed = True
            raise
        finally:
            try:
                _scope.current.reset(token)
            except ValueError:  # reset from another context than the one that set it
                _scope.current.set(None)
            self._finish(request, exchange, failed, time.perf_counter_ns() - start)

    def _begin(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> Any:
        request = _scope.RequestScope(scope, cpu=False)
        request.loop = asyncio.get_running_loop()
        token = _scope.current.set(request)
        exchange = _Exchange()
        if self.watchdog is not None:
            self.watchdog.arm(request, request.start)
        self._busy(self.slot, 1)

        async def send_(message: Message) -> None:
            final = False
            size = 0
            try:
                kind = message.get("type")
                if kind == "http.response.body":
                    final = not message.get("more_body", False)
                    size = len(message.get("body", b""))
                elif kind == "http.response.start":
                    exchange.status = int(message.get("status", 0))
            except Exception as exc:
                _guard.report("asgi.send", exc)
            await send(message)
            exchange.sent += size
            if final:
                exchange.complete = True

        async def receive_() -> Message:
            message = await receive()
            try:
                if message.get("type") == "http.disconnect" and not exchange.complete:
                    exchange.disconnected = True
            except Exception as exc:
                _guard.report("asgi.receive", exc)
            return message

        return request, token, exchange, receive_, send_

    def _finish(
        self, request: _scope.RequestScope, exchange: _Exchange, failed: bool, elapsed_ns: int
    ) -> None:
        try:
            request.open = False
            self._busy(self.slot, -1, not request.timed_out)  # a timed-out one has its event
            if self.watchdog is not None:
                self.watchdog.disarm(request)
            complete = exchange.complete and not exchange.disconnected
            sent = None
            if exchange.status is not None:
                sent = body_bytes(request.environ.get("method"), exchange.status, exchange.sent)
            end_request(request, complete, None, resp_bytes=sent)
            if not request.root_started and not request.fired:
                fields = fields_from_asgi(request.environ, request.start)
                emit_unseen(fields, exchange.status, failed, elapsed_ns, complete, sent)
        except Exception as exc:
            _guard.report("asgi.finish", exc)
