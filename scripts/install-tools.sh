#!/usr/bin/env bash
# Builds the pinned third-party Go programs into a cache outside the repository, so repeat runs
# are instant. Versions come from .env (the same file docker-compose.yml reads its image tags from).
#
#   scripts/install-tools.sh [tools|stack|all|bench]   (default: all)
#     tools  buf, grpcurl, grpc-health-probe, ghz, docker-compose, kustomize, kubeconform; dclint (npm);
#            dockerfile-check (tools/dockerfile-check: BuildKit's Dockerfile frontend, offline)
#            promtool (Prometheus's, for config and rule tests)
#     stack  OpenTelemetry Collector, Prometheus, Jaeger, VictoriaLogs: what `make up` / `make demo` run
#     bench  Prometheus with all its service discoveries, as in its image (`make bench-memory`)
#   (seconds to minutes each on a cold cache; progress is printed)
#
#   TOOLS_DIR   where binaries go (default: ~/.cache/user-service/tools/bin)
#
# Each binary is stored under a versioned name (jaeger-v1.76.0) and symlinked to its plain name,
# so bumping a version in .env rebuilds only that program. The Collector's name also carries a
# hash of its builder manifest: adding a component rebuilds it.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=/dev/null
set -a; . ./.env; set +a

TOOLS_DIR="${TOOLS_DIR:-$HOME/.cache/user-service/tools/bin}"
BUILD_DIR="$(dirname "$TOOLS_DIR")/build"
mkdir -p "$TOOLS_DIR" "$BUILD_DIR"
what="${1:-all}"

# Runs a build with a heartbeat on stderr: cold builds take minutes and would look hung otherwise.
with_progress() {  # with_progress LABEL LOG COMMAND...
  local label=$1 log=$2; shift 2
  local start=$SECONDS
  echo "building $label (cold builds take minutes; log: $log)" >&2
  "$@" >"$log" 2>&1 &
  local pid=$!
  local next=$((start + 15))
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    if [ "$SECONDS" -ge "$next" ]; then echo "  … $label: $((SECONDS - start)) s" >&2; next=$((next + 15)); fi
  done
  if ! wait "$pid"; then
    echo "building $label failed; last lines of $log:" >&2
    tail -n 30 "$log" >&2
    return 1
  fi
  echo "built $label in $((SECONDS - start)) s" >&2
}

link() { ln -sf "$TOOLS_DIR/$2" "$TOOLS_DIR/$1"; }  # link NAME VERSIONED_NAME

go_install() {  # go_install NAME MODULE_PATH VERSION [BUILD_TAGS]
  local name=$1 module=$2 version=$3 tags=${4:-}
  local versioned="$name-$version${tags:+-${tags//,/-}}"  # tags are part of what was built
  if [ ! -x "$TOOLS_DIR/$versioned" ]; then
    local tmp; tmp=$(mktemp -d)
    with_progress "$name $version${tags:+ (tags $tags)}" "$BUILD_DIR/$name.log" \
      env GOBIN="$tmp" CGO_ENABLED=0 go install ${tags:+-tags "$tags"} "$module@$version"
    mv "$tmp"/* "$TOOLS_DIR/$versioned"  # the one binary built (the module's last element, or the one before a /vN)
    rm -rf "$tmp"
  fi
  link "$name" "$versioned"
}

# Our own Go programs (tools/NAME: a module of its own, dependencies pinned in its go.sum), keyed
# by a hash of their sources so an edit rebuilds them.
build_own_tool() {  # build_own_tool NAME
  local name=$1 dir="tools/$1"
  local hash; hash=$(cat "$dir"/go.mod "$dir"/go.sum "$dir"/*.go | sha256sum | cut -c1-8)
  local versioned="$name-$hash"
  if [ ! -x "$TOOLS_DIR/$versioned" ]; then
    with_progress "$name" "$BUILD_DIR/$name.log" \
      bash -c "cd '$dir' && CGO_ENABLED=0 go build -o '$TOOLS_DIR/$versioned' ."
  fi
  link "$name" "$versioned"
}

# The Collector Builder (same version as the core modules) generates and compiles a distribution
# holding exactly the components of otel-collector/builder-config.yaml.
build_collector() {
  local manifest=otel-collector/builder-config.yaml
  local hash; hash=$(sha256sum "$manifest" | cut -c1-8)
  local versioned="otelcol-user-service-v$OTELCOL_VERSION-$hash"
  if [ ! -x "$TOOLS_DIR/$versioned" ]; then
    go_install otelcol-builder go.opentelemetry.io/collector/cmd/builder "v$OTELCOL_VERSION"
    local out="$BUILD_DIR/$versioned"
    sed "s|^  output_path: .*|  output_path: $out|" "$manifest" >"$BUILD_DIR/builder-config.yaml"
    with_progress "OpenTelemetry Collector $OTELCOL_VERSION" "$BUILD_DIR/otelcol.log" \
      env CGO_ENABLED=0 "$TOOLS_DIR/otelcol-builder" --config "$BUILD_DIR/builder-config.yaml"
    mv "$out/otelcol-user-service" "$TOOLS_DIR/$versioned"
    rm -rf "$out"
  fi
  link otelcol-user-service "$versioned"
}

# Programs whose go.mod has `replace` directives (Jaeger, Docker Compose), which
# `go install module@version` refuses: a small module that requires the program as a tool
# (go get -tool) builds it with that module's own requirements.
go_tool() {  # go_tool NAME PACKAGE MODULE_VERSION LABEL [LDFLAGS]
  local name=$1 package=$2 version=$3 label=$4 ldflags=${5:-}
  local versioned="$name-$version${ldflags:+-stamped}"  # stamped: built with its release's ldflags
  if [ ! -x "$TOOLS_DIR/$versioned" ]; then
    local mod="$BUILD_DIR/$name-tools"
    rm -rf "$mod" && mkdir -p "$mod"
    (cd "$mod" && go mod init "user-service/$name-tools" >/dev/null 2>&1)
    with_progress "$label" "$BUILD_DIR/$name.log" bash -c "
      cd '$mod' &&
      go get -tool $package@$version &&
      CGO_ENABLED=0 go build -ldflags '$ldflags' -o '$TOOLS_DIR/$versioned' $package"
  fi
  link "$name" "$versioned"
}

# ---- npm tools ---------------------------------------------------------------------------------
# dclint, the Docker Compose linter that tests/stack runs on docker-compose.yml, is a Node.js
# program: npm installs it at the version .env pins into a prefix of its own in the cache (never
# into the repository), linked into TOOLS_DIR like the Go tools. Without npm it is left out with a
# notice; its test then skips on a laptop and fails in CI (CI=true).
npm_install() {  # npm_install NAME PACKAGE VERSION
  local name=$1 package=$2 version=$3
  local prefix; prefix="$(dirname "$TOOLS_DIR")/node/$package-$version"
  if [ ! -x "$prefix/node_modules/.bin/$name" ]; then
    if ! command -v npm >/dev/null; then
      echo "npm not found: $name $version not installed (it needs Node.js >= 20.19 and npm)" >&2
      return 0
    fi
    echo "installing $name $version with npm" >&2
    npm install --prefix "$prefix" --no-save --no-audit --no-fund --loglevel=error "$package@$version" >&2
  fi
  ln -sf "$prefix/node_modules/.bin/$name" "$TOOLS_DIR/$name"
}

case "$what" in
  tools|all)
    go_install buf github.com/bufbuild/buf/cmd/buf "$BUF_VERSION"
    go_install grpcurl github.com/fullstorydev/grpcurl/cmd/grpcurl "$GRPCURL_VERSION"
    go_install grpc-health-probe github.com/grpc-ecosystem/grpc-health-probe "$GRPC_HEALTH_PROBE_VERSION"
    go_install ghz github.com/bojand/ghz/cmd/ghz "$GHZ_VERSION"
    # docker compose's own parser checks docker-compose.yml (`docker-compose config`) without an engine.
    # Stamped with its version as Compose's Makefile does, so `docker compose version` (the
    # preflight of `make up`, scripts/stack/docker.py) reads a real version, not "dev".
    go_tool docker-compose github.com/docker/compose/v2/cmd "$COMPOSE_VERSION" "Docker Compose $COMPOSE_VERSION" \
      "-X github.com/docker/compose/v2/internal.Version=$COMPOSE_VERSION"
    go_install kustomize sigs.k8s.io/kustomize/kustomize/v5 "$KUSTOMIZE_VERSION"
    go_install kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION"
    npm_install dclint dclint "$DCLINT_VERSION"
    # BuildKit's own Dockerfile frontend, offline: converts every build docker-compose.yml runs.
    build_own_tool dockerfile-check
    # promtool checks configs and rules (tests); not needed to run the stack. (It imports the
    # Kubernetes discovery itself, so a build tag would not make it refuse what the stack's
    # Prometheus refuses: tests/stack/test_configs.py asks that Prometheus directly.)
    go_install promtool github.com/prometheus/prometheus/cmd/promtool "$PROMETHEUS_MODULE_VERSION" ;;&
  stack|all)
    # One after another. Run at once on 2 cores they still took 8 minutes cold (the compiler is
    # the bottleneck, not the module downloads), with their progress lines interleaved.
    build_collector
    # remove_all_sd is Prometheus's own build tag (plugins/*.go) that leaves out every service
    # discovery but file and HTTP (plugins/minimum.go): prometheus.yml uses file_sd_configs only
    # (tests/stack/test_configs.py checks it), and the cold build takes ~100 s instead of ~320 s
    # for a binary half the size.
    go_install prometheus github.com/prometheus/prometheus/cmd/prometheus "$PROMETHEUS_MODULE_VERSION" remove_all_sd
    go_tool jaeger github.com/jaegertracing/jaeger/cmd/jaeger "$JAEGER_MODULE_VERSION" "Jaeger $JAEGER_VERSION"
    # Its web UI's built assets are committed in the module (app/vlselect/vmui) and embedded.
    go_install victoria-logs github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs "$VICTORIALOGS_VERSION" ;;
  tools) ;;
  # Only for `make bench-memory`: Prometheus with every service discovery, as the official image
  # compose runs is built (its RSS is ~30 MiB above the minimal build's).
  bench)
    go_install prometheus-all-sd github.com/prometheus/prometheus/cmd/prometheus "$PROMETHEUS_MODULE_VERSION" ;;
  *) echo "usage: $0 [tools|stack|all|bench]" >&2; exit 2 ;;
esac

