"""Every cursor path Django has, one view each, for the truth tests
(tests/integration/test_truth.py): the line's db_queries must equal what Django's own
CaptureQueriesContext counts for the same request run in-process, on SQLite and PostgreSQL."""

from django.db import connections, transaction
from django.http import HttpRequest, HttpResponse
from django.views.generic import ListView

from shop.models import Author, Book


def _text(body: str) -> HttpResponse:
    return HttpResponse(body + "\n", content_type="text/plain; charset=utf-8")


def iterator(request: HttpRequest) -> HttpResponse:
    """QuerySet.iterator(): a server-side cursor on PostgreSQL (Django's ServerSideCursor on
    "default", psycopg's named cursor with server-side binding on "other")."""
    alias = request.GET.get("alias", "default")
    titles = [b.title for b in Book.objects.using(alias).order_by("id").iterator(chunk_size=3)]
    return _text(f"{len(titles)} books via {alias}")


def atomic(request: HttpRequest) -> HttpResponse:
    """Two atomic blocks with one UPDATE each: BEGIN, UPDATE, COMMIT twice, as Django logs them."""
    for pk in (1, 2):
        with transaction.atomic():
            Book.objects.filter(pk=pk).update(title=Book.objects.get(pk=pk).title)
    return _text("two transactions")


def nested(request: HttpRequest) -> HttpResponse:
    """A savepoint released and one rolled back inside a transaction."""
    with transaction.atomic():
        Author.objects.count()
        with transaction.atomic():
            Author.objects.filter(pk=1).exists()
        try:
            with transaction.atomic():
                Author.objects.filter(pk=2).update(name=Author.objects.get(pk=2).name)
                raise LookupError("undo the inner block")
        except LookupError:
            pass
    return _text("nested")


def bulk(request: HttpRequest) -> HttpResponse:
    """bulk_create in atomic, rolled back so the data stays as seeded."""
    with transaction.atomic():
        author = Author.objects.get(pk=1)
        Book.objects.bulk_create(Book(title=f"draft {i}", author=author) for i in range(5))
        made = Book.objects.filter(title__startswith="draft ").count()
        transaction.set_rollback(True)
    return _text(f"{made} drafts, rolled back")


def select_for_update(request: HttpRequest) -> HttpResponse:
    with transaction.atomic():
        locked = list(Book.objects.select_for_update().filter(pk__in=[1, 2]))
    return _text(f"{len(locked)} locked")


def raw(request: HttpRequest) -> HttpResponse:
    """Raw cursor: execute, executemany (one query for Django), and a second alias."""
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM shop_book")
        (count,) = cursor.fetchone()
        cursor.executemany("UPDATE shop_book SET title = title WHERE id = %s", [(1,), (2,), (3,)])
    with connections["other"].cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM shop_author")
    return _text(f"{count} books")


def on_commit(request: HttpRequest) -> HttpResponse:
    """A query run by a transaction.on_commit callback, after COMMIT, still in the request."""
    seen: list[int] = []
    with transaction.atomic():
        Book.objects.filter(pk=1).update(title=Book.objects.get(pk=1).title)
        transaction.on_commit(lambda: seen.append(Author.objects.count()))
    return _text(f"after commit: {seen}")


class BookListView(ListView):
    """A generic view whose template runs the N+1: no application frame issues those queries."""

    model = Book
    template_name = "shop/generic_list.html"
