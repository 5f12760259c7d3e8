import os

from django.apps import AppConfig


class ShopConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "shop"

    def ready(self) -> None:
        if os.environ.get("EXAMPLE_INSTRUMENTERS") == "1":
            from shop import instrumenters  # noqa: F401 - registers them
