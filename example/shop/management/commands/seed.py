from django.core.management.base import BaseCommand
from django.db import transaction

from shop.models import Author, Book

AUTHORS = ["Ursula K. Le Guin", "Terry Pratchett", "Octavia E. Butler"]

BOOKS = [
    ("A Wizard of Earthsea", 0),
    ("The Left Hand of Darkness", 0),
    ("The Dispossessed", 0),
    ("Guards! Guards!", 1),
    ("Small Gods", 1),
    ("Night Watch", 1),
    ("Going Postal", 1),
    ("Kindred", 2),
    ("Parable of the Sower", 2),
    ("Dawn", 2),
]


class Command(BaseCommand):
    help = "Idempotently create 3 authors and 10 books."

    @transaction.atomic
    def handle(self, *args, **options):
        authors = [Author.objects.get_or_create(name=name)[0] for name in AUTHORS]
        created = 0
        for title, index in BOOKS:
            _, was_created = Book.objects.get_or_create(title=title, defaults={"author": authors[index]})
            created += was_created
        self.stderr.write(
            f"seed: {Author.objects.count()} authors, {Book.objects.count()} books ({created} books created)"
        )
