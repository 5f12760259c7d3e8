"""WSGI config for the example project.

The first two statements are Django's stock layout. The application is then
wrapped in a tiny hand-written WSGI layer that answers ``GET /health`` itself,
without ever calling Django: the "request that never reaches Django" case.
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")

application = get_wsgi_application()


class HealthCheck:
    """Answer ``GET /health`` with ``200 ok``; delegate every other request."""

    body = b"ok"

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") == "/health" and environ.get("REQUEST_METHOD") == "GET":
            start_response(
                "200 OK",
                [
                    ("Content-Type", "text/plain; charset=utf-8"),
                    ("Content-Length", str(len(self.body))),
                ],
            )
            return [self.body]
        return self.app(environ, start_response)


application = HealthCheck(application)
