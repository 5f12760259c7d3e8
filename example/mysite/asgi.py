"""ASGI config for the example project.

The first two statements are Django's stock layout. As in ``wsgi.py``, the application is then
wrapped in a tiny hand-written ASGI layer that answers ``GET /health`` itself, without ever
calling Django: the "request that never reaches Django" case, under an ASGI worker.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")

application = get_asgi_application()


class HealthCheck:
    """Answer ``GET /health`` with ``200 ok``; delegate every other scope (lifespan too)."""

    body = b"ok"

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] == "/health" and scope["method"] == "GET":
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"text/plain; charset=utf-8"),
                        (b"content-length", str(len(self.body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": self.body})
            return
        await self.app(scope, receive, send)


application = HealthCheck(application)
