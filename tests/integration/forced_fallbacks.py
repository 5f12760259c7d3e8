"""A distro for ``opentelemetry-instrument`` that runs the package with every private detail
``_otel`` checks looking absent, as a release that changed them all would: the package's own
distro, imported after the two context keys were removed (they are looked up at import) and with
every later check's verdict made "not as expected". Each check it forces is printed on stderr as
``forced_fallbacks: NAME`` (tests/integration/test_untested_versions.py reads them).

Selected with ``OTEL_PYTHON_DISTRO=forced_fallbacks``; the test writes the entry point (a
dist-info directory on PYTHONPATH)."""

from __future__ import annotations

import sys

import opentelemetry.context as otel_context

# The modules of OpenTelemetry that bind the two keys at import: imported while they are there
# (a release adding another shows up as an ImportError in the server's stderr).
import opentelemetry.instrumentation.utils
import opentelemetry.sdk._logs.export
import opentelemetry.sdk._shared_internal
import opentelemetry.sdk.metrics.export
import opentelemetry.sdk.trace.export  # noqa: F401
import opentelemetry.trace.propagation as propagation

_span_key = propagation._SPAN_KEY
_suppress_key = otel_context._SUPPRESS_INSTRUMENTATION_KEY
del propagation._SPAN_KEY, otel_context._SUPPRESS_INSTRUMENTATION_KEY
try:
    from otel_canonical_logs import _otel
finally:
    # Only the package's checks ran without them; OpenTelemetry itself keeps working.
    propagation._SPAN_KEY = _span_key
    otel_context._SUPPRESS_INSTRUMENTATION_KEY = _suppress_key

_record = _otel._record


def _forced(name: str, ok: bool) -> bool:
    print(f"forced_fallbacks: {name}", file=sys.stderr, flush=True)
    return _record(name, False)


for _name, _ok in _otel.checks().items():
    print(f"forced_fallbacks: {_name}{'' if not _ok else ' NOT FORCED'}", file=sys.stderr, flush=True)
_otel._record = _forced

from otel_canonical_logs.distro import CanonicalLogsDistro as Distro  # noqa: E402

__all__ = ["Distro"]
