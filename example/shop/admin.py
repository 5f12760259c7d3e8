"""The Django admin for the shop (only with EXAMPLE_ADMIN=1): a changelist with a filter and a
search, and a change form, for the truth tests on an app the project does not control."""

from django.contrib import admin

from shop.models import Author, Book


@admin.register(Author)
class AuthorAdmin(admin.ModelAdmin):
    search_fields = ["name"]


@admin.register(Book)
class BookAdmin(admin.ModelAdmin):
    list_display = ["title", "author"]
    list_filter = ["author"]
    search_fields = ["title", "author__name"]
