# syntax=docker/dockerfile:1.7
# The image of any one Exchange Desk service, named by three build arguments. The build context is the
# repository root (the uv workspace), as docker-compose.yml sets it:
#
#   docker build --build-arg SERVICE=order-api --build-arg PACKAGE=order_api --build-arg PORT=8001 \
#     -t exchange-desk/order-api:local .
#
#   SERVICE  the uv workspace member, its folder under services/ (order-api, wallet-pool, notifier,
#            telegram-gateway)
#   PACKAGE  its import package (order_api, ...): the app is PACKAGE.main:create_app
#   PORT     the port it listens on (8001 ... 8004)
#
# builder: installs exactly what uv.lock pins for this one workspace member (and the libs it uses) into
#          /app/.venv, non-editable and byte-compiled. The other services' code never enters the build, and
#          neither do the test helpers kept under src/ (`testing.py`, `testing/`, `fuzzing.py`: see
#          .dockerignore).
# runtime: python:3.11-slim with that venv, the service's Alembic history and a non-root user. No uv, no
#          compiler, no source tree. The same image runs the service (CMD) and its migrations
#          (`alembic upgrade head`, from /app where alembic.ini is).

ARG SERVICE
ARG PACKAGE
ARG PORT

# The workspace's manifests only: every lib's pyproject.toml and this service's. The dependency layer below
# mounts them, so it is rebuilt when a manifest or uv.lock changes, not when code does (and a new lib under
# libs/ needs no edit here).
FROM python:3.11-slim AS manifests
ARG SERVICE
ARG PACKAGE
ARG PORT
RUN if [ -z "${SERVICE}" ] || [ -z "${PACKAGE}" ] || [ -z "${PORT}" ]; then \
        echo "name the service: --build-arg SERVICE=order-api --build-arg PACKAGE=order_api --build-arg PORT=8001" >&2; \
        exit 1; \
    fi
WORKDIR /src
COPY libs/ libs/
COPY services/${SERVICE}/pyproject.toml services/${SERVICE}/pyproject.toml
RUN find libs -type f ! -name pyproject.toml -delete && find libs -type d -empty -delete


FROM python:3.11-slim AS builder
ARG SERVICE
ARG PACKAGE
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /uvx /bin/

ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /app

# Third-party dependencies first, exactly as uv.lock pins them for this one workspace member.
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,source=uv.lock,target=uv.lock \
    --mount=type=bind,source=pyproject.toml,target=pyproject.toml \
    --mount=type=bind,from=manifests,source=/src/libs,target=libs \
    --mount=type=bind,from=manifests,source=/src/services,target=services \
    uv sync --frozen --no-dev --package ${SERVICE} --no-install-workspace --no-editable

# Then the workspace members themselves, installed as wheels (--no-editable) so the venv stands alone.
COPY pyproject.toml uv.lock ./
COPY libs/ libs/
COPY services/${SERVICE}/ services/${SERVICE}/
RUN test -f "services/${SERVICE}/src/${PACKAGE}/main.py" \
    || { echo "services/${SERVICE}/src/${PACKAGE}/main.py not found: check PACKAGE" >&2; exit 1; }
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --package ${SERVICE} --no-editable


FROM python:3.11-slim AS runtime
ARG SERVICE
ARG PACKAGE
ARG PORT

LABEL org.opencontainers.image.title="exchange-desk-${SERVICE}" \
      org.opencontainers.image.description="Exchange Desk ${SERVICE} (uvicorn ${PACKAGE}.main:create_app)"

# A fixed uid/gid (10001), so Kubernetes' runAsNonRoot can verify it and volumes can be chowned to it.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home --shell /usr/sbin/nologin app

WORKDIR /app
COPY --from=builder /app/.venv /app/.venv
COPY --from=builder /app/services/${SERVICE}/alembic.ini /app/alembic.ini
COPY --from=builder /app/services/${SERVICE}/migrations /app/migrations
# var/ is only written in embedded mode (no DATABASE_URL): the SQLite file and dev keys; its owner's only.
# Installed outside a checkout, a service's var/ is the working directory's: /app/var.
RUN mkdir -p /app/var && chown 10001:10001 /app/var && chmod 700 /app/var

# uvicorn reads its app and port from UVICORN_APP and UVICORN_PORT (its CLI's own variables), so the CMD
# below stays in exec form (uvicorn is PID 1 and gets the stop signal) for every service.
ENV PATH="/app/.venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    UVICORN_APP=${PACKAGE}.main:create_app \
    UVICORN_PORT=${PORT}

USER 10001:10001
EXPOSE ${PORT}

# slim has no curl: python's urllib raises (exit 1) on a refused connection or a non-2xx answer.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/app/.venv/bin/python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ['UVICORN_PORT'] + '/health/live', timeout=4)"]

CMD ["uvicorn", "--factory", "--http", "servicekit.server:HttpProtocol", "--no-proxy-headers", "--no-server-header", "--host", "0.0.0.0"]
