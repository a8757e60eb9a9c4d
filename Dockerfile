# syntax=docker/dockerfile:1
# SOLARIS Gateway: one image, one process (`solaris serve`), non-root, built from uv.lock.
#
#   docker build -t solaris-gateway .
#   docker run --rm -p 8080:8080 -e SOLARIS_LIBRECHAT_KEYS=... -e SOLARIS_UPSTREAM_BASE_URL=... \
#     -e SOLARIS_MIGRATE_ON_START=true solaris-gateway
#   docker run --rm solaris-gateway users list      # any other `solaris` command
#
# Stage 1 resolves nothing: it installs exactly what uv.lock pins (`uv sync --frozen --no-dev`)
# into /app/.venv, the project itself as a regular (non-editable) package. Stage 2 copies only
# that virtualenv onto a clean Python base: no uv, no compiler, no source tree.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# The same uv as the Makefile's, from PyPI.
ARG UV_VERSION=0.13.9
RUN pip install --no-cache-dir "uv==${UV_VERSION}"
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3 \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src
# Dependencies first: this layer is rebuilt only when the lock file changes.
COPY pyproject.toml uv.lock README.md ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-project
COPY src ./src
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 solaris \
    && useradd --system --uid 10001 --gid solaris --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin solaris \
    && mkdir -p /app /data/journal \
    && chown -R solaris:solaris /data
COPY --from=build /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SOLARIS_HOST=0.0.0.0 \
    SOLARIS_PORT=8080 \
    SOLARIS_DATABASE_URL=sqlite:////data/solaris.db \
    SOLARIS_MIGRATE_ON_START=false
WORKDIR /app
# /data holds the SQLite file (and its generated link-signing key) when no PostgreSQL is set.
VOLUME ["/data"]
USER solaris:solaris
EXPOSE 8080
# Ready = database reachable and migrated and the upstream answering (Redis down is only
# "degraded"): /readyz answers 200 or 503. No curl in the image: the interpreter does the request.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('SOLARIS_PORT', '8080'), timeout=4)"]
ENTRYPOINT ["solaris"]
CMD ["serve"]
