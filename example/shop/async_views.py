"""Async views and streamed bodies: what ASGI workers (Uvicorn, Gunicorn's ``asgi``) and long
responses do, for the worker-type and streaming tests (tests/integration/test_workers.py)."""

import asyncio
import time

from asgiref.sync import sync_to_async
from django.http import FileResponse, HttpRequest, HttpResponse, StreamingHttpResponse

from otel_canonical_logs import Context
from shop.models import Author, Book


async def async_db(request: HttpRequest) -> HttpResponse:
    """Queries from async code: two through the async ORM, three through sync_to_async, and the
    ?marker= value set with Context (it must come back on this request's line only)."""
    marker = request.GET.get("marker", "")
    Context.set("marker", marker)
    books = await Book.objects.acount()
    first = await Author.objects.order_by("id").afirst()
    names = await sync_to_async(_three_authors, thread_sensitive=True)()
    await asyncio.sleep(float(request.GET.get("s", "0")))
    Context.set("marker_again", marker)
    return HttpResponse(f"books={books} first={first.name if first else '-'} names={names} marker={marker}\n")


def _three_authors() -> str:
    return ",".join(a.name for a in (Author.objects.filter(pk=pk).first() for pk in (1, 2, 3)) if a)


def marker(request: HttpRequest) -> HttpResponse:
    """Sync counterpart of async_db: ?marker= onto the line, one query, an optional ?s= pause."""
    value = request.GET.get("marker", "")
    Context.set("marker", value)
    count = Book.objects.count()
    time.sleep(float(request.GET.get("s", "0")))
    Context.set("marker_again", value)
    return HttpResponse(f"books={count} marker={value}\n")


async def async_block(request: HttpRequest) -> HttpResponse:
    """Blocks the event loop for ?s= seconds (time.sleep in async code): on an ASGI worker the
    heartbeat stops and Gunicorn kills the worker past its timeout."""
    time.sleep(min(float(request.GET.get("s", "0")), 60.0))
    return HttpResponse("blocked\n")


async def async_wait(request: HttpRequest) -> HttpResponse:
    """Awaits for ?s= seconds without blocking the loop: stuck, never killed."""
    await Book.objects.acount()
    await asyncio.sleep(min(float(request.GET.get("s", "0")), 60.0))
    return HttpResponse("waited\n")


def stream(request: HttpRequest) -> StreamingHttpResponse:
    """?chunks= chunks ?s= seconds apart, one query per chunk, from a sync generator."""
    chunks = min(int(request.GET.get("chunks", "3")), 1000)
    pause = min(float(request.GET.get("s", "0")), 60.0)

    def body():
        for i in range(chunks):
            time.sleep(pause)
            yield f"chunk {i} books={Book.objects.count()}\n".encode()

    return StreamingHttpResponse(body(), content_type="text/plain")


async def stream_async(request: HttpRequest) -> StreamingHttpResponse:
    """?chunks= chunks ?s= seconds apart, one async-ORM query per chunk, from an async generator;
    with ?block=1 the pause blocks the event loop (time.sleep), as a careless generator would."""
    chunks = min(int(request.GET.get("chunks", "3")), 1000)
    pause = min(float(request.GET.get("s", "0")), 60.0)
    block = request.GET.get("block") == "1"

    async def body():
        for i in range(chunks):
            yield f"chunk {i} books={await Book.objects.acount()}\n".encode()
            if block:
                time.sleep(pause)
            else:
                await asyncio.sleep(pause)

    return StreamingHttpResponse(body(), content_type="text/plain")


def spin(request: HttpRequest) -> HttpResponse:
    """Keeps the CPU busy for ?s= seconds without yielding: under gevent it blocks the hub."""
    end = time.monotonic() + min(float(request.GET.get("s", "0")), 60.0)
    while time.monotonic() < end:
        pass
    return HttpResponse("spun\n")


def file(request: HttpRequest) -> FileResponse:
    """A file sent with the server's file wrapper (sendfile on Gunicorn's WSGI workers)."""
    return FileResponse(open(__file__, "rb"), content_type="text/plain")  # Django closes it
