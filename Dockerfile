# Images of the stack that are built from this repository's Python code (docker-compose.yml builds
# each target; the Collector has its own Dockerfile in otel-collector/):
#
#   user-service     the gRPC server: locked runtime dependencies, generated protobuf code, a
#                    gRPC health probe for the healthcheck; non-root, no build tools
#   load-generator   Locust master and workers: the same install plus the `load` group and loadtest/
#
# Base images and tool versions are build arguments whose defaults are the versions .env pins
# (tests/stack/test_container_files.py keeps the two equal; compose passes the .env values, so
# .env stays the one place a version is changed). Every ARG used in a FROM has a valid default
# because BuildKit expands the FROM line of *every* stage — reachable from the target or not — and
# refuses an empty base name (moby/buildkit dockerfile2llb: buildDispatchStates); its build check
# InvalidDefaultArgInFrom warns about any such ARG without one. tools/dockerfile-check runs that
# frontend offline on every build compose makes. By hand:
#   docker compose build            (or: docker build --target load-generator .)

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
ARG UV_VERSION=0.13.9
ARG GO_IMAGE=golang:1.26.8

# uv ships as an image holding only its binaries; COPY --from cannot take a build argument, so
# the pinned version is named as a stage. It is used by the build stages only.
FROM ghcr.io/astral-sh/uv:${UV_VERSION} AS uv

# grpc-health-probe, built from its Go module at the version .env pins (the same one `make tools`
# builds natively). Why a Go binary rather than a Python one-liner with the grpc health stub: the
# healthcheck runs inside the service's memory limit every few seconds, and a static Go probe
# takes ~11 MB for ~70 ms, where a Python interpreter importing grpc takes ~38 MB for ~300 ms.
FROM ${GO_IMAGE} AS health-probe
ARG GRPC_HEALTH_PROBE_VERSION=v0.4.62
RUN CGO_ENABLED=0 GOBIN=/out go install \
        "github.com/grpc-ecosystem/grpc-health-probe@${GRPC_HEALTH_PROBE_VERSION}"

# Message and stub code from grpcio-tools, as `make proto` makes it (without the mypy stubs,
# which only type checking needs). grpcio-tools is installed at the version uv.lock pins: the
# lock is exported as constraints, so this stage stays small instead of installing the whole
# dev group.
FROM ${PYTHON_IMAGE} AS codegen
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_PYTHON_DOWNLOADS=never
WORKDIR /src
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv export --locked --only-group dev --no-emit-project --no-hashes --output-file /tmp/constraints.txt \
    && uv venv /opt/codegen \
    && uv pip install --python /opt/codegen --constraint /tmp/constraints.txt grpcio-tools
COPY proto/ proto/
# grpcio-tools writes absolute imports (`from user.v1 import ...`); they are rewritten to the
# package the code lives in, exactly as the Makefile does.
RUN mkdir gen \
    && find proto -name '*.proto' -exec /opt/codegen/bin/python -m grpc_tools.protoc -Iproto \
        --python_out=gen --grpc_python_out=gen {} + \
    && find gen -name '*.py' -exec sed -i -E \
        's/^from (user|auth)\.v1 import/from user_service.gen.\1.v1 import/' {} + \
    && find gen -type d -exec touch {}/__init__.py \;

# The virtual environment at the path it will have at run time (/app/.venv), dependencies first
# so that a code change does not reinstall them. The project is installed as a wheel
# (--no-editable), so the final images need neither the source tree nor uv.
#
# Only the files listed here are copied, on purpose: hatchling leaves out whatever a .gitignore
# next to pyproject.toml names, and the generated code is git-ignored — with the repository's
# .gitignore in /app the wheel would silently lack user_service.gen.
FROM ${PYTHON_IMAGE} AS build
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
# --no-default-groups: pyproject's default groups (dev, load) are for development machines.
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-default-groups --no-install-project
COPY service/ service/
COPY --from=codegen /src/gen/ service/user_service/gen/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-default-groups --no-editable

# The same environment plus the load generator's group (Locust, gevent).
FROM build AS build-load
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-default-groups --group load --no-editable

# What both Python images run on: the interpreter, an unprivileged user and nothing to install
# or compile with (pip, setuptools and wheel of the base image are removed; uv and grpcio-tools
# stayed in the build stages).
FROM ${PYTHON_IMAGE} AS python-runtime
RUN python -m pip uninstall --yes --quiet pip setuptools wheel \
    && groupadd --system --gid 10001 app \
    && useradd --system --no-log-init --uid 10001 --gid app --home-dir /nonexistent \
        --shell /usr/sbin/nologin app
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /app

# Locust runs from /app so that `import loadtest` resolves (`python -m loadtest`: Locust with
# threads unpatched, see loadtest/__main__.py) and so does the development credentials' relative path, .dev/credentials/, where
# compose mounts the client secrets.
FROM python-runtime AS load-generator
COPY --from=build-load /app/.venv /app/.venv
COPY loadtest/ loadtest/
USER 10001:10001
# 8089: web UI of the master; 5557: where the master listens for its workers.
EXPOSE 8089 5557
CMD ["python", "-m", "loadtest", "-f", "loadtest/locustfile.py"]

FROM python-runtime AS user-service
COPY --from=build /app/.venv /app/.venv
COPY --from=health-probe /out/grpc-health-probe /usr/local/bin/grpc-health-probe
# The SQLite database lives on a volume mounted here. A new named volume takes the ownership of
# the image's directory, so the unprivileged user can write to it.
RUN mkdir /var/lib/user-service && chown app:app /var/lib/user-service
USER 10001:10001
# A container is reached from outside its network namespace: bind every interface, both for
# gRPC and for /metrics (the settings default to loopback, right for a laptop, wrong here).
# One server process per container (the default, one per core, would count the host's cores,
# not the container's CPU quota): scale containers instead.
ENV USER_SERVICE_HOST=0.0.0.0 \
    USER_SERVICE_METRICS_HOST=0.0.0.0 \
    USER_SERVICE_WORKERS=1 \
    USER_SERVICE_DATABASE_URL=sqlite:////var/lib/user-service/users.db
EXPOSE 50051 9464
ENTRYPOINT ["user-service"]
CMD ["serve"]
