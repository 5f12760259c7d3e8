"""Enrichers for the example app, registered when EXAMPLE_INSTRUMENTERS=1 (see apps.py)."""

import os

# Written for gunicorn-django-canonical-logs; moving to otel-canonical-logs changed only this import:
# from gunicorn_django_canonical_logs import Context, register_instrumenter
from otel_canonical_logs import Context, register_instrumenter


@register_instrumenter
class WorkerInstrumenter:
    """Which worker served the request, and proof that setup() ran once, in that worker."""

    def __init__(self):
        self.setup_pid = None
        self.setups = 0

    def setup(self):
        self.setup_pid = os.getpid()
        self.setups += 1

    def call(self, req, resp, environ):
        Context.set("worker_pid", os.getpid())
        Context.set("setup_pid", self.setup_pid)
        Context.set("setups", self.setups)
        if resp is not None:
            Context.set("seen", f"{req.method} {req.path} {resp.status_code}")
        if environ:
            Context.set("tenant", environ.get("HTTP_X_TENANT"))


@register_instrumenter
def add_release(fields):
    """A native enricher: a plain callable given the event's fields."""
    fields["app_release"] = os.environ.get("EXAMPLE_RELEASE", "dev")


@register_instrumenter
def flaky_enricher(fields):
    """Fails on /enrich-boom/ after changing a field: the change is undone, the line still written."""
    if fields.get("req_path") == "/enrich-boom/":
        fields["app_release"] = "tampered"
        raise RuntimeError("enricher failed")
