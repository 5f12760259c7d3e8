"""``canonical-logs report``: the view across requests, from the lines alone (terminal, HTML, JSON).

Reading and parsing (:mod:`.parse`) need nothing beyond the standard library; the summary needs the
``report`` extra (ddsketch for the percentiles, rich for the terminal).
"""

from __future__ import annotations

from .cli import main

__all__ = ["main"]
