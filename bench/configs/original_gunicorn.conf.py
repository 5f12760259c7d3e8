"""Gunicorn config for gunicorn-django-canonical-logs 0.0.10, exactly as its README's "Usage" says.

Its hooks insert its request middleware into settings.MIDDLEWARE and patch Django's cursor in
post_fork, so the example app needs no settings change. Canonical lines go to the access log
("-" = stdout), which the bench redirects to a file.
"""

from gunicorn_django_canonical_logs.glogging import Logger
from gunicorn_django_canonical_logs.gunicorn_hooks import *  # noqa: F403 - register hooks and instrumenters

accesslog = "-"
logger_class = Logger
