"""Views for the line's N+1, user and size fields (tests/integration/test_line_fields.py): an N+1
loop among other queries, the same loop in raw SQL with the ids inlined, a session lookup run
twice, and views that use the logged-in user (sync and async)."""

from django.db import connection
from django.http import HttpRequest, HttpResponse

from shop.models import Author, Book


def text(body: str) -> HttpResponse:
    return HttpResponse(body, content_type="text/plain; charset=utf-8")


def n1_loop(request: HttpRequest) -> HttpResponse:
    """A count, the books (the loop's source), one author query per book, then two more queries."""
    authors = Author.objects.count()
    books = list(Book.objects.order_by("id"))
    names = []
    for book in books:
        names.append(Author.objects.get(pk=book.author_id).name)  # the N+1 loop
    last = Book.objects.order_by("-id").values_list("title", flat=True).first()
    titles = Book.objects.filter(author__name=names[0]).count() if names else 0
    return text(f"authors={authors} books={len(books)} last={last} titles={titles}\n")


def n1_raw(request: HttpRequest) -> HttpResponse:
    """The same loop in raw SQL, each author's id inlined in the text (no placeholder)."""
    names = []
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, author_id FROM shop_book ORDER BY id")
        for _, author_id in cursor.fetchall():
            cursor.execute(f"SELECT name FROM shop_author WHERE id = {int(author_id)}")  # the raw loop
            names.append(cursor.fetchone()[0])
        cursor.execute("SELECT COUNT(*) FROM shop_author")
    return text(f"names={len(names)}\n")


def session_twice(request: HttpRequest) -> HttpResponse:
    """The session read from the database twice, a query between (needs EXAMPLE_ADMIN=1)."""
    request.session.load()
    books = Book.objects.count()
    request.session.load()
    return text(f"books={books}\n")


def whoami(request: HttpRequest) -> HttpResponse:
    """The view uses request.user: the session and user queries are the application's own."""
    return text(f"user={request.user.pk}\n")


async def whoami_async(request: HttpRequest) -> HttpResponse:
    """The async view loads the user with ``request.auser()``."""
    user = await request.auser()
    return text(f"user={user.pk}\n")
