from django.urls import path, re_path

from shop import async_views, line_views, truth_views, views

urlpatterns = [
    path("ok/", views.ok, name="ok"),
    path("books/", views.book_list, name="book-list"),
    path("books/<int:pk>/", views.book_detail, name="book-detail"),
    path("n-plus-one/", views.n_plus_one, name="n-plus-one"),
    path("db/", views.db, name="db"),
    path("tpl/", views.tpl, name="tpl"),
    path("boom/", views.boom, name="boom"),
    path("debug-cursor/", views.debug_cursor, name="debug-cursor"),
    path("sleep/", views.sleep, name="sleep"),
    path("echo-headers/", views.echo_headers, name="echo-headers"),
    path("stubborn/", views.stubborn, name="stubborn"),
    path("slow-query/", views.slow_query, name="slow-query"),
    # Worker types and streamed bodies (tests/integration/test_workers.py).
    path("async/db/", async_views.async_db, name="async-db"),
    path("async/block/", async_views.async_block, name="async-block"),
    path("async/wait/", async_views.async_wait, name="async-wait"),
    path("marker/", async_views.marker, name="marker"),
    path("stream/", async_views.stream, name="stream"),
    path("stream/async/", async_views.stream_async, name="stream-async"),
    path("spin/", async_views.spin, name="spin"),
    path("file/", async_views.file, name="file"),
    # N+1 runs, the user, body sizes (tests/integration/test_line_fields.py).
    path("n1/loop/", line_views.n1_loop, name="n1-loop"),
    path("n1/raw/", line_views.n1_raw, name="n1-raw"),
    path("session-twice/", line_views.session_twice, name="session-twice"),
    path("whoami/", line_views.whoami, name="whoami"),
    path("whoami/async/", line_views.whoami_async, name="whoami-async"),
    # Every cursor path (tests/integration/test_truth.py).
    path("truth/iterator/", truth_views.iterator, name="truth-iterator"),
    path("truth/atomic/", truth_views.atomic, name="truth-atomic"),
    path("truth/nested/", truth_views.nested, name="truth-nested"),
    path("truth/bulk/", truth_views.bulk, name="truth-bulk"),
    path("truth/select-for-update/", truth_views.select_for_update, name="truth-select-for-update"),
    path("truth/raw/", truth_views.raw, name="truth-raw"),
    path("truth/on-commit/", truth_views.on_commit, name="truth-on-commit"),
    path("truth/generic/", truth_views.BookListView.as_view(), name="truth-generic"),
    re_path(r"^truth/regex/(?P<pk>\d+)/$", views.book_detail, name="truth-regex"),
    # Fault cases (tests/integration/test_reliability.py, tests/stress/).
    path("fault/context/", views.fault_context, name="fault-context"),
    path("fault/db-error/", views.fault_db_error, name="fault-db-error"),
    path("fault/leak-spans/", views.fault_leak_spans, name="fault-leak-spans"),
    path("fault/stream/", views.fault_stream, name="fault-stream"),
    path("fault/counts/", views.fault_counts, name="fault-counts"),
    path("fault/file-name/", views.fault_file_name, name="fault-file-name"),
]
