import time

from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from shop.helpers import compute_total
from shop.models import Author, Book


def text(body: str, status: int = 200) -> HttpResponse:
    return HttpResponse(body, content_type="text/plain; charset=utf-8", status=status)


def ok(request: HttpRequest) -> HttpResponse:
    """No database, no template."""
    return HttpResponse("ok")


def book_list(request: HttpRequest) -> HttpResponse:
    """One query (select_related), rendered through a template loop."""
    books = list(Book.objects.select_related("author").order_by("id"))
    return render(request, "shop/book_list.html", {"books": books})


def book_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """One query; a missing pk raises Http404 (handled, not an error)."""
    book = get_object_or_404(Book, pk=pk)
    return text(f"{book.title} by {book.author_id}\n")


def n_plus_one(request: HttpRequest) -> HttpResponse:
    """The classic N+1: 1 query for the books, then 5 identical author lookups."""
    books = list(Book.objects.all()[:5])
    lines = [f"{b.title} by {b.author.name}" for b in books]
    return text("\n".join(lines) + "\n")


def db(request: HttpRequest) -> HttpResponse:
    """Exactly 10 queries: one count, then 9 with the same SQL text."""
    count = Book.objects.count()
    names = []
    for pk in range(1, 10):
        author = Author.objects.filter(pk=pk).first()
        names.append(author.name if author else "-")
    return text(f"books={count} authors={','.join(names)}\n")


def tpl(request: HttpRequest) -> HttpResponse:
    """A template with a 50-iteration for-loop, no database."""
    return render(request, "shop/loop.html", {"items": range(50)})


def boom(request: HttpRequest) -> HttpResponse:
    """Uncaught ValueError raised inside shop/helpers.py -> 500."""
    total = compute_total()
    return text(f"total={total}\n")


def debug_cursor(request: HttpRequest) -> HttpResponse:
    """Three queries run with Django's debug cursor forced on."""
    previous = connection.force_debug_cursor
    connection.force_debug_cursor = True
    try:
        authors = Author.objects.count()
        books = Book.objects.count()
        first = Book.objects.order_by("id").values_list("title", flat=True).first()
    finally:
        connection.force_debug_cursor = previous
    return text(f"authors={authors} books={books} first={first}\n")


def sleep(request: HttpRequest) -> HttpResponse:
    """Sleep for ?s=<float> seconds (capped at 60)."""
    try:
        seconds = float(request.GET.get("s", "0"))
    except ValueError:
        return text("bad s\n", status=400)
    if not seconds >= 0:  # also rejects NaN
        return text("bad s\n", status=400)
    time.sleep(min(seconds, 60.0))
    return text("slept")


def echo_headers(request: HttpRequest) -> HttpResponse:
    """Plain 200; exists so hostile-header tests have a target."""
    return HttpResponse("ok")


def stubborn(request: HttpRequest) -> HttpResponse:
    """Ignore SIGABRT (as some apps do), then sleep ?s= seconds: Gunicorn has to SIGKILL it."""
    import signal

    signal.signal(signal.SIGABRT, signal.SIG_IGN)
    time.sleep(min(float(request.GET.get("s", "0")), 60.0))
    return text("survived")


def slow_query(request: HttpRequest) -> HttpResponse:
    """A query that keeps the database busy for ?s= seconds, after one quick query."""
    seconds = min(float(request.GET.get("s", "0")), 60.0)
    Author.objects.count()
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT pg_sleep(%s)", [seconds])
        else:
            # SQLite has no sleep: count through a recursive CTE sized to the request.
            cursor.execute(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %s) "
                "SELECT count(*) FROM n",
                [int(seconds * 4_000_000)],
            )
    return text("done")


# -- fault cases for tests/integration/test_reliability.py and tests/stress/ -------------------
# Each view misbehaves in one way an application can; the tests check that the request is served
# exactly as without otel-canonical-logs and that its canonical line is still written.


class _NoText:
    def __str__(self) -> str:
        raise RuntimeError("no text for you")


def fault_context(request: HttpRequest) -> HttpResponse:
    """Context.set with values no sink can carry as they are: a lone surrogate, an object whose
    __str__ raises, invalid UTF-8 bytes, NaN, infinity and an int beyond 64 bits."""
    from otel_canonical_logs import Context

    Context.set("surrogate", "a\ud800b")
    Context.set("no_text", _NoText())
    Context.set("raw_bytes", b"\xff\xfe\x00ok")
    Context.set("nan", float("nan"))
    Context.set("inf", float("-inf"))
    Context.set("huge", 2**100)
    Context.set("marker", request.GET.get("marker", ""))
    return text("context set\n")


def fault_db_error(request: HttpRequest) -> HttpResponse:
    """A query against a missing table between two good ones; caught unless ?uncaught=1."""
    from django.db import DatabaseError, transaction

    before = Author.objects.count()
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT * FROM shop_no_such_table")
    except DatabaseError:
        if request.GET.get("uncaught") == "1":
            raise
    after = Book.objects.count()
    return text(f"authors={before} books={after}\n")


def fault_leak_spans(request: HttpRequest) -> HttpResponse:
    """Start ?roots= root SERVER spans (new traces) and ?children= child spans of this request,
    and never end any of them: the leaks of an application that forgets span.end()."""
    from opentelemetry import context as otel_context
    from opentelemetry import trace

    tracer = trace.get_tracer("shop.leaks")
    roots = min(int(request.GET.get("roots", "0")), 1000)
    children = min(int(request.GET.get("children", "0")), 1000)
    for _ in range(roots):
        tracer.start_span("leaked root", kind=trace.SpanKind.SERVER, context=otel_context.Context())
    for _ in range(children):
        tracer.start_span("leaked child")
    time.sleep(min(float(request.GET.get("s", "0")), 60.0))
    return text(f"leaked roots={roots} children={children}\n")


def fault_stream(request: HttpRequest) -> HttpResponse:
    """A streaming response of ?chunks= chunks, ?s= seconds apart, one query per chunk: a client
    that hangs up early leaves the rest of the generator never iterated."""
    from django.http import StreamingHttpResponse

    chunks = min(int(request.GET.get("chunks", "3")), 1000)
    pause = min(float(request.GET.get("s", "0")), 5.0)

    def body():
        for i in range(chunks):
            yield f"chunk {i} books={Book.objects.count()}\n".encode()
            time.sleep(pause)

    return StreamingHttpResponse(body(), content_type="text/plain")


def fault_counts(request: HttpRequest) -> HttpResponse:
    """Diagnostics for tests, from this worker process: what the package counted (internal
    errors and expected losses), requests it tracks and spans it holds, and this worker's pid."""
    import json
    import os

    from otel_canonical_logs.testing import internal_counts

    body = {"pid": os.getpid(), **internal_counts()}
    return HttpResponse(json.dumps(body), content_type="application/json")


def fault_file_name(request: HttpRequest) -> HttpResponse:
    """An uncaught error whose message names a file whose name is not UTF-8: os.fsdecode leaves a
    lone surrogate in it, which no UTF-8 encoder accepts as it is."""
    import os

    name = os.fsdecode(b"report-\xff.csv")
    raise LookupError(f"no report named {name}")
