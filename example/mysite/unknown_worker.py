"""A Gunicorn worker type otel-canonical-logs does not know, for the test that such a worker is
left alone: it serves exactly like the sync worker (it borrows its methods) but derives from
Gunicorn's base ``Worker`` only, as a third-party worker type would."""

from gunicorn.workers.base import Worker
from gunicorn.workers.sync import SyncWorker


class UnknownWorker(Worker):
    accept = SyncWorker.accept
    wait = SyncWorker.wait
    is_parent_alive = SyncWorker.is_parent_alive
    run_for_one = SyncWorker.run_for_one
    run_for_multiple = SyncWorker.run_for_multiple
    run = SyncWorker.run
    handle = SyncWorker.handle
    handle_request = SyncWorker.handle_request
