"""``python -m otel_canonical_logs report ...``: the same as the ``canonical-logs`` console script."""

from __future__ import annotations

import sys

from .report.cli import main

sys.exit(main())
