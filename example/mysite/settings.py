"""Settings for the otel-canonical-logs example project.

stdout is reserved for canonical log lines: nothing here configures logging
to print there (Django's default handlers write to stderr).
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("EXAMPLE_SECRET_KEY", "django-insecure-example-only-do-not-use-in-production")

DEBUG = os.environ.get("EXAMPLE_DEBUG") == "1"

ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]", "testserver"]

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "shop",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
]

ROOT_URLCONF = "mysite.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": []},
    },
]

WSGI_APPLICATION = "mysite.wsgi.application"

if os.environ.get("EXAMPLE_DB", "sqlite") == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ.get("EXAMPLE_PG_NAME", "canonical_example"),
            "USER": "postgres",
            "PASSWORD": "",
            "HOST": os.environ.get("EXAMPLE_PG_HOST", "127.0.0.1"),  # "db" under docker compose
            "PORT": "5432",
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("EXAMPLE_SQLITE_PATH", BASE_DIR / "db.sqlite3"),
        }
    }

# A second alias on the same database, for the truth tests (tests/integration/test_truth.py):
# on PostgreSQL with server-side binding, so QuerySet.iterator() takes psycopg's own named cursor
# there and Django's ServerSideCursor on "default".
DATABASES["other"] = dict(DATABASES["default"])
if DATABASES["other"]["ENGINE"].endswith("postgresql"):
    DATABASES["other"]["OPTIONS"] = {"server_side_binding": True}
else:
    DATABASES["other"]["TEST"] = {"MIRROR": "default"}

# EXAMPLE_ADMIN=1: the Django admin (a third-party app the project does not control), with the
# apps and middleware it needs. Off by default so the other tests and the bench see the same
# middleware stack as before.
if os.environ.get("EXAMPLE_ADMIN") == "1":
    INSTALLED_APPS += [
        "django.contrib.admin",
        "django.contrib.auth",
        "django.contrib.sessions",
        "django.contrib.messages",
    ]
    MIDDLEWARE += [
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
    ]
    TEMPLATES[0]["OPTIONS"]["context_processors"] = [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]

if os.environ.get("EXAMPLE_REDIS_URL"):
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "redis": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": os.environ["EXAMPLE_REDIS_URL"],
        },
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
