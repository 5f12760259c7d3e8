"""The configurations `make bench` compares: Config, CONFIGS and CONFIG_BY_KEY.

Named setups, not configs: bench/configs/ is the directory of Gunicorn config files they use.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .common import BENCH

WSGI_APP = "mysite.wsgi"
ASGI_APP = "mysite.asgi:application"
UVICORN_WORKER = "uvicorn_worker.UvicornWorker"
ASGI_PACKAGES = ("uvicorn", "uvicorn-worker")  # what a venv needs to run an ASGI configuration


@dataclass
class Config:
    key: str
    label: str
    venv: str  # "dev" (.venv) or a name under bench/.venvs
    instrument: bool = False  # run under opentelemetry-instrument
    env: dict[str, str] = field(default_factory=dict)
    gunicorn_args: list[str] = field(default_factory=list)
    uses_sink: bool = False
    app: str = WSGI_APP  # what Gunicorn serves
    worker_class: str = "sync"
    baseline: str = "bare"  # the configuration its overhead is computed against

    @property
    def asgi(self) -> bool:
        return self.worker_class == UVICORN_WORKER


NONE_EXPORTERS = {
    "OTEL_TRACES_EXPORTER": "none",
    "OTEL_METRICS_EXPORTER": "none",
    "OTEL_LOGS_EXPORTER": "none",
}
SINK = "{sink}"  # replaced by the sink's URL when the server starts

# Plain OTel exporting traces over OTLP/HTTP to the sink, and 10 % head sampling.
OTEL_OTLP = {
    "OTEL_TRACES_EXPORTER": "otlp",
    "OTEL_METRICS_EXPORTER": "none",
    "OTEL_LOGS_EXPORTER": "none",
    "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    "OTEL_EXPORTER_OTLP_ENDPOINT": SINK,
}
TEN_PERCENT = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"}
# Ours: the arbiter's saturation event once an hour, not every 10 s, so that its lines and OTLP
# records stay out of the measured windows (and out of the settle wait for a quiet sink); the
# workers' per-request counters run as with the default.
OURS = {"CANONICAL_LOGS_SATURATION_INTERVAL": "3600"}

CONFIGS = [
    Config("bare", "bare Django + Gunicorn", "dev"),
    Config(
        "original",
        "gunicorn-django-canonical-logs 0.0.10",
        "original",
        gunicorn_args=["--config", str(BENCH / "configs" / "original_gunicorn.conf.py")],
    ),
    Config("otel-none", "plain OTel, exporters none", "otel", True, dict(NONE_EXPORTERS)),
    Config(
        "otel-otlp",
        "plain OTel, traces over OTLP/HTTP",
        "otel",
        True,
        dict(OTEL_OTLP),
        uses_sink=True,
    ),
    Config(
        "otel-otlp-10",
        "plain OTel, 10% of traces over OTLP/HTTP",
        "otel",
        True,
        {**OTEL_OTLP, **TEN_PERCENT},
        uses_sink=True,
    ),
    Config("ours-none", "ours, exporters none (line only)", "dev", True, dict(OURS)),
    Config(
        "ours-full",
        "ours full, OTLP, 100% sampled",
        "dev",
        True,
        {**OURS, "OTEL_EXPORTER_OTLP_ENDPOINT": SINK},
        uses_sink=True,
    ),
    Config(
        "ours-full-10",
        "ours full, OTLP, 10% sampled",
        "dev",
        True,
        {**OURS, "OTEL_EXPORTER_OTLP_ENDPOINT": SINK, **TEN_PERCENT},
        uses_sink=True,
    ),
    # ours-full with log batches on the span batches' 5 s timer instead of the SDK's 1 s: the same
    # records in fewer POSTs. Against ours-full in one run it gives what one POST costs, which
    # the timers put into every exporting configuration's window (bench/RESULTS.md).
    Config(
        "ours-full-blrp5",
        "ours full, OTLP, 100% sampled, OTEL_BLRP_SCHEDULE_DELAY=5000",
        "dev",
        True,
        {**OURS, "OTEL_EXPORTER_OTLP_ENDPOINT": SINK, "OTEL_BLRP_SCHEDULE_DELAY": "5000"},
        uses_sink=True,
    ),
    # /db/ runs the same author lookup 9 times: an N+1 by the n_plus_one keep rule, so under the
    # default rules every /db/ trace is kept. This one keeps by every other rule.
    Config(
        "ours-full-10-keep-no-n1",
        "ours full, OTLP, 10% sampled, keep rules but n_plus_one",
        "dev",
        True,
        {
            **OURS,
            "OTEL_EXPORTER_OTLP_ENDPOINT": SINK,
            **TEN_PERCENT,
            "CANONICAL_LOGS_KEEP": "error,timeout,stuck,partial_failure,slow",
        },
        uses_sink=True,
    ),
    # The ASGI pair: the same app through mysite/asgi.py under one UvicornWorker, measured
    # against its own bare configuration.
    Config(
        "bare-asgi",
        "bare Django + Gunicorn, UvicornWorker",
        "dev",
        app=ASGI_APP,
        worker_class=UVICORN_WORKER,
        baseline="bare-asgi",
    ),
    Config(
        "ours-none-asgi",
        "ours, exporters none (line only), UvicornWorker",
        "dev",
        True,
        dict(OURS),
        app=ASGI_APP,
        worker_class=UVICORN_WORKER,
        baseline="bare-asgi",
    ),
]
CONFIG_BY_KEY = {c.key: c for c in CONFIGS}
