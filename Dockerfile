# The example Django project with otel-canonical-logs, as started by docker-compose.yml.
FROM python:3.12-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The package from this checkout, and the PostgreSQL driver the example uses.
WORKDIR /build
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install . "psycopg[binary]>=3.1"

WORKDIR /app
COPY example/ ./
RUN useradd --system --no-create-home app
USER app

EXPOSE 8000
# One word in front of the usual command; nothing in settings.py or the Gunicorn config.
CMD ["opentelemetry-instrument", "gunicorn", "mysite.wsgi", "--bind", "0.0.0.0:8000", "--workers", "2"]
